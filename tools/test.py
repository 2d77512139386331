"""Test (and evaluate) a detector; the flags mirror mmdet 3.3.0's
``tools/test.py``.

Differences, all additive: the plugin is imported (registration + stack fixes),
bad input stops with one line (also a ``--cfg-options`` key the config does
not have; ``+key=value`` adds one on purpose), ``--out`` checks its suffix up
front, and the
checkpoint must fit the model exactly (mmdet loads it non-strictly: a tensor
of another shape would keep its random initial value).
"""
import argparse
import os
import os.path as osp
import warnings
from copy import deepcopy

from mmengine import ConfigDict
from mmengine.config import DictAction
from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.engine.runner import build_runner
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.few_shot.split_folder_check import check_split_folders
from mmdet_maskdiff.models.checkpoint_checks import load_checkpoint_strictly
from mmdet_maskdiff.utils import (InputError, check_checkpoint, load_config,
                                  run_cli)
from mmdet_maskdiff.utils.config_overrides import (CFG_OPTIONS_HELP,
                                                   merge_cfg_options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
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
    parser.add_argument('--tta', action='store_true')
    # torch.distributed.launch passes `--local-rank` since torch 2.0
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_tta(cfg) -> None:
    """Wrap the model in ``cfg.tta_model`` with a flip TTA pipeline (mmdet's
    defaults when the config has none)."""
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, '
                      'we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, '
                      'we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=('img_id', 'img_path', 'ori_shape',
                                   'img_shape', 'scale_factor', 'flip',
                                   'flip_direction'))
                ],
            ])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main() -> None:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()

    cfg = load_config(args.config)
    check_checkpoint(args.checkpoint)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise InputError(f'--out {args.out}: the dump file must be a .pkl')
    cfg.launcher = args.launcher
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

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        add_tta(cfg)

    check_split_folders(cfg)  # the seed's K-shot files are on disk
    runner = build_runner(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    load_checkpoint_strictly(runner, args.checkpoint)
    runner.test()


if __name__ == '__main__':
    run_cli(main)
