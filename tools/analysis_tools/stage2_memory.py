"""Stage-2 activation memory and FLOPs per RoI of a config's mask head, on
the CPU.

For the config's ``DiffusionMaskHead`` (default: the COCO entry config),
with checkpointing off and on, in fp32 and under bfloat16 autocast:

* bytes saved for backward per RoI (``stage2_activation_memory``: measured
  at 1 and 2 RoIs, linear in the RoI count), plus, with checkpointing, the
  largest block recomputed in the backward pass; extrapolated to the
  config's ``max_train_rois`` and to 256 RoIs (2 images x 128 positives);
* FLOPs per RoI (``torch.utils.flop_counter``): one denoiser forward, and one
  training step (forward + backward; checkpointing adds the recomputation).

and the FLOPs per RoI of the baseline config's FCN mask head (its RoI
feature input, 14x14). CPU autocast keeps other ops in bf16 than CUDA's
(e.g. GroupNorm), so the bf16 rows are indicative only.

The frozen detector of stage 2 saves nothing for backward; what it adds is
its transient forward. ``--detector`` measures it: the growth of the
process's peak RSS over a no-grad forward of the config's backbone, neck and
RPN head on 2 images of 800x1344 (one GPU's batch).

    python tools/analysis_tools/stage2_memory.py configs/maskdiff/coco_1shot.py

Writes ``<out>.json`` and ``<out>.md``.
"""
import argparse
import json
import os
import os.path as osp
import resource
from datetime import date

import torch
from mmengine.config import Config
from torch.utils.flop_counter import FlopCounterMode

import mmdet_maskdiff  # noqa: F401  (registers the head and the denoiser)
from mmdet.registry import MODELS
from mmdet_maskdiff.networks import stage2_activation_memory
from mmdet_maskdiff.utils import InputError, load_config, run_cli

GIB = 2**30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'config', nargs='?', default='configs/maskdiff/coco_1shot.py')
    parser.add_argument(
        '--baseline', help='FCN config (default: <config>_fcn.py)')
    parser.add_argument(
        '--rois',
        type=int,
        nargs='+',
        default=None,
        help="RoI counts to extrapolate to (default: the "
        "config's max_train_rois and 256)")
    parser.add_argument(
        '--detector',
        action='store_true',
        help='also measure the frozen detector forward')
    parser.add_argument('--out', default='work_dirs/stage2_memory')
    return parser.parse_args()


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def denoiser_flops(head, with_cp: bool) -> dict:
    """FLOPs of one RoI: denoiser forward, and a training step."""
    denoiser = head.denoiser
    m = head.mask_size
    y = torch.randn(1, denoiser.mask_channels, m, m)
    cond = torch.randn(1, denoiser.cond_channels, m, m)
    vector = (
        torch.randn(1, denoiser.cond_vector_dim)
        if denoiser.cond_vector_dim else None)
    t = torch.zeros(1, dtype=torch.long)
    labels = torch.zeros(1, dtype=torch.long)
    denoiser.with_cp = with_cp
    def forward() -> torch.Tensor:
        return denoiser(y, t, denoiser.encode_condition(cond, vector), labels)

    with torch.no_grad():
        forward_flops = _flops(forward)
    step = _flops(lambda: forward().square().sum().backward())
    return dict(forward=forward_flops, train_step=step)


