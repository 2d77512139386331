"""TFA's novel-class initialisation of the box predictor for stage 1b.

Re-draws the novel-class rows of the box classifier and the box regressor of
the base detector (stage 1a) and writes the checkpoint that the stage-1b
configs' ``load_from`` names (TFA's ``ckpt_surgery.py --method randinit``;
see ``mmdet_maskdiff.few_shot.novel_head_init`` for the rule)::

    python tools/model_converters/tfa_novel_init.py \\
        configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py \\
        work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/iter_110000.pth

writes ``.../iter_110000_novel-init.pth``. One file serves every K and seed
(TFA uses one surgery checkpoint for all seeds); the novel rows come from the
config's training-set class split, ``--cfg-options`` applies as in
``tools/train.py``.
"""
import argparse

from mmengine.config import DictAction

import mmdet_maskdiff  # noqa: F401  (registers CosineSimLinear)
from mmdet_maskdiff.few_shot.novel_head_init import tfa_novel_init
from mmdet_maskdiff.utils import InputError, load_config, run_cli
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TFA's novel-row initialisation of a base detector's "
        'box predictor (stage 1a -> stage 1b)')
    parser.add_argument('config', help='the stage-1b config')
    parser.add_argument('checkpoint', help="stage 1a's checkpoint")
    parser.add_argument(
        '--out',
        help='output checkpoint (default: CHECKPOINT with the suffix '
        '_novel-init.pth, the name the stage-1b configs load)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the novel rows (default: 0)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=CFG_OPTIONS_HELP)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    try:
        out, notes = tfa_novel_init(
            args.checkpoint,
            cfg,
            out=args.out,
            seed=args.seed,
            config_name=args.config)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc))
    for note in notes:
        print(f'note: {note}')
    print(f'wrote {out}')


if __name__ == '__main__':
    run_cli(main)
