"""The GPU check of MaskDiff's torch-only parts: one script, one run.

Needs torch only (no mmdet / mmengine / mmcv, no ``pip install -e``): it
imports ``mmdet_maskdiff.diffusion`` and ``mmdet_maskdiff.networks`` from
the checkout it sits in, and reads the COCO configs' sizes from
``configs/_base_/models/maskdiff_r101_fpn.py`` with plain Python. On one
GPU it finishes within ``--budget`` seconds (default 420) plus the row that
is running then, and writes ``<out>/gpu_check.json`` and
``<out>/gpu_check.md`` after every section (a run cut short keeps what it
measured). Sections:

* ``detector``: the whole-detector reference, torchvision's Mask R-CNN
  R-101 FPN (random weights, nothing downloaded) on one 800x1333 image with
  100 detections, fp32 and bf16 autocast; the sampler times are also given
  as multiples of its fp32 time;
* ``sampler``: the paper and the lite denoiser (coco_1shot.py,
  coco_1shot_lite.py) over 100 RoIs with the default and the lite sampler:
  eager fp32 and bf16, bucketed, bucketed + ``torch.compile``, CUDA graphs
  (``fast_path_check.py``'s rows): median time after warm-up and agreement
  with the fp32 eager masks (bit-equal where the fast path promises it,
  mean IoU). Compiled rows run last, the most telling first, and a row that
  would end after the budget is skipped;
* ``host_sync``: every sampler row makes one more call under
  ``torch.cuda.set_sync_debug_mode('error')``; this lists those that
  synced;
* ``stage2_step``: one stage-2 training step of each denoiser (forward +
  backward of the simple loss, :func:`denoiser_loss`) at the config's
  ``max_train_rois``, checkpointing off and on, fp32 and bf16: median time
  and ``torch.cuda.max_memory_allocated``, beside the CPU count of the same
  step (``stage2_activation_memory``, as ``stage2_memory.py``).

``--smoke`` runs every section on the CPU in seconds (a tiny denoiser, 6
RoIs, a ResNet-18 detector on 128x128, one repeat); what needs CUDA
reads ``skipped: no CUDA``.

    python tools/analysis_tools/gpu_check.py --out $OUT/gpu   # one GPU
    python tools/analysis_tools/gpu_check.py --smoke --out /tmp/gpu_check
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from dataclasses import replace
from datetime import date
from typing import Dict, List

import torch

from fast_path_check import (AMPS, COMPILED, DenoiserSetup, SamplerCheck,
                             build_denoiser, check_positive, coco_setups,
                             device_of, first_line, median_ms, roi_inputs,
                             run_rows, sampler_table, smoke_setup,
                             synchronize)
from mmdet_maskdiff.diffusion import denoiser_loss
from mmdet_maskdiff.networks import stage2_activation_memory

SECTIONS = ('detector', 'sampler', 'host_sync', 'stage2_step')
MIB = 2**20
#: (denoiser, sampler): the configs' own pairs first, then the cross pairs
PAIRS = (('paper', 'default'), ('lite', 'lite'), ('paper', 'lite'),
         ('lite', 'default'))
#: the compiled rows, most telling first: the paper denoiser is bound by
#: normalisation traffic (fusion helps), the lite one by launches (graphs)
COMPILED_ORDER = (('compile', 'bf16'), ('cuda_graphs', 'off'),
                  ('compile', 'off'), ('cuda_graphs', 'bf16'))
SMOKE = dict(
    num_rois=6,
    bucket_sizes=(4, 8),
    repeats=1,
    warmup=0,
    train_rois=4,
    train_repeats=1,
    backbone='resnet18',
    image=(128, 128),
    detector_kwargs=dict(rpn_pre_nms_top_n_test=50,
                         rpn_post_nms_top_n_test=50))
FULL = dict(
    num_rois=100,
    bucket_sizes=None,
    repeats=10,
    warmup=1,
    train_rois=None,
    train_repeats=5,
    backbone='resnet101',
    image=(800, 1333),
    detector_kwargs=dict())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--out', default='work_dirs/gpu_check', help='output folder')
    parser.add_argument(
        '--smoke',
        action='store_true',
        help='every section on the CPU in seconds (tiny sizes)')
    parser.add_argument(
        '--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument(
        '--budget',
        type=float,
        default=420.0,
        help='seconds from the start; sampler rows that would end later '
        'are not started')
    parser.add_argument(
        '--repeats', type=int, help='timed calls per row (median)')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args()


def sampler_plan() -> List[tuple]:
    """(denoiser, sampler, variant, amp) rows: eager and bucketed first
    (cheap), then the compiled ones in :data:`COMPILED_ORDER`, the
    configs' own pairs before the cross pairs."""
    cheap = [(d, s, v, a) for d, s in PAIRS for a in AMPS
             for v in ('eager', 'bucket')]
    compiled = [(d, s, v, a) for pairs in (PAIRS[:2], PAIRS[2:])
                for v, a in COMPILED_ORDER for d, s in pairs]
    return cheap + compiled


