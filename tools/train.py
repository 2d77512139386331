"""Train a detector; the flags mirror mmdet 3.3.0's ``tools/train.py``.

Differences, all additive: the plugin is imported (its components register
and the stack fixes apply, see ``mmdet_maskdiff.compat``), and bad input —
a missing config or checkpoint, a config that forgets ``custom_imports``, a
``--cfg-options`` key the config does not have (``+key=value`` adds one on
purpose) — stops with one line instead of a traceback. ``--amp`` autocasts
to bfloat16 (mmdet's: float16) unless the config or ``--cfg-options`` sets
``optim_wrapper.dtype``, and without a GPU it is refused with one line
(mmengine would assert).
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction
from mmdet.utils import setup_cache_size_limit_of_dynamo

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.engine.runner import build_runner
from mmdet_maskdiff.few_shot.novel_head_init import surgery_command
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.few_shot.split_folder_check import check_split_folders
from mmdet_maskdiff.utils import (InputError, check_checkpoint,
                                  check_mixed_precision, load_config, run_cli)
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='mixed-precision training (AmpOptimWrapper) in bfloat16 unless '
        'the config sets optim_wrapper.dtype; needs a GPU. The diffusion '
        'head keeps its diffusion maths and loss in fp32')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
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
    # torch.distributed.launch passes `--local-rank` since torch 2.0
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.amp:  # before the options, which may set its dtype
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    merge_cfg_options(cfg, args.cfg_options)

    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # the K-shot sample of `few_shot.seed` (datasets, {seed} in load_from,
    # work_dir/seed<N>); FewShotRunner applies it again, to no effect
    apply_few_shot_seed(cfg)

    if args.amp:
        # bfloat16 has fp32's exponent range: no loss-scale tuning needed
        cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    check_mixed_precision(cfg, args.config)

    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr', {})
        if 'enable' not in scale or 'base_batch_size' not in scale:
            raise InputError(
                f'--auto-scale-lr needs auto_scale_lr=dict(enable=..., '
                f'base_batch_size=...) in {args.config}')
        cfg.auto_scale_lr.enable = True

    # resume priority: explicit checkpoint > latest in work_dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_checkpoint(args.resume)
        cfg.resume = True
        cfg.load_from = args.resume
    elif cfg.get('load_from'):
        command = surgery_command(cfg.load_from, args.config)
        check_checkpoint(
            cfg.load_from,
            hint=f'make it from the previous stage with: {command}'
            if command else '')

    check_split_folders(cfg)  # the seed's K-shot files are on disk
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    run_cli(main)
