"""Write the embedded synthetic few-shot instance segmentation dataset.

Example::

    python tools/dataset_converters/make_synthetic_fsis.py data/synthetic_fsis

writes ``images/{train,test}/*.png``,
``annotations/instances_{train,test}.json`` and TFA-layout K-shot files
under ``few_shot/`` (see ``mmdet_maskdiff.datasets.synthetic_fsis``). A second
run with the same arguments finds the dataset complete and writes nothing.
``--difficulty hard`` writes the harder 12-class set (textures, clutter,
occlusion, scale variation); use it with ``class_splits='synthetic_hard'``.
"""
import argparse
import inspect
import time

from mmdet_maskdiff.datasets.synthetic_class_splits import \
    SYNTHETIC_SPLITS_BY_DIFFICULTY
from mmdet_maskdiff.datasets.synthetic_fsis import (count_instances,
                                                    make_synthetic_fsis)
from mmdet_maskdiff.utils import InputError, run_cli

#: the library's defaults, so the command line cannot drift from them
DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(
        make_synthetic_fsis).parameters.items()
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write the synthetic FSIS dataset (COCO format)')
    parser.add_argument('out_dir', help='dataset root to write')
    parser.add_argument(
        '--num-train',
        type=int,
        default=DEFAULTS['num_train_images'],
        help='training images (default: %(default)s)')
    parser.add_argument(
        '--num-test',
        type=int,
        default=DEFAULTS['num_test_images'],
        help='test images (default: %(default)s)')
    parser.add_argument(
        '--image-size',
        type=int,
        default=DEFAULTS['image_size'],
        help='side of the square images (default: %(default)s)')
    parser.add_argument(
        '--seed',
        type=int,
        default=DEFAULTS['seed'],
        help='generation seed (default: %(default)s)')
    parser.add_argument(
        '--shots',
        type=int,
        nargs='+',
        default=list(DEFAULTS['shots']),
        help='K of the few-shot files (default: %(default)s)')
    parser.add_argument(
        '--few-shot-seeds',
        type=int,
        nargs='+',
        default=list(DEFAULTS['seeds']),
        help='seeds of the few-shot files (default: %(default)s)')
    parser.add_argument(
        '--difficulty',
        choices=sorted(SYNTHETIC_SPLITS_BY_DIFFICULTY),
        default=DEFAULTS['difficulty'],
        help="'hard': 12 classes, textured objects and backgrounds, "
        'clutter, strong occlusion, scale variation (default: %(default)s)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a dataset made with other arguments')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.time()
    try:
        paths = make_synthetic_fsis(
            args.out_dir,
            num_train_images=args.num_train,
            num_test_images=args.num_test,
            image_size=args.image_size,
            seed=args.seed,
            shots=args.shots,
            seeds=args.few_shot_seeds,
            overwrite=args.overwrite,
            difficulty=args.difficulty)
    except (FileExistsError, ValueError) as exc:
        raise InputError(str(exc))
    counts = count_instances(paths['train_ann'])
    novel = SYNTHETIC_SPLITS_BY_DIFFICULTY[args.difficulty]['novel']
    print(f'synthetic FSIS dataset ({args.difficulty}) in {args.out_dir} '
          f'({time.time() - start:.1f} s)')
    print('train instances: ' +
          ', '.join(f"{name}{'*' if name in novel else ''}={n}"
                    for name, n in counts.items()) + '  (* novel)')
    for key in ('train_ann', 'test_ann', 'few_shot_root'):
        print(f'{key}: {paths[key]}')


if __name__ == '__main__':
    run_cli(main)