def detector_reference(device: torch.device, sizes: dict) -> dict:
    """Median time of torchvision's Mask R-CNN (ResNet FPN, random
    weights, every detection kept: ``box_score_thresh=0``, at most 100) on
    one image, fp32 and bf16 autocast."""
    try:
        from torchvision.models.detection import MaskRCNN
        from torchvision.models.detection.backbone_utils import \
            resnet_fpn_backbone
    except Exception as exc:  # absent, or e.g. ops built for another torch
        if getattr(exc, 'name', None) == 'torchvision':
            return dict(status='skipped: torchvision is not installed')
        return dict(status='skipped: torchvision does not import: '
                    f'{first_line(exc)}')
    height, width = sizes['image']
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name=sizes['backbone'], weights=None)
    model = MaskRCNN(
        backbone,
        num_classes=91,
        min_size=height,
        max_size=width,
        box_score_thresh=0.0,
        box_detections_per_img=100,
        **sizes['detector_kwargs']).to(device).eval()
    image = torch.rand(3, height, width, device=device)
    rows = []
    for amp in AMPS:
        row = dict(amp=amp)
        if amp != 'off' and device.type != 'cuda':
            rows.append(dict(row, status='skipped: no CUDA'))
            continue

        def run() -> dict:
            with torch.inference_mode(), torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=amp != 'off'):
                return model([image])[0]

        begin = time.perf_counter()
        out = run()
        synchronize(device)
        row['first_call_s'] = round(time.perf_counter() - begin, 3)
        for _ in range(sizes['warmup']):
            run()
        row['ms'] = round(median_ms(run, sizes['repeats'], device), 3)
        row['detections'] = len(out['boxes'])
        rows.append(dict(row, status='ok'))
    return dict(
        status='ok',
        model=f"torchvision MaskRCNN {sizes['backbone']} FPN",
        image=[height, width],
        rows=rows)


def _cpu_count_mib(denoiser: torch.nn.Module, diffusion, rois: int,
                   amp: str) -> dict:
    """The CPU count of one step of ``denoiser`` (a CPU copy, its
    ``with_cp``), as ``stage2_memory.py`` counts it
    (``stage2_activation_memory``): the activations saved for backward
    plus one recomputed block at ``rois`` RoIs, and that plus the
    gradients (one copy of the parameters)."""
    memory = stage2_activation_memory(
        denoiser,
        diffusion,
        amp_dtype=torch.bfloat16 if amp == 'bf16' else None)
    activations = memory.peak_bytes(rois)
    return dict(
        cpu_count_activations_mib=round(activations / MIB, 1),
        cpu_count_mib=round((activations + memory.parameter_bytes) / MIB,
                            1))


def _train_step(setup: DenoiserSetup, rois: int, amp: str,
                device: torch.device, sizes: dict, repeats: int) -> dict:
    """Median time of a training step (forward + backward of
    :func:`denoiser_loss` on ``rois`` random RoIs, gradients set to None
    before each) and, on CUDA, the allocator's peak during one step and its
    growth over what was held before it (weights, inputs)."""
    denoiser, diffusion = build_denoiser(setup, device)
    denoiser.train()
    data = roi_inputs(denoiser, rois, device)
    g = torch.Generator().manual_seed(2)
    m = denoiser.mask_size
    x0 = ((torch.rand(rois, 1, m, m, generator=g) > 0.5).float() * 2 -
          1).to(device)

    def step() -> None:
        denoiser.zero_grad(set_to_none=True)
        with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=amp == 'bf16'):
            loss = denoiser_loss(denoiser, diffusion, data['cond'],
                                 data['cond_vector'], data['labels'], x0)
        loss.mean().backward()

    for _ in range(sizes['warmup']):
        step()
    out = dict(ms=round(median_ms(step, repeats, device), 3))
    if device.type == 'cuda':
        denoiser.zero_grad(set_to_none=True)
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        out.update(
            peak_allocated_mib=round(peak / MIB, 1),
            step_mib=round((peak - before) / MIB, 1))
    else:
        out['memory'] = 'skipped: no CUDA'
    return out


