"""Write TFA-layout K-shot split files from a COCO instances json.

Example (the COCO benchmark files, seeds 0-9, K in 1, 2, 3, 5, 10, 30)::

    python tools/dataset_converters/prepare_few_shot_splits.py \\
        data/coco/annotations/instances_train2017.json \\
        data/few_shot_ann/coco

Seed 0 goes to ``OUT_DIR/``, seed N to ``OUT_DIR/seedN/``; files are named
``full_box_{K}shot_{class}_trainval.json`` like TFA's ``cocosplit``. Re-runs
write byte-identical files. See ``mmdet_maskdiff.datasets.few_shot_splits``
for the sampling rule.
"""
import argparse

from mmdet_maskdiff.datasets.few_shot_splits import (DEFAULT_SHOTS,
                                                     generate_few_shot_splits)
from mmdet_maskdiff.utils import InputError, run_cli
from mmdet_maskdiff.utils.cli_checks import parse_seeds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write TFA-layout K-shot split files')
    parser.add_argument('ann_file', help='COCO instances json to sample from')
    parser.add_argument('out_dir', help='split directory to write')
    parser.add_argument(
        '--shots',
        type=int,
        nargs='+',
        default=list(DEFAULT_SHOTS),
        help='K values (default: 1 2 3 5 10 30)')
    parser.add_argument(
        '--seeds',
        nargs='+',
        default=['0-9'],
        help='seeds, integers or ranges such as 0-9 (default: 0-9); a '
        'reversed range (5-2) is an error')
    parser.add_argument(
        '--classes',
        nargs='+',
        help='category names to write (default: every category); quote '
        'names with spaces')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    seeds = parse_seeds(args.seeds)
    try:
        paths = generate_few_shot_splits(
            args.ann_file,
            args.out_dir,
            shots=args.shots,
            seeds=seeds,
            classes=args.classes)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc))
    print(f'wrote {len(paths)} split files to {args.out_dir} '
          f'(K={sorted(set(args.shots))}, seeds={sorted(set(seeds))})')


if __name__ == '__main__':
    run_cli(main)