def detector_forward_mib(cfg) -> dict:
    """Peak-RSS growth (MiB) of a no-grad forward of the detector's
    backbone, neck and RPN head on 2 images of 800x1344, and the size of
    the neck's outputs (kept for the mask branch)."""
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None  # nothing is downloaded
    model = MODELS.build(model_cfg).eval()
    images = torch.randn(2, 3, 800, 1344)

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    before = peak()
    with torch.no_grad():
        feats = model.extract_feat(images)
        model.rpn_head(feats)
    neck = sum(f.numel() * f.element_size() for f in feats) / 2**20
    return dict(peak_rss_growth=peak() - before, neck_outputs=neck)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config)
    head_cfg = cfg.model.roi_head.mask_head
    if head_cfg.type != 'DiffusionMaskHead':
        raise InputError(f'{args.config}: model.roi_head.mask_head is '
                         f'{head_cfg.type}, not DiffusionMaskHead')
    if args.rois and min(args.rois) < 1:
        raise InputError(f'--rois must be >= 1, got {args.rois}')
    rois = args.rois or sorted({head_cfg.get('max_train_rois') or 256, 256})
    # first: the peak RSS only grows, the head's measurements would hide it
    detector = detector_forward_mib(cfg) if args.detector else None
    torch.manual_seed(0)
    head = MODELS.build(head_cfg).train()
    rows = []
    for with_cp in (False, True):
        for amp in (None, torch.bfloat16):
            head.denoiser.with_cp = with_cp
            memory = stage2_activation_memory(
                head.denoiser, head.diffusion, amp_dtype=amp)
            rows.append(
                dict(
                    with_cp=with_cp,
                    precision='bf16 (CPU autocast)' if amp else 'fp32',
                    saved_per_roi_mib=memory.per_roi_bytes / 2**20,
                    recompute_per_roi_mib=memory.recompute_per_roi_bytes /
                    2**20,
                    peak_gib={n: memory.peak_bytes(n) / GIB
                              for n in rois}))
    flops = {f'with_cp={cp}': denoiser_flops(head, cp) for cp in (False, True)}
    head.denoiser.with_cp = bool(head_cfg.denoiser.get('with_cp', False))
    stem, ext = osp.splitext(args.config)
    baseline = args.baseline or stem + '_fcn' + ext
    fcn_flops = None
    if osp.isfile(baseline):
        fcn_cfg = Config.fromfile(baseline).model.roi_head
        fcn = MODELS.build(fcn_cfg.mask_head)
        size = fcn_cfg.mask_roi_extractor.roi_layer.output_size
        feats = torch.randn(1, fcn_cfg.mask_head.in_channels, size, size)
        with torch.no_grad():
            fcn_flops = _flops(lambda: fcn(feats))
    params = sum(p.numel() for p in head.denoiser.parameters())
    report = dict(
        date=date.today().isoformat(),
        config=args.config,
        rois=rois,
        denoiser_params=params,
        memory=rows,
        flops_per_roi=flops,
        fcn_flops_per_roi=fcn_flops,
        detector_forward_mib=detector)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(report, f, indent=2)
    lines = [
        f"{report['date']}, {args.config}, denoiser "
        f'{params / 1e6:.1f} M parameters, torch {torch.__version__} (CPU)',
        '',
        '| checkpointing | precision | saved / RoI (MiB) | recomputed block '
        '/ RoI (MiB) | ' + ' | '.join(f'peak at {n} RoIs (GiB)'
                                      for n in rois) + ' |',
        '|' + ' --- |' * (4 + len(rois)),
    ]
    for row in rows:
        lines.append(
            f"| {'on' if row['with_cp'] else 'off'} | {row['precision']} | "
            f"{row['saved_per_roi_mib']:.1f} | "
            f"{row['recompute_per_roi_mib']:.1f} | " +
            ' | '.join(f"{row['peak_gib'][n]:.1f}" for n in rois) + ' |')
    lines += [
        '',
        '| FLOPs per RoI | GFLOPs |',
        '| --- | --- |',
        '| denoiser forward | '
        f"{flops['with_cp=False']['forward'] / 1e9:.1f} |",
        '| denoiser training step (fwd + bwd) | '
        f"{flops['with_cp=False']['train_step'] / 1e9:.1f} |",
        '| same, checkpointing | '
        f"{flops['with_cp=True']['train_step'] / 1e9:.1f} |",
    ]
    if fcn_flops is not None:
        lines.append(f'| FCNMaskHead forward ({osp.basename(baseline)}) | '
                     f'{fcn_flops / 1e9:.2f} |')
    if detector is not None:
        lines += [
            '', 'Frozen detector, no-grad forward of backbone + neck + RPN '
            'head, 2 images of 800x1344: peak RSS growth '
            f"{detector['peak_rss_growth']:.0f} MiB, of it neck outputs "
            f"{detector['neck_outputs']:.0f} MiB"
        ]
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    run_cli(main)