def stage2_rows(setups: Dict[str, DenoiserSetup], device: torch.device,
                sizes: dict, repeats: int) -> List[dict]:
    """One training step per denoiser x checkpointing x precision, at
    the config's ``max_train_rois`` (``sizes['train_rois']`` if set), each
    beside its CPU count."""
    rows = []
    for name, setup in setups.items():
        rois = sizes['train_rois'] or setup.max_train_rois
        counted, diffusion = build_denoiser(setup, torch.device('cpu'))
        counted.train()
        for with_cp in (False, True):
            counted.with_cp = with_cp
            cp_setup = replace(
                setup, denoiser=dict(setup.denoiser, with_cp=with_cp))
            for amp in AMPS:
                row = dict(denoiser=name, rois=rois, with_cp=with_cp, amp=amp)
                try:
                    row.update(
                        _train_step(cp_setup, rois, amp, device, sizes,
                                    repeats))
                    row.update(_cpu_count_mib(counted, diffusion, rois, amp))
                    row['status'] = 'ok'
                except Exception as exc:  # e.g. out of memory: report, go on
                    row['status'] = f'error: {first_line(exc)}'
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
                rows.append(row)
    return rows


def host_sync_summary(rows: List[dict], device: torch.device) -> dict:
    """Which sampler rows synced with the host in their checked call."""
    if device.type != 'cuda':
        return dict(status='skipped: no CUDA')
    checked = [r for r in rows if 'host_sync' in r]
    synced = [
        f"{r['denoiser']}/{r['sampler']}/{r['variant']}/{r['amp']}: "
        f"{r['host_sync']}" for r in checked if r['host_sync'] != 'none'
    ]
    return dict(
        status='ok' if not synced else 'host syncs found',
        rows_checked=len(checked),
        rows_with_sync=synced)


def environment(device: torch.device) -> dict:
    """Card, versions and the numeric settings the rows ran under."""
    env = dict(
        date=date.today().isoformat(),
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'CPU'),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        gpu_memory_gib=(round(
            torch.cuda.get_device_properties(device).total_memory / 2**30,
            1) if device.type == 'cuda' else None),
        cpu_threads=torch.get_num_threads(),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
    try:
        import torchvision
        env['torchvision'] = torchvision.__version__
    except Exception:  # absent, or its C++ ops do not fit this torch
        env['torchvision'] = None
    return env


def markdown(report: dict) -> str:
    """The report as Markdown tables, one per section."""
    env, sections = report['environment'], report['sections']
    settings = report['settings']
    lines = [
        '# GPU check (tools/analysis_tools/gpu_check.py)', '',
        f"{env['date']}, {env['device']}, torch {env['torch']}, CUDA "
        f"{env['cuda']}, torchvision {env['torchvision']}; "
        f"{'SMOKE (tiny sizes); ' if settings['smoke'] else ''}"
        f"median of {settings['repeats']} after {settings['warmup']} "
        f"warm-up call(s); cudnn.benchmark {env['cudnn_benchmark']}, "
        f"cudnn TF32 {env['cudnn_allow_tf32']}, matmul precision "
        f"{env['float32_matmul_precision']}; "
        f"{'complete' if report['complete'] else 'INCOMPLETE'} after "
        f"{report['elapsed_s']} s"
    ]
    detector = sections.get('detector')
    detector_ms = None
    if detector is not None:
        lines += ['', '## Whole-detector reference', '']
        if detector['status'] != 'ok':
            lines.append(detector['status'])
        else:
            lines += [
                '| model | image | amp | first call (s) | time (ms) | '
                'detections |', '| --- | --- | --- | --- | --- | --- |'
            ]
            for row in detector['rows']:
                if row['status'] != 'ok':
                    lines.append(f"| {detector['model']} | | {row['amp']} "
                                 f"| {row['status']} | | |")
                    continue
                lines.append(
                    f"| {detector['model']} | {detector['image'][0]}x"
                    f"{detector['image'][1]} | {row['amp']} | "
                    f"{row['first_call_s']} | {row['ms']} | "
                    f"{row['detections']} |")
            detector_ms = detector['rows'][0].get('ms')
    if 'sampler' in sections:
        lines += [
            '', f"## Sampler: {settings['num_rois']} RoIs", '',
            'Samplers: ' + '; '.join(
                f"{name}: {cfg['type']} {cfg['steps']} step(s), w = "
                f"{cfg['guidance_weight']:g}"
                for name, cfg in report['samplers'].items()), ''
        ] + sampler_table(sections['sampler']['rows'], detector_ms)
    if 'host_sync' in sections:
        sync = sections['host_sync']
        lines += ['', '## Host syncs in the sampling loop', '']
        if sync['status'].startswith('skipped'):
            lines.append(sync['status'])
        else:
            lines.append(f"{sync['rows_checked']} rows checked; with a "
                         f"sync: {sync['rows_with_sync'] or 'none'}")
    if 'stage2_step' in sections:
        lines += [
            '', '## Stage-2 training step (denoiser forward + backward)', '',
            f"Median of {settings['train_repeats']} steps; the CPU count "
            'is that of stage2_memory.py (bf16: CPU autocast); on the CPU '
            'the bf16 steps run under CPU autocast.', '',
            '| denoiser | RoIs | checkpointing | amp | time (ms) | peak '
            'allocated (MiB) | step allocation (MiB) | CPU count: '
            'activations + grads (MiB) | step / CPU count |',
            '|' + ' --- |' * 9
        ]
        for row in sections['stage2_step']['rows']:
            head = (f"| {row['denoiser']} | {row['rois']} | "
                    f"{'on' if row['with_cp'] else 'off'} | {row['amp']} |")
            if row['status'] != 'ok':
                lines.append(head + f" {row['status']} |" + ' |' * 4)
                continue
            step = row.get('step_mib')
            ratio = (f'{step / row["cpu_count_mib"]:.2f}'
                     if step is not None else '-')
            lines.append(
                head + f" {row['ms']} | {row.get('peak_allocated_mib', '-')}"
                f" | {step if step is not None else row['memory']} | "
                f"{row['cpu_count_mib']} | {ratio} |")
    return '\n'.join(lines) + '\n'


