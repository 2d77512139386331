"""Mask quality with oracle boxes: the mask head alone, on any config.

The test images' ground-truth boxes and labels (score 1) replace the
detections; only the mask head runs on them (``OracleBoxTestLoop``). Reported
for base / novel / all classes: segm AP, AP50, AP75, AP at IoU 0.85 and 0.95,
and the mean IoU of each mask with its ground-truth mask. Works for every
config that ``tools/test.py`` tests — MaskDiff (DiffusionMaskHead) and the
FCNMaskHead baselines alike — with the config's own hooks (support set,
sampler settings), data and checkpoint loading::

    python tools/analysis_tools/mask_quality.py \\
        configs/maskdiff/coco_5shot.py work_dirs/coco_5shot/iter_40000.pth \\
        --out work_dirs/coco_5shot/mask_quality.json

Flags as ``tools/test.py``: ``--cfg-options``, ``--work-dir``,
``--launcher``; ``--out`` writes the table and the raw metrics as JSON.
"""
import argparse
import json
import os
import os.path as osp
from datetime import date

from mmengine.config import DictAction
from mmengine.dist import is_main_process

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.evaluation.mask_quality import (apply_mask_quality,
                                                    format_mask_quality_table,
                                                    summarize_mask_quality)
from mmdet_maskdiff.utils import (InputError, build_runner, check_checkpoint,
                                  load_config, run_cli)
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Mask AP and IoU with ground-truth boxes (oracle boxes)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='where logs go (default: ./work_dirs/mask_quality/<config>)')
    parser.add_argument(
        '--out', help='write the table and raw metrics to this .json file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=CFG_OPTIONS_HELP)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config)
    check_checkpoint(args.checkpoint)
    if args.out is not None and not args.out.endswith('.json'):
        raise InputError(f'--out {args.out}: the output file must be a .json')
    cfg.launcher = args.launcher
    merge_cfg_options(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    else:
        cfg.work_dir = osp.join('./work_dirs', 'mask_quality',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    try:
        apply_mask_quality(cfg)
    except ValueError as exc:
        raise InputError(f'config {args.config}: {exc}')

    metrics = build_runner(cfg).test()
    if not is_main_process():
        return
    summary = summarize_mask_quality(metrics)
    print('oracle-box mask quality (ground-truth boxes and labels, score 1; '
          'values in %)')
    print(format_mask_quality_table({osp.basename(args.config): summary}))
    if args.out is not None:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(
                dict(
                    date=date.today().isoformat(),
                    config=args.config,
                    checkpoint=args.checkpoint,
                    summary=summary,
                    metrics=dict(metrics)),
                f,
                indent=2)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    run_cli(main)
