"""Check and time the inference fast path of the diffusion mask head.

Torch only (no mmdet / mmcv needed: runs on a bare GPU box). Samples masks
for N RoIs with the COCO configs' denoiser (64x64 masks, UNet 128 x
(1, 2, 3, 4), random weights with a non-zero output layer, so the masks
depend on the noise) through :class:`RoIMaskSampler`, once per variant:

* ``eager``: the reference (fp32), the path used for debugging;
* ``bucket``: RoIs padded to a bucket size (fp32), must be bit-equal to
  eager up to kernel batch-size effects;
* ``compile``: + ``torch.compile`` (CUDA);
* ``cuda_graphs``: + ``mode='reduce-overhead'`` (CUDA graphs);
* each of them also with ``amp`` (bf16 autocast, CUDA).

For each: the first call (compilation included), the median of
``--repeats`` timed calls, the fraction of mask pixels that differ from the
fp32 eager masks and the mean mask IoU with them. With ``--sync-check`` one
call per variant runs under ``torch.cuda.set_sync_debug_mode('error')``: a
host sync inside the sampling loop raises.

    python tools/analysis_tools/fast_path_check.py --num-rois 100

Writes ``<out>.json`` and ``<out>.md``.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from datetime import date

import torch

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdet_maskdiff.diffusion import (  # noqa: E402
    GaussianDiffusion, RoIMaskSampler, get_beta_schedule,
    parse_sampler_settings)
from mmdet_maskdiff.networks import MaskDenoisingUNet  # noqa: E402

# the COCO configs' denoiser (configs/_base_/models/maskdiff_r101_fpn.py) and
# the compact one of docs/benchmarks.md
DENOISERS = dict(
    paper=dict(
        mask_size=64,
        base_channels=128,
        channel_mults=(1, 2, 3, 4),
        num_res_blocks=2,
        attention_channels=(384, ),
        num_head_channels=64),
    compact=dict(
        mask_size=28,
        base_channels=32,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        attention_channels=(64, ),
        num_head_channels=32))
VARIANTS = dict(
    eager=None,
    bucket=dict(),
    compile=dict(compile=True),
    cuda_graphs=dict(compile=True, cuda_graphs=True))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--denoiser', default='paper', choices=DENOISERS)
    parser.add_argument('--num-rois', type=int, default=100)
    parser.add_argument('--steps', type=int, default=2)
    parser.add_argument('--guidance-weight', type=float, default=1.0)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument(
        '--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        '--amp', nargs='+', default=['off', 'bf16'], choices=['off', 'bf16'])
    parser.add_argument(
        '--budget',
        type=float,
        default=420.0,
        help='stop starting new variants after this many seconds')
    parser.add_argument('--sync-check', action='store_true')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--out', default='work_dirs/fast_path_check')
    return parser.parse_args()


def build(name: str, device: torch.device):
    cfg = dict(DENOISERS[name])
    m = cfg.pop('mask_size')
    torch.manual_seed(0)
    denoiser = MaskDenoisingUNet(
        cond_channels=7,
        num_classes=80,
        cond_vector_dim=256,
        mask_size=m,
        dropout=0.0,
        **cfg)
    with torch.no_grad():  # a non-zero output layer: noise-dependent masks
        for param in denoiser.parameters():
            if not param.any():
                param.normal_(0, 0.02)
    diffusion = GaussianDiffusion(
        get_beta_schedule('linear', 1000), prediction_type='x0')
    return denoiser.to(device).eval(), diffusion, m


def inputs(num: int, m: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    return dict(
        cond=torch.randn(num, 7, m, m, generator=g).to(device),
        cond_vector=torch.randn(num, 256, generator=g).to(device),
        labels=torch.randint(0, 80, (num, ), generator=g).to(device),
        noise_keys=torch.randint(0, 2**32, (num, ), generator=g).to(device))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    denoiser, diffusion, m = build(args.denoiser, device)
    data = inputs(args.num_rois, m, device)
    reference = None
    rows = []
    start_all = time.perf_counter()

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    for amp in args.amp:
        for variant in args.variants:
            if time.perf_counter() - start_all > args.budget:
                print(f'budget spent: {variant} amp={amp} not run')
                continue
            fast = VARIANTS[variant]
            if fast is not None:
                fast = dict(fast, devices=(device.type, ))
            sampler = RoIMaskSampler(diffusion, 80)
            sampler_cfg = dict(
                steps=args.steps,
                guidance_weight=args.guidance_weight,
                seed=0,
                amp=amp == 'bf16',
                fast=fast)

            def run():
                settings = parse_sampler_settings(sampler_cfg, 1000)
                return sampler.sample(denoiser, data['cond'],
                                      data['cond_vector'], data['labels'],
                                      data['noise_keys'], settings)[0]

            row = dict(variant=variant, amp=amp)
            try:
                sync()
                begin = time.perf_counter()
                masks = run()
                sync()
                row['first_call_s'] = round(time.perf_counter() - begin, 2)
                run()  # CUDA graphs record on the second call
                times = []
                for _ in range(args.repeats):
                    sync()
                    begin = time.perf_counter()
                    masks = run()
                    sync()
                    times.append(time.perf_counter() - begin)
                row['ms'] = round(statistics.median(times) * 1000, 2)
                if args.sync_check and device.type == 'cuda':
                    torch.cuda.set_sync_debug_mode('error')
                    try:
                        run()
                        row['host_syncs'] = 'none'
                    except RuntimeError as exc:
                        row['host_syncs'] = str(exc).splitlines()[0][:120]
                    finally:
                        torch.cuda.set_sync_debug_mode('default')
            except Exception as exc:  # report, go on with the next variant
                row['error'] = f'{type(exc).__name__}: {exc}'.splitlines()[0]
                print(f"{variant} amp={amp}: {row['error']}")
                rows.append(row)
                continue
            masks = masks[:, 0] > 0
            if reference is None:
                reference = masks
            inter = (masks & reference).flatten(1).sum(1).float()
            union = (masks | reference).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
            row['differing_pixels'] = float((masks
                                             != reference).float().mean())
            row['mean_iou_vs_eager_fp32'] = round(float(iou.mean()), 5)
            row['min_iou_vs_eager_fp32'] = round(float(iou.min()), 5)
            rows.append(row)
            print(json.dumps(row))
    report = dict(
        date=date.today().isoformat(),
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'CPU'),
        torch=torch.__version__,
        denoiser=args.denoiser,
        num_rois=args.num_rois,
        steps=args.steps,
        guidance_weight=args.guidance_weight,
        repeats=args.repeats,
        rows=rows)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(report, f, indent=2)
    lines = [
        f"{report['date']}, {report['device']}, torch {report['torch']}, "
        f'{args.denoiser} denoiser, {args.num_rois} RoIs, DDIM {args.steps} '
        f'steps, w = {args.guidance_weight:g}, median of {args.repeats}', '',
        '| path | amp | first call (s) | time (ms) | pixels != eager fp32 '
        '| mean / min IoU vs eager fp32 |', '| --- | --- | --- | --- | --- '
        '| --- |'
    ]
    for row in rows:
        if 'error' in row:
            lines.append(f"| {row['variant']} | {row['amp']} | "
                         f"error: {row['error']} | | | |")
            continue
        lines.append(
            f"| {row['variant']} | {row['amp']} | {row['first_call_s']} | "
            f"{row['ms']} | {row['differing_pixels']:.2e} | "
            f"{row['mean_iou_vs_eager_fp32']} / "
            f"{row['min_iou_vs_eager_fp32']} |")
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