def write(report: dict, out: str) -> None:
    """``<out>/gpu_check.json`` and ``.md`` (rewritten after each
    section)."""
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(osp.join(out, 'gpu_check.md'), 'w') as f:
        f.write(markdown(report))


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    device = device_of(args.device)
    if device.type != 'cuda' and not args.smoke:
        print(
            f'error: --device {args.device} is not CUDA: the full sizes '
            'would take hours on the CPU; add --smoke', file=sys.stderr)
        sys.exit(2)
    check_positive('--budget', args.budget)
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.repeats is not None:
        check_positive('--repeats', args.repeats)
        sizes.update(repeats=args.repeats, train_repeats=args.repeats)
    setups = coco_setups()
    if args.smoke:
        setups = {k: smoke_setup(v) for k, v in setups.items()}
    samplers = dict(default=setups['paper'].sampler,
                    lite=setups['lite'].sampler)
    report = dict(
        tool='gpu_check',
        complete=False,
        elapsed_s=0.0,
        environment=environment(device),
        settings=dict(
            smoke=args.smoke,
            budget_s=args.budget,
            num_rois=sizes['num_rois'],
            repeats=sizes['repeats'],
            train_repeats=sizes['train_repeats'],
            warmup=sizes['warmup'],
            bucket_sizes=sizes['bucket_sizes']),
        setups={
            name: dict(
                denoiser=setup.denoiser,
                max_train_rois=setup.max_train_rois)
            for name, setup in setups.items()
        },
        samplers={k: dict(v) for k, v in samplers.items()},
        sections={})
    sections = report['sections']

    def save() -> None:
        report['elapsed_s'] = round(time.perf_counter() - start, 1)
        write(report, args.out)

    def sampler_row_done(row: dict) -> None:
        save()
        print(f"{report['elapsed_s']:7.1f} s  {row['denoiser']}/"
              f"{row['sampler']}/{row['variant']}/{row['amp']}: "
              f"{row['status']} {row.get('ms', '')}", flush=True)

    if 'detector' in args.sections:
        try:
            sections['detector'] = detector_reference(device, sizes)
        except Exception as exc:  # report it, go on with the next section
            sections['detector'] = dict(status=f'error: {first_line(exc)}')
        save()
    check = SamplerCheck(
        setups,
        samplers,
        sizes['num_rois'],
        device,
        sizes['repeats'],
        warmup=sizes['warmup'],
        sync_check='host_sync' in args.sections,
        bucket_sizes=sizes['bucket_sizes'])
    plan = sampler_plan()
    sampler_rows: List[dict] = []
    if 'sampler' in args.sections:
        sections['sampler'] = dict(rows=sampler_rows)
        run_rows(check, [r for r in plan if r[2] not in COMPILED],
                 start + args.budget, sampler_rows, sampler_row_done)
    if 'stage2_step' in args.sections:
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        sections['stage2_step'] = dict(
            rows=stage2_rows(setups, device, sizes, sizes['train_repeats']))
        save()
        print(f"{report['elapsed_s']:7.1f} s  stage2_step done", flush=True)
    if 'sampler' in args.sections:
        run_rows(check, [r for r in plan if r[2] in COMPILED],
                 start + args.budget, sampler_rows, sampler_row_done)
    if 'host_sync' in args.sections:
        sections['host_sync'] = host_sync_summary(sampler_rows, device)
    report['complete'] = True
    save()
    print(markdown(report))


if __name__ == '__main__':
    main()
