"""Whole-model benchmark through the Runner: MaskDiff against the FCN
baseline of the same K, measured in one run.

Each config runs in its own child process (clean peak memory), through
mmengine's Runner with the config's own hooks (support set, sampler), data
loader and model:

* ``--mode test``: ``runner.test()`` on ``--warmup + --iters`` batches;
  the timed call is ``model.test_step`` (pre-processing, detector, mask
  branch), the mask head's share is the time inside
  ``roi_head.predict_mask`` (RoI crops, sampling or the FCN, pasting).
  ``score_thr`` is set to 0 so every image has exactly
  ``test_cfg.rcnn.max_per_img`` detections (``--detections``), whatever the
  weights: the workload does not depend on training.
* ``--mode train``: ``runner.train()`` for ``--warmup + --iters``
  iterations; the timed call is ``model.train_step`` (forward, backward,
  optimizer step). On the CPU it also counts the bytes saved for backward
  (``SavedTensorCounter``) and the mask head's share of them.

Time: wall seconds per batch (CUDA-synchronised) and, less sensitive to
other processes sharing the machine, the process's CPU seconds per batch.
Peak memory: CUDA allocator peak after warm-up (CUDA), or the child's peak
RSS (CPU; includes building the model and data). Ratios are against the
baseline measured in the same run.

    # COCO configs on a GPU (random weights unless --checkpoint)
    python tools/analysis_tools/benchmark.py configs/maskdiff/coco_1shot.py
    python tools/analysis_tools/benchmark.py configs/maskdiff/coco_1shot.py \\
        --mode train --amp
    # CPU mode: the same configs at CPU scale on the synthetic dataset
    python tools/dataset_converters/make_synthetic_fsis.py data/synthetic_fsis
    python tools/analysis_tools/benchmark.py configs/maskdiff/coco_1shot.py \\
        --synthetic data/synthetic_fsis --iters 4 --warmup 1

Writes ``<out>.json`` and ``<out>.md``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Dict, List, Optional

import torch

BASELINE_SUFFIX = '_fcn'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    from mmdet_maskdiff.utils.config_overrides import CFG_OPTIONS_HELP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='MaskDiff config')
    parser.add_argument(
        '--baseline',
        help='baseline config (default: <config>_fcn.py beside it)')
    parser.add_argument('--mode', choices=['test', 'train'], default='test')
    parser.add_argument('--checkpoint', help='weights of the MaskDiff config')
    parser.add_argument(
        '--baseline-checkpoint', help='weights of the baseline config')
    parser.add_argument(
        '--iters', type=int, default=20, help='timed batches / iterations')
    parser.add_argument(
        '--warmup',
        type=int,
        default=3,
        help='untimed batches / iterations first')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='images per batch (default: test 1, train the '
        "config's)")
    parser.add_argument(
        '--detections',
        type=int,
        default=None,
        help="detections per image (test_cfg.rcnn.max_per_img; default: the "
        "config's, 100 at COCO scale)")
    parser.add_argument(
        '--synthetic',
        metavar='DATA_ROOT',
        help='CPU mode: both configs at CPU scale on the synthetic dataset '
        'at DATA_ROOT (mmdet_maskdiff.testing.small_scale)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='train mode: AmpOptimWrapper in bfloat16 (GPU only)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'{CFG_OPTIONS_HELP}. Each goes to the configs (model, baseline) '
        'that have its key')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--out', default='work_dirs/benchmark/benchmark')
    # internal: the parent runs itself once per config with these
    parser.add_argument('--child-config', help=argparse.SUPPRESS)
    parser.add_argument('--child-checkpoint', help=argparse.SUPPRESS)
    parser.add_argument('--child-out', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """One-line errors (``InputError``) for bad counts and paths."""
    from mmdet_maskdiff.utils import InputError
    from mmdet_maskdiff.utils.cli_checks import check_at_least
    check_at_least(args, 1, 'iters', 'batch_size', 'detections')
    check_at_least(args, 0, 'warmup')
    if args.baseline is None:
        stem, ext = osp.splitext(args.config)
        args.baseline = stem + BASELINE_SUFFIX + ext
    for path in (args.config, args.baseline):
        if not osp.isfile(path):
            raise InputError(f'config file {path} does not exist' + (
                ' (pass --baseline)' if path == args.baseline else ''))
    if args.synthetic and not osp.isdir(args.synthetic):
        raise InputError(
            f'--synthetic {args.synthetic} is not a directory; write it with '
            'tools/dataset_converters/make_synthetic_fsis.py')


# ---------------------------------------------------------------- child side
def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Timer:
    """Replaces ``owner.name`` by a wrapper that records the wall seconds
    (CUDA-synchronised) and the process CPU seconds of each call; on CUDA
    the allocator peak is reset before call number ``reset_peak_at``."""

    def __init__(self,
                 owner: object,
                 name: str,
                 reset_peak_at: Optional[int] = None) -> None:
        self.seconds: List[float] = []
        self.cpu_seconds: List[float] = []
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            if reset_peak_at == len(self.seconds) and \
                    torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            _sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            out = inner(*args, **kwargs)
            _sync()
            self.seconds.append(time.perf_counter() - start)
            self.cpu_seconds.append(time.process_time() - cpu_start)
            return out

        setattr(owner, name, timed)


def _build_cfg(args: argparse.Namespace, config: str,
               checkpoint: Optional[str], work_dir: str):
    from mmdet_maskdiff.testing import cpu_scale_options
    from mmdet_maskdiff.utils import check_mixed_precision, load_config
    from mmdet_maskdiff.utils.config_overrides import (merge_cfg_options,
                                                       split_cfg_options)
    cfg = load_config(config)
    if args.synthetic:
        cfg.merge_from_dict(
            cpu_scale_options(cfg, args.synthetic, load_from=None))
    if args.cfg_options:
        other = args.baseline if config == args.config else args.config
        merge_cfg_options(
            cfg,
            split_cfg_options({
                config: cfg,
                other: load_config(other)
            }, args.cfg_options)[config])
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.visualization = dict(
        type='DetVisualizationHook', draw=False)
    num = args.warmup + args.iters
    if args.mode == 'test':
        rcnn = cfg.model.test_cfg.rcnn
        rcnn.score_thr = 0.0
        if args.detections:
            rcnn.max_per_img = args.detections
        batch = args.batch_size or 1
        cfg.test_dataloader.batch_size = batch
        cfg.test_dataloader.dataset.indices = num * batch
    else:
        if args.batch_size:
            cfg.train_dataloader.batch_size = args.batch_size
        cfg.train_cfg.max_iters = num
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.train_cfg.pop('val_interval', None)
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=10**9, save_last=False)
        if args.amp:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
        check_mixed_precision(cfg, config)
    return cfg


def run_child(args: argparse.Namespace, config: str,
              checkpoint: Optional[str]) -> Dict[str, object]:
    """Measure one config (in this process) and return its row."""
    import mmdet_maskdiff  # noqa: F401  (registers components)
    from mmdet_maskdiff.engine.runner import build_runner
    from mmdet_maskdiff.networks import SavedTensorCounter
    from mmdet_maskdiff.utils import InputError
    work_dir = tempfile.mkdtemp(prefix='run_', dir=args.work_dir)
    cfg = _build_cfg(args, config, checkpoint, work_dir)
    runner = build_runner(cfg)
    model = runner.model
    roi_head = model.roi_head
    step_name = 'test_step' if args.mode == 'test' else 'train_step'
    mask_name = 'predict_mask' if args.mode == 'test' else 'mask_loss'
    counters: List[SavedTensorCounter] = []
    if args.mode == 'train' and not torch.cuda.is_available():
        inner = getattr(model, step_name)

        def counted(*a, **k):
            # the head's loss is a method, not a forward: attribute what
            # its sub-modules save (the denoiser; FCN's convs)
            counter = SavedTensorCounter(
                exclude=model.parameters(),
                blocks={
                    f'mask_head.{name}': module
                    for name, module in roi_head.mask_head.named_modules()
                })
            with counter:
                out = inner(*a, **k)
            counters.append(counter)
            return out

        setattr(model, step_name, counted)
    steps = _Timer(model, step_name, reset_peak_at=args.warmup)
    masks = _Timer(roi_head, mask_name)
    if args.mode == 'test':
        runner.test()
    else:
        runner.train()
    if len(steps.seconds) < args.warmup + args.iters:
        raise InputError(f'{config}: only {len(steps.seconds)} batches ran, '
                         'fewer than --warmup + --iters (too few images?)')
    timed = steps.seconds[args.warmup:]
    # one mask-branch call per batch (score_thr 0: never zero detections)
    mask_timed = masks.seconds[len(masks.seconds) - len(timed):]
    batch = (
        cfg.test_dataloader.batch_size
        if args.mode == 'test' else cfg.train_dataloader.batch_size)
    total = sum(timed)
    row: Dict[str, object] = dict(
        config=config,
        mask_head=cfg.model.roi_head.mask_head.type,
        images_per_batch=batch,
        batches=len(timed),
        seconds_per_batch=total / len(timed),
        cpu_seconds_per_batch=sum(steps.cpu_seconds[args.warmup:]) /
        len(timed),
        images_per_second=batch * len(timed) / total,
        mask_share=min(1.0,
                       sum(mask_timed) / total),
    )
    if torch.cuda.is_available():
        row['peak_memory_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        row['peak_rss_mb'] = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024
    if counters:
        last = counters[-1]
        row['saved_for_backward_mb'] = last.activation_bytes / 2**20
        row['mask_head_saved_mb'] = sum(last.per_block.values()) / 2**20
    return row


# --------------------------------------------------------------- parent side
def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return (f'CPU ({platform.processor() or platform.machine()}, '
            f'{torch.get_num_threads()} threads)')


def _child(args: argparse.Namespace, config: str,
           checkpoint: Optional[str]) -> Dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as f:
        out = f.name
    cmd = [sys.executable, osp.abspath(__file__)
           ] + sys.argv[1:] + ['--child-out', out, '--child-config', config]
    cmd += ['--child-checkpoint', checkpoint] if checkpoint else []
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        from mmdet_maskdiff.utils import InputError
        errors = [
            line for line in proc.stdout.splitlines()
            if line.startswith('error: ')
        ]
        if proc.returncode == 2 and errors:  # the child's one-line error
            raise InputError(errors[-1][len('error: '):])
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f'error: benchmark of {config} failed '
                         f'(exit status {proc.returncode})')
    with open(out) as f:
        row = json.load(f)
    os.remove(out)
    return row


def _format(rows: List[Dict[str, object]], mode: str) -> List[str]:
    base = rows[0]
    gpu = 'peak_memory_mb' in base
    memory = 'peak_memory_mb' if gpu else 'peak_rss_mb'
    share = 'predict_mask' if mode == 'test' else 'mask_loss, forward'
    columns = [
        'config', 'mask head', 'images/s', 's/batch', 'x baseline time',
        'CPU s/batch', 'x baseline CPU time', f'mask head share ({share})',
        'peak GPU memory (MB)' if gpu else 'peak RSS (MB)', 'x baseline memory'
    ]
    saved = 'saved_for_backward_mb' in base
    if saved:
        columns += ['saved for backward (MB)', 'of it mask head (MB)']
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
    for row in rows:
        cells = [
            osp.basename(row['config']), row['mask_head'],
            f"{row['images_per_second']:.2f}",
            f"{row['seconds_per_batch']:.3f}", f"{row['time_ratio']:.2f}",
            f"{row['cpu_seconds_per_batch']:.3f}",
            f"{row['cpu_time_ratio']:.2f}", f"{row['mask_share']:.0%}",
            f'{row[memory]:.0f}', f"{row['memory_ratio']:.2f}"
        ]
        if saved:
            cells += [
                f"{row['saved_for_backward_mb']:.1f}",
                f"{row['mask_head_saved_mb']:.1f}"
            ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _main() -> None:
    args = parse_args()
    if args.child_config:  # child: one config, its row to --child-out
        row = run_child(args, args.child_config, args.child_checkpoint)
        with open(args.child_out, 'w') as f:
            json.dump(row, f)
        return
    os.makedirs(args.work_dir, exist_ok=True)
    rows = [
        _child(args, args.baseline, args.baseline_checkpoint),
        _child(args, args.config, args.checkpoint),
    ]
    base = rows[0]
    memory = 'peak_memory_mb' if 'peak_memory_mb' in base else 'peak_rss_mb'
    for row in rows:
        row['time_ratio'] = (
            row['seconds_per_batch'] / base['seconds_per_batch'])
        row['cpu_time_ratio'] = row['cpu_seconds_per_batch'] / base[
            'cpu_seconds_per_batch']
        row['memory_ratio'] = row[memory] / base[memory]
    report = dict(
        date=date.today().isoformat(),
        device=_device(),
        torch=torch.__version__,
        mode=args.mode,
        synthetic=bool(args.synthetic),
        warmup=args.warmup,
        rows=rows)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(report, f, indent=2)
    title = (f"{report['date']}, {report['device']}, torch "
             f"{report['torch']}, {args.mode} mode"
             f"{', CPU scale (synthetic)' if args.synthetic else ''}, "
             f"{base['batches']} timed batches after {args.warmup} warm-up; "
             'ratios against the first row, measured in the same run')
    lines = [title, ''] + _format(rows, args.mode)
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def main() -> None:
    from mmdet_maskdiff.utils import run_cli
    run_cli(_main)


if __name__ == '__main__':
    main()
