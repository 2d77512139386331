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

A second table says whether each head's per-pixel uncertainty p(1 - p)
marks where its mask is wrong, on the RoI's m x m grid: the fraction of
wrong pixels, the mean p(1 - p), the pooled pixel AUROC of p(1 - p) for the
wrong pixels and Spearman's rho of each instance's mean p(1 - p) with
1 - mask IoU (``MaskUncertaintyMetric``). FCNMaskHead's p is its sigmoid;
MaskDiff's the fraction of its N sampled masks that are foreground, so its
AUROC and rho need N > 1 (``n/a`` with one sample)::

    python tools/analysis_tools/mask_quality.py \
        configs/maskdiff/coco_5shot.py work_dirs/coco_5shot/iter_40000.pth \
        --cfg-options model.test_cfg.rcnn.diffusion_sampling.num_samples=8

With N > 1 samples per RoI the tool also tests the same model with one
sample per RoI (``num_samples=1``; ``--skip-one-sample`` leaves it out) and
prints both AP rows: the mean of N samples (what is pasted: p thresholded
at ``mask_thr_binary``) against one sample. With the sampler's ``seed``
set (the default) the noise of a RoI's sample i is keyed by the RoI and i,
so the one sample starts from the noise of sample 0 of the N (the mean is
compared with one of its own samples). The second pass costs 1 / N of the
sampling of the first, plus the backbone.

Flags as ``tools/test.py``: ``--cfg-options``, ``--work-dir``,
``--launcher``; ``--out`` writes the tables and the raw metrics as JSON.
"""
import argparse
import copy
import json
import os
import os.path as osp
from datetime import date
from typing import Optional

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process

import mmdet_maskdiff  # noqa: F401  (registers components, applies fixes)
from mmdet_maskdiff.evaluation.mask_quality import (
    ONE_SAMPLE_OPTIONS, apply_mask_quality, format_mask_quality_table,
    format_uncertainty_table, samples_per_roi, summarize_mask_quality,
    summarize_uncertainty)
from mmdet_maskdiff.engine.runner import build_runner
from mmdet_maskdiff.utils import (InputError, check_checkpoint, load_config,
                                  run_cli)
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
        '--skip-one-sample',
        action='store_true',
        help='with num_samples > 1, do not also test one sample per RoI')
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

    runner = build_runner(cfg)
    metrics = runner.test()
    num_samples = samples_per_roi(runner.model)
    one_sample = None
    if num_samples is not None and num_samples > 1 \
            and not args.skip_one_sample:
        one_sample = _one_sample_metrics(cfg)
    if not is_main_process():
        return
    name = osp.basename(args.config)
    runs = {name: metrics}
    if one_sample is not None:
        runs = {
            f'{name} (mean of {num_samples} samples)': metrics,
            f'{name} (one sample)': one_sample
        }
    summaries = {run: summarize_mask_quality(m) for run, m in runs.items()}
    uncertainty = summarize_uncertainty(metrics)
    _print_tables(summaries, {next(iter(runs)): uncertainty}, num_samples)
    if args.out is not None:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(
                dict(
                    date=date.today().isoformat(),
                    config=args.config,
                    checkpoint=args.checkpoint,
                    num_samples=num_samples,
                    summary=summaries[next(iter(runs))],
                    uncertainty=uncertainty,
                    metrics=dict(metrics),
                    one_sample=None if one_sample is None else dict(
                        summary=summarize_mask_quality(one_sample),
                        metrics=dict(one_sample))),
                f,
                indent=2)
        print(f'wrote {args.out}')


def _print_tables(summaries: dict, uncertainty: dict,
                  num_samples: Optional[int]) -> None:
    """The AP table (one row per run and split), then the uncertainty
    table of the first run."""
    print('oracle-box mask quality (ground-truth boxes and labels, score 1; '
          'values in %)')
    print(format_mask_quality_table(summaries))
    if not any(uncertainty.values()):
        print('\nno per-pixel uncertainty: the mask head does not paste '
              "through FCNMaskHead's per-RoI path")
        return
    print('\nper-pixel uncertainty p(1-p) against the wrong pixels (RoI '
          'grid; AUROC 0.5 = no better than chance)')
    print(format_uncertainty_table(uncertainty))
    if num_samples == 1:
        print('AUROC and Spearman are n/a with num_samples=1 (one binary '
              'sample has p(1-p) = 0 everywhere): add --cfg-options '
              'model.test_cfg.rcnn.diffusion_sampling.num_samples=8')


def _one_sample_metrics(cfg: Config) -> dict:
    """The oracle-box metrics of ``cfg`` with one sampled mask per RoI.

    Raises:
        InputError: the run still samples more than one mask per RoI.
    """
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict(ONE_SAMPLE_OPTIONS)
    runner = build_runner(cfg)
    metrics = runner.test()
    if samples_per_roi(runner.model) != 1:
        raise InputError(
            f'{next(iter(ONE_SAMPLE_OPTIONS))}=1 did not give one sample per '
            'RoI; pass --skip-one-sample')
    return metrics


if __name__ == '__main__':
    run_cli(main)
