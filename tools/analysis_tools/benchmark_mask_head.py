"""Time mask prediction of DiffusionMaskHead against mmdet's FCNMaskHead.

Both heads predict masks for the same N RoIs (default 100) and paste them
into one 800x1333 image with the same code (FCNMaskHead's), in one process,
after warm-up; the table gives the median over repeats and the **ratio to
FCNMaskHead measured in the same run**, plus peak memory (CUDA: allocator
peak; CPU: growth of the process's peak RSS, so only increases show).

Settings: DDIM steps (1, 2, 4, 8, 16, 50), with and without guidance (w = 1
doubles the denoiser batch), 1 vs several samples per RoI, for two denoiser
sizes: ``paper`` (the COCO config: 64x64 masks, UNet 128 x (1, 2, 3, 4)),
``compact`` (28x28 masks, UNet 32 x (1, 2, 2)) and ``demo`` (the CPU demo's:
28x28, UNet 16 x (1, 2, 2)). Settings whose predicted time
exceeds ``--budget`` seconds are not run; their time is extrapolated from the
measured 1-step cost (linear in denoiser evaluations) and marked ``est.``.

    python tools/analysis_tools/benchmark_mask_head.py            # full
    python tools/analysis_tools/benchmark_mask_head.py --quick  # CI size

Writes ``<out>.json`` and ``<out>.md``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import resource
import statistics
import time
from datetime import date
from functools import partial
from typing import Callable, Dict, List

import torch
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

import mmdet_maskdiff  # noqa: F401  (registers the denoiser)
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet_maskdiff.models import DiffusionMaskHead, MaskCondition
from mmdet_maskdiff.testing.small_scale import \
    DIFFUSION_HEAD_SIZES as DEMO_SIZES

IMAGE_SHAPE = (800, 1333)
# the COCO configs' head, read from the config so the two cannot drift apart
_COCO_HEAD = Config.fromfile(
    osp.join(
        osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
        'configs', '_base_', 'models',
        'maskdiff_r101_fpn.py')).diffusion_mask_head
DENOISERS = dict(
    paper=dict(
        mask_size=_COCO_HEAD.mask_size,
        denoiser=_COCO_HEAD.denoiser.to_dict()),
    compact=dict(
        mask_size=28,
        denoiser=dict(
            type='MaskDenoisingUNet',
            base_channels=32,
            channel_mults=(1, 2, 2),
            num_res_blocks=2,
            attention_channels=(64, ),
            num_head_channels=32)),
    # the denoiser of the CPU demo (mmdet_maskdiff.testing.small_scale)
    demo=dict(
        mask_size=DEMO_SIZES['mask_size'],
        denoiser=dict(
            type='MaskDenoisingUNet',
            **{
                k.split('.', 1)[1]: v
                for k, v in DEMO_SIZES.items() if k.startswith('denoiser.')
            })),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-rois', type=int, default=100)
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--steps', type=int, nargs='+', default=[1, 2, 4, 8, 16, 50])
    parser.add_argument('--samples', type=int, nargs='+', default=[1, 4])
    parser.add_argument(
        '--guidance', type=float, nargs='+', default=[0.0, 1.0])
    parser.add_argument(
        '--denoisers', nargs='+', default=['demo', 'compact', 'paper'],
        choices=sorted(DENOISERS))
    parser.add_argument('--num-shots', type=int, default=1)
    parser.add_argument(
        '--budget', type=float, default=60.0,
        help='seconds a single setting may take; slower ones are estimated')
    parser.add_argument('--amp', action='store_true',
                        help='bfloat16 autocast for the denoiser (CUDA)')
    parser.add_argument(
        '--fast', choices=['off', 'bucket', 'compile', 'cuda_graphs'],
        default='off',
        help='inference fast path (sampler key `fast`): RoI buckets, + '
        'torch.compile, + CUDA graphs (compile and graphs: CUDA only)')
    parser.add_argument(
        '--quick', action='store_true',
        help='CI size: 20 RoIs, demo denoiser, steps 1 2 4, 2 repeats')
    parser.add_argument('--out', default='work_dirs/benchmark_mask_head')
    args = parser.parse_args()
    if args.quick:
        args.num_rois, args.repeats, args.warmup = 20, 2, 1
        args.steps, args.samples = [1, 2, 4], [1, 2]
        args.denoisers = ['demo']
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """One-line errors (``InputError``) for counts a run cannot use."""
    from mmdet_maskdiff.utils import InputError
    from mmdet_maskdiff.utils.cli_checks import check_at_least
    check_at_least(args, 1, 'num_rois', 'repeats', 'num_shots')
    for name in ('steps', 'samples'):
        if min(getattr(args, name)) < 1:
            raise InputError(f'--{name} must all be >= 1, got '
                             f'{getattr(args, name)}')
    check_at_least(args, 0, 'warmup')
    if min(args.guidance) < 0:
        raise InputError(f'--guidance must all be >= 0, got {args.guidance}')
    if args.budget <= 0:
        raise InputError(f'--budget must be > 0 seconds, got {args.budget}')


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device: torch.device) -> float:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return 0.0
    return peak_memory_mb(device)


def time_fn(fn: Callable[[], None], device: torch.device, warmup: int,
            repeats: int) -> Dict[str, float]:
    """Median seconds of ``fn`` and its peak memory (MB)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    base = reset_peak(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return dict(
        seconds=statistics.median(times),
        peak_mb=round(peak_memory_mb(device) - base, 1))


def make_rois(num: int, device: torch.device) -> InstanceData:
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(num, 2, generator=gen) * torch.tensor([1100., 600.])
    wh = 32 + torch.rand(num, 2, generator=gen) * 200
    results = InstanceData()
    results.bboxes = torch.cat([xy, xy + wh], 1).to(device)
    results.labels = torch.randint(0, 80, (num, ), generator=gen).to(device)
    results.scores = torch.rand(num, generator=gen).to(device)
    return results


def fcn_predictor(num: int, device: torch.device, test_cfg: ConfigDict):
    head = FCNMaskHead(num_classes=80).to(device).eval()
    feats = torch.randn(num, 256, 14, 14, device=device)
    meta = dict(ori_shape=IMAGE_SHAPE, scale_factor=(1.0, 1.0))
    rois = make_rois(num, device)  # outside the timed call

    @torch.inference_mode()
    def run() -> None:
        preds = head(feats)
        head.predict_by_feat((preds, ), [rois], [meta], test_cfg)

    return run


def diffusion_predictor(name: str, num: int, device: torch.device,
                        test_cfg: ConfigDict, num_shots: int):
    cfg = DENOISERS[name]
    head = DiffusionMaskHead(
        num_classes=80, num_shots=num_shots, prediction_type='x0',
        **cfg).to(device).eval()
    m = cfg['mask_size']
    condition = MaskCondition(
        labels=torch.randint(0, 80, (num, ), device=device),
        region_image=torch.randn(num, 3, m, m, device=device),
        shots=torch.randn(num, num_shots, 4, m, m, device=device),
        prototypes=torch.randn(num, 256, device=device))
    meta = dict(ori_shape=IMAGE_SHAPE, scale_factor=(1.0, 1.0))
    rois = make_rois(num, device)  # outside the timed call

    def run(settings) -> None:
        probs = head.predict(condition, settings)['probs']
        head.predict_by_feat((probs, ), [rois], [meta], test_cfg)

    return head, run


def main() -> None:
    from mmdet_maskdiff.utils import run_cli
    run_cli(_main)


def _main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    test_cfg = ConfigDict(mask_thr_binary=0.5)
    fast = None if args.fast == 'off' else dict(
        devices=(device.type, ),
        compile=args.fast in ('compile', 'cuda_graphs'),
        cuda_graphs=args.fast == 'cuda_graphs')
    rows: List[dict] = []
    fcn = time_fn(
        fcn_predictor(args.num_rois, device, test_cfg), device, args.warmup,
        args.repeats)
    rows.append(dict(head='FCNMaskHead', setting='mmdet default', **fcn,
                     ratio=1.0, estimated=False))
    print(f"FCNMaskHead: {fcn['seconds'] * 1000:.1f} ms")
    for name in args.denoisers:
        head, run = diffusion_predictor(name, args.num_rois, device,
                                        test_cfg, args.num_shots)
        per_eval = None  # seconds per (RoI-batch x step x branch)
        for samples in args.samples:
            for w in args.guidance:
                for steps in args.steps:
                    test_cfg.diffusion_sampling = dict(
                        steps=steps, guidance_weight=w,
                        num_samples=samples, amp=args.amp, fast=fast)
                    # parsed once per setting, as the RoI head does
                    settings = head.parse_test_cfg(test_cfg)
                    evals = steps * samples * (2 if w else 1)
                    setting = (f'{name}, {steps} step(s), w={w:g}, '
                               f'{samples} sample(s)')
                    if fast is not None:
                        setting += f', fast={args.fast}'
                    if per_eval is not None and \
                            per_eval * evals > args.budget:
                        seconds, peak, estimated = per_eval * evals, None, \
                            True
                    else:
                        timing = time_fn(partial(run, settings), device,
                                         args.warmup if evals < 8 else 1,
                                         args.repeats if evals < 8 else 1)
                        seconds, peak = timing['seconds'], timing['peak_mb']
                        estimated = False
                        if per_eval is None:
                            per_eval = seconds / evals
                    rows.append(
                        dict(head='DiffusionMaskHead', setting=setting,
                             seconds=seconds, peak_mb=peak,
                             ratio=seconds / fcn['seconds'],
                             estimated=estimated))
                    print(f'{setting}: {seconds * 1000:.1f} ms '
                          f"({seconds / fcn['seconds']:.2f}x FCN)"
                          f"{' est.' if estimated else ''}")
    report = dict(
        date=date.today().isoformat(),
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else
                f'CPU ({platform.processor() or platform.machine()}, '
                f'{torch.get_num_threads()} threads)'),
        torch=torch.__version__,
        num_rois=args.num_rois,
        image_shape=IMAGE_SHAPE,
        repeats=args.repeats,
        rows=rows)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(report, f, indent=2)
    lines = [
        f"{report['date']}, {report['device']}, torch {report['torch']}, "
        f'{args.num_rois} RoIs pasted into {IMAGE_SHAPE[0]}x'
        f'{IMAGE_SHAPE[1]}, median of {args.repeats}', '',
        '| head | setting | time (ms) | x FCNMaskHead | peak mem (MB) |',
        '| --- | --- | --- | --- | --- |'
    ]
    for row in rows:
        est = ' (est.)' if row['estimated'] else ''
        peak = '-' if row['peak_mb'] is None else f"{row['peak_mb']:.0f}"
        lines.append(f"| {row['head']} | {row['setting']} | "
                     f"{row['seconds'] * 1000:.0f}{est} | "
                     f"{row['ratio']:.2f} | {peak} |")
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
