"""MaskDiff end to end on the embedded dataset, on the CPU, in minutes.

The README's main command (``make demo``). It runs the COCO config of every
stage — same files, registries, Runner and hooks as the benchmark; only sizes
and data change (``mmdet_maskdiff.testing.small_scale``):

1. generate the synthetic FSIS dataset (6 base / 2 novel shape classes);
2. stage 1a: base detector on the base classes;
3. stage 1b: TFA's novel-row initialisation of the box predictor
   (``tools/model_converters/tfa_novel_init.py``), then TFA fine-tuning
   on the balanced K-shot set;
4. stage 2: the diffusion mask head with the detector frozen, and the same
   stage with mmdet's FCNMaskHead as the point-estimate baseline (with
   ``--with-twin`` also the diffusion head's regression twin: the same
   network and inputs, one forward pass trained on the mask);
5. test them (and the untrained diffusion head as a floor), print base /
   novel / all bbox + segm AP, AP50, AP75, write ``<work-dir>/results.json``,
   prediction PNGs and a denoising trajectory;
6. test the heads again with oracle boxes (the test images' ground-truth
   boxes and labels): segm AP up to IoU 0.95 and mean mask IoU of the mask
   heads alone, printed under the end-to-end table.

A stage whose final checkpoint exists is reused (``--force`` retrains).
"""
import argparse

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.demo.pipeline import DemoSettings, run_pipeline


def parse_args() -> DemoSettings:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(
        description='Run MaskDiff on the embedded FSIS dataset (CPU).')
    parser.add_argument(
        '--work-dir',
        help=f'default: {defaults.work_dir} ({defaults.work_dir}_hard with '
        '--difficulty hard)')
    parser.add_argument(
        '--data-root',
        help=f'default: {defaults.data_root} ({defaults.data_root}_hard '
        'with --difficulty hard)')
    parser.add_argument(
        '--difficulty',
        choices=['easy', 'hard'],
        default=defaults.difficulty,
        help='the embedded dataset: easy (8 classes) or hard (12 classes, '
        'textures, clutter, occlusion; docs/data.md)')
    parser.add_argument(
        '--shots',
        type=int,
        default=defaults.shots,
        choices=[1, 2, 3, 5, 10],
        help='K of the K-shot set')
    parser.add_argument(
        '--seed', type=int, default=defaults.seed,
        help='seed of the K-shot sample')
    parser.add_argument('--base-iters', type=int, default=defaults.base_iters)
    parser.add_argument('--ft-iters', type=int, default=defaults.ft_iters)
    parser.add_argument('--mask-iters', type=int, default=defaults.mask_iters)
    parser.add_argument(
        '--steps', type=int, default=None,
        help="DDIM steps at test time (default: the config's)")
    parser.add_argument(
        '--no-untrained', action='store_true',
        help='skip testing the untrained diffusion head')
    parser.add_argument(
        '--with-twin', action='store_true',
        help='also train and test the regression twin of the diffusion head '
        '(coco_<K>shot_twin.py: same network and inputs, one forward pass; '
        'adds a stage 2 about as long as the diffusion head\'s, ~5 min)')
    parser.add_argument(
        '--no-oracle', action='store_true',
        help='skip the oracle-box (ground-truth boxes) mask-quality table')
    parser.add_argument(
        '--no-draw', action='store_true', help='do not save prediction PNGs')
    parser.add_argument(
        '--force', action='store_true', help='retrain existing stages')
    args = parser.parse_args()
    suffix = '_hard' if args.difficulty == 'hard' else ''
    return DemoSettings(
        work_dir=args.work_dir or defaults.work_dir + suffix,
        data_root=args.data_root or defaults.data_root + suffix,
        difficulty=args.difficulty,
        shots=args.shots,
        seed=args.seed,
        base_iters=args.base_iters,
        ft_iters=args.ft_iters,
        mask_iters=args.mask_iters,
        steps=args.steps,
        untrained=not args.no_untrained,
        twin=args.with_twin,
        oracle=not args.no_oracle,
        draw=not args.no_draw,
        force=args.force)


if __name__ == '__main__':
    run_pipeline(parse_args())
