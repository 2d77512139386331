"""Check and time the inference fast path of the diffusion mask head.

Torch only (no mmdet / mmengine: runs on a bare GPU box, from a checkout,
without installing the package). Samples masks for N RoIs through
:class:`RoIMaskSampler` with a denoiser of the COCO configs, read from
``configs/_base_/models/maskdiff_r101_fpn.py`` without mmengine
(:func:`coco_setups`): ``paper`` (coco_<K>shot.py: 64x64 masks, UNet 128 x
(1, 2, 3, 4)) or ``lite`` (coco_<K>shot_lite.py: 28x28, UNet 32 x (1, 2, 2)),
each with K = 1 and random weights (a non-zero output layer, so the masks
depend on the noise); the sampler is one of the two configs' samplers
(``default``: DDIM 2 steps, w = 1; ``lite``: DDIM 1 step, w = 0). Once per
variant:

* ``eager``: the reference (fp32), the path used for debugging;
* ``bucket``: RoIs padded to a bucket size; the fast path promises masks
  bit-equal to eager in fp32;
* ``compile``: + ``torch.compile`` (CUDA);
* ``cuda_graphs``: + ``mode='reduce-overhead'`` (CUDA graphs);
* each of them also with ``amp`` (bf16 autocast, CUDA).

For each: the first call (compilation included), the median of
``--repeats`` timed calls after warm-up (CUDA events on a GPU), whether the
masks are bit-equal to the fp32 eager masks, the fraction of mask pixels
that differ and the mean / min mask IoU with them. With ``--sync-check`` one
more call per variant runs under ``torch.cuda.set_sync_debug_mode('error')``:
a host sync inside the sampling loop raises.

    python tools/analysis_tools/fast_path_check.py --denoiser lite --sync-check

Writes ``<out>.json`` and ``<out>.md``. ``gpu_check.py`` runs the same rows
for both denoisers and samplers, beside its other sections.
"""
import argparse
import json
import os
import os.path as osp
import runpy
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import date
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # a checkout runs without `pip install -e`

from mmdet_maskdiff.diffusion import (  # noqa: E402
    GaussianDiffusion, RoIMaskSampler, SamplerSettings, get_beta_schedule,
    parse_sampler_settings)
from mmdet_maskdiff.networks import MaskDenoisingUNet  # noqa: E402

#: the model file of the COCO configs: the paper head and ``lite_model``
BASE_MODEL_CONFIG = osp.join(REPO, 'configs', '_base_', 'models',
                             'maskdiff_r101_fpn.py')
VARIANTS = dict(
    eager=None,
    bucket=dict(),
    compile=dict(compile=True),
    cuda_graphs=dict(compile=True, cuda_graphs=True))
COMPILED = ('compile', 'cuda_graphs')
#: the paths whose fp32 masks FastPath promises bit-equal to eager
PROMISED_BIT_EQUAL = ('eager', 'bucket')
AMPS = ('off', 'bf16')
#: a denoiser of a few thousand parameters for the CPU smoke runs
SMOKE_SIZES = dict(
    mask_size=16,
    base_channels=8,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attention_channels=(16, ),
    num_head_channels=8)


@dataclass(frozen=True)
class DenoiserSetup:
    """A COCO config's diffusion head, as plain values.

    Attributes:
        denoiser: :class:`MaskDenoisingUNet` keyword arguments, with the
            sizes the head fills in (condition channels, classes, mask
            size, prototype width).
        beta_schedule: the head's ``beta_schedule``.
        num_timesteps: T.
        prediction_type: what the denoiser predicts.
        max_train_rois: RoIs per GPU of a stage-2 training step.
        sampler: the config's ``model.test_cfg.rcnn.diffusion_sampling``.
    """
    denoiser: dict
    beta_schedule: str
    num_timesteps: int
    prediction_type: str
    max_train_rois: Optional[int]
    sampler: dict


def _merged(base: dict, override: dict) -> dict:
    """``override`` merged into ``base`` recursively (mmengine's rule for
    dicts without ``_delete_``)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merged(out[key], value)
        out[key] = value
    return out


def _setup(head: dict, sampler: dict) -> DenoiserSetup:
    """The :class:`DenoiserSetup` of a ``DiffusionMaskHead`` config dict
    (``region_source='image'`` heads: the condition is the crop's 3
    channels and 4 per shot, as ``DiffusionMaskHead`` builds it)."""
    if head['region_source'] != 'image':
        raise ValueError(f'{BASE_MODEL_CONFIG}: region_source '
                         f"{head['region_source']!r}; this tool reads "
                         "'image' heads only")
    shots = head['num_shots'] if head['shot_fusion'] == 'concat' else 1
    denoiser = {k: v for k, v in head['denoiser'].items() if k != 'type'}
    denoiser.update(
        cond_channels=3 + 4 * shots,
        num_classes=head['num_classes'],
        mask_size=head['mask_size'],
        cond_vector_dim=head['prototype_dim']
        if head['use_prototypes'] else 0)
    return DenoiserSetup(
        denoiser=denoiser,
        beta_schedule=head['beta_schedule'],
        num_timesteps=head['num_timesteps'],
        prediction_type=head['prediction_type'],
        max_train_rois=head['max_train_rois'],
        sampler=dict(sampler))


def coco_setups(path: str = BASE_MODEL_CONFIG) -> Dict[str, DenoiserSetup]:
    """``paper`` and ``lite``: the diffusion heads of coco_1shot.py and
    coco_1shot_lite.py, read from their model file with plain Python (it
    assigns dicts only), so no mmengine is needed."""
    scope = runpy.run_path(path)
    head = scope['diffusion_mask_head']
    # the config states only what differs from the SamplerSettings defaults
    sampler = _merged(SamplerSettings().to_dict(),
                      scope['model']['test_cfg']['rcnn']['diffusion_sampling'])
    lite = scope['lite_model']
    return dict(
        paper=_setup(head, sampler),
        lite=_setup(
            _merged(head, lite['roi_head']['mask_head']),
            _merged(sampler, lite['test_cfg']['rcnn']['diffusion_sampling'])))


def smoke_setup(setup: DenoiserSetup) -> DenoiserSetup:
    """``setup`` with :data:`SMOKE_SIZES` (a CPU run in seconds)."""
    return replace(setup, denoiser=dict(setup.denoiser, **SMOKE_SIZES))


def build_denoiser(setup: DenoiserSetup,
                   device: torch.device,
                   seed: int = 0) -> Tuple[nn.Module, GaussianDiffusion]:
    """The denoiser of ``setup`` (in eval mode, random weights with no
    zero layer: masks that depend on the noise) and its diffusion."""
    torch.manual_seed(seed)
    denoiser = MaskDenoisingUNet(**setup.denoiser)
    with torch.no_grad():
        for param in denoiser.parameters():
            if not param.any():
                param.normal_(0, 0.02)
    diffusion = GaussianDiffusion(
        get_beta_schedule(setup.beta_schedule, setup.num_timesteps),
        prediction_type=setup.prediction_type)
    return denoiser.to(device).eval(), diffusion


def roi_inputs(denoiser: nn.Module, num: int,
               device: torch.device) -> Dict[str, Tensor]:
    """Random sampler inputs of ``num`` RoIs: ``cond`` (num, C, m, m),
    ``cond_vector`` (num, D) or None, ``labels`` and ``noise_keys``
    (num, )."""
    g = torch.Generator().manual_seed(1)
    m = denoiser.mask_size
    vector = None
    if denoiser.cond_vector_dim:
        vector = torch.randn(num, denoiser.cond_vector_dim, generator=g)
    return dict(
        cond=torch.randn(num, denoiser.cond_channels, m, m,
                         generator=g).to(device),
        cond_vector=None if vector is None else vector.to(device),
        labels=torch.randint(0, denoiser.num_classes, (num, ),
                             generator=g).to(device),
        noise_keys=torch.randint(0, 2**32, (num, ), generator=g).to(device))


def synchronize(device: torch.device) -> None:
    """Wait for the device's work (CUDA); nothing on the CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], repeats: int,
              device: torch.device) -> float:
    """Median time of ``repeats`` calls of ``fn`` in ms: CUDA events
    around each call on a GPU (the stream idle before it), the host clock
    on the CPU."""
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            synchronize(device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


def mask_agreement(masks: Tensor, reference: Tensor) -> dict:
    """Agreement of (N, m, m) bool masks with the reference masks:
    ``bit_equal``, ``differing_pixels`` (fraction) and the ``mean_iou`` /
    ``min_iou`` over the RoIs (two empty masks agree: IoU 1)."""
    inter = (masks & reference).flatten(1).sum(1).float()
    union = (masks | reference).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
    return dict(
        bit_equal=bool(torch.equal(masks, reference)),
        differing_pixels=float((masks != reference).float().mean()),
        mean_iou=round(float(iou.mean()), 5),
        min_iou=round(float(iou.min()), 5))


def first_line(exc: Exception) -> str:
    """``Type: message`` of an exception: its first line, at most 300
    characters (for a report row)."""
    lines = f'{type(exc).__name__}: {exc}'.splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def host_sync_check(fn: Callable[[], object]) -> str:
    """``'none'`` when ``fn`` runs under
    ``torch.cuda.set_sync_debug_mode('error')``, else the first line of
    the error a host sync raised."""
    torch.cuda.set_sync_debug_mode('error')
    try:
        fn()
        return 'none'
    except RuntimeError as exc:
        return first_line(exc)
    finally:
        torch.cuda.set_sync_debug_mode('default')


class SamplerCheck:
    """The sampler rows of a set of denoisers and samplers on one device.

    Holds the built denoisers, their inputs and, per (denoiser, sampler),
    the fp32 eager masks every row is compared with.

    Args:
        setups: denoiser name -> setup (the denoisers to time).
        samplers: sampler name -> ``model.test_cfg.rcnn.diffusion_sampling`` dict.
        num_rois: RoIs per call.
        device: where to sample.
        repeats: timed calls per row (median), after ``warmup`` calls.
        warmup: untimed calls after the first one (CUDA graphs record on
            the second call).
        sync_check: one more call per row under the sync debug mode
            (CUDA only).
        bucket_sizes: the fast path's buckets (None: FastPath's).
    """

    def __init__(self,
                 setups: Dict[str, DenoiserSetup],
                 samplers: Dict[str, dict],
                 num_rois: int,
                 device: torch.device,
                 repeats: int,
                 warmup: int = 1,
                 sync_check: bool = True,
                 bucket_sizes: Optional[Sequence[int]] = None) -> None:
        self.setups = setups
        self.samplers = samplers
        self.num_rois = num_rois
        self.device = device
        self.repeats = repeats
        self.warmup = warmup
        self.sync_check = sync_check
        self.bucket_sizes = bucket_sizes
        self._built: Dict[str, tuple] = {}
        self._reference: Dict[Tuple[str, str], Tensor] = {}

    def _denoiser(self, name: str) -> tuple:
        if name not in self._built:
            denoiser, diffusion = build_denoiser(self.setups[name],
                                                 self.device)
            self._built[name] = (denoiser, diffusion,
                                 roi_inputs(denoiser, self.num_rois,
                                            self.device))
        return self._built[name]

    def skip_reason(self, variant: str, amp: str) -> Optional[str]:
        """Why a row cannot run on this device (None: it can)."""
        if self.device.type != 'cuda' and (variant in COMPILED
                                           or amp != 'off'):
            return 'skipped: no CUDA'
        return None

    def _sampler_fn(self, denoiser_name: str, sampler_name: str,
                    variant: str, amp: str) -> Callable[[], Tensor]:
        """One call: (N, m, m) bool masks, through a fresh sampler."""
        denoiser, diffusion, data = self._denoiser(denoiser_name)
        fast = VARIANTS[variant]
        if fast is not None:
            fast = dict(fast, devices=(self.device.type, ))
            if self.bucket_sizes is not None:
                fast['bucket_sizes'] = tuple(self.bucket_sizes)
        settings = parse_sampler_settings(
            dict(self.samplers[sampler_name], amp=amp == 'bf16', fast=fast),
            diffusion.num_timesteps)
        sampler = RoIMaskSampler(diffusion, denoiser.num_classes)

        def run() -> Tensor:
            fg_count = sampler.sample(denoiser, data['cond'],
                                      data['cond_vector'], data['labels'],
                                      data['noise_keys'], settings)[0]
            return fg_count[:, 0] > 0

        return run

    def reference(self, denoiser_name: str, sampler_name: str) -> Tensor:
        """The fp32 eager masks of a pair (one call, cached)."""
        key = (denoiser_name, sampler_name)
        if key not in self._reference:
            self._reference[key] = self._sampler_fn(denoiser_name,
                                                    sampler_name, 'eager',
                                                    'off')()
        return self._reference[key]

    def row(self, denoiser_name: str, sampler_name: str, variant: str,
            amp: str) -> dict:
        """Time and check one variant; errors are reported in the row."""
        row = dict(
            denoiser=denoiser_name,
            sampler=sampler_name,
            variant=variant,
            amp=amp,
            promised_bit_equal=variant in PROMISED_BIT_EQUAL
            and amp == 'off')
        reason = self.skip_reason(variant, amp)
        if reason:
            return dict(row, status=reason)
        begin_row = time.perf_counter()
        try:
            reference = self.reference(denoiser_name, sampler_name)
            run = self._sampler_fn(denoiser_name, sampler_name, variant, amp)
            synchronize(self.device)
            begin = time.perf_counter()
            run()
            synchronize(self.device)
            row['first_call_s'] = round(time.perf_counter() - begin, 3)
            for _ in range(self.warmup):
                run()
            row['ms'] = round(median_ms(run, self.repeats, self.device), 3)
            masks = run()
            if self.sync_check and self.device.type == 'cuda':
                row['host_sync'] = host_sync_check(run)
            row.update(mask_agreement(masks, reference))
            row['status'] = 'ok'
        except Exception as exc:  # report it, go on with the next row
            row['status'] = f'error: {first_line(exc)}'
        finally:
            if variant in COMPILED:  # free the graphs and compiled code
                torch._dynamo.reset()
        row['seconds'] = round(time.perf_counter() - begin_row, 2)
        return row


def run_rows(check: SamplerCheck,
             plan: Sequence[Tuple[str, str, str, str]],
             deadline: float,
             rows: Optional[List[dict]] = None,
             on_row: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Run the rows of ``plan`` ((denoiser, sampler, variant, amp) each) in
    order, appending each to ``rows`` (a new list if None) and calling
    ``on_row`` with it. A row is not started when it would end after
    ``deadline`` (``time.perf_counter()`` seconds) by the longest earlier
    row of its kind (compiled or not; of the same denoiser if there is
    one): it reads ``skipped: time budget``."""
    rows = [] if rows is None else rows
    for denoiser, sampler, variant, amp in plan:
        compiled = variant in COMPILED
        done = [r for r in rows
                if 'seconds' in r and (r['variant'] in COMPILED) == compiled]
        same = [r for r in done if r['denoiser'] == denoiser] or done
        estimate = max((r['seconds'] for r in same), default=0)
        if time.perf_counter() + estimate > deadline:
            row = dict(
                denoiser=denoiser,
                sampler=sampler,
                variant=variant,
                amp=amp,
                status='skipped: time budget')
        else:
            row = check.row(denoiser, sampler, variant, amp)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def check_positive(name: str, value: float) -> None:
    """Exit with status 2 and one line when ``value`` is not > 0 (the
    torch-only tools cannot use ``mmdet_maskdiff.utils.run_cli``)."""
    if not value > 0:
        print(f'error: {name} must be > 0, got {value}', file=sys.stderr)
        sys.exit(2)


def device_of(name: str) -> torch.device:
    """``torch.device(name)``; exit with status 2 and one line when it is
    CUDA and there is none."""
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print(
            f'error: --device {name}: torch {torch.__version__} sees no '
            'CUDA device', file=sys.stderr)
        sys.exit(2)
    return device


def sampler_table(rows: Sequence[dict],
                  detector_ms: Optional[float] = None) -> List[str]:
    """Markdown table of sampler rows (with a column of the time over a
    whole detector's, when given)."""
    ratio_head = ' x Mask R-CNN |' if detector_ms else ''
    lines = [
        '| denoiser | sampler | path | amp | first call (s) | time (ms) |'
        + ratio_head + ' bit-equal to eager fp32 | pixels != | mean / min '
        'IoU | host sync |',
        '|' + ' --- |' * (10 + bool(detector_ms)),
    ]
    for row in rows:
        head = (f"| {row['denoiser']} | {row['sampler']} | {row['variant']}"
                f" | {row['amp']} |")
        if row['status'] != 'ok':
            lines.append(head + f" {row['status']} |" + ' |' *
                         (5 + bool(detector_ms)))
            continue
        ratio = (f" {row['ms'] / detector_ms:.2f} |" if detector_ms else '')
        equal = 'yes' if row['bit_equal'] else 'no'
        if row['promised_bit_equal'] and not row['bit_equal']:
            equal = 'NO (promised)'
        lines.append(head + f" {row['first_call_s']} | {row['ms']} |" +
                     ratio + f" {equal} | {row['differing_pixels']:.2e} | "
                     f"{row['mean_iou']} / {row['min_iou']} | "
                     f"{row.get('host_sync', '-')} |")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--denoiser', default='paper', choices=['paper', 'lite'])
    parser.add_argument(
        '--sampler',
        choices=['default', 'lite'],
        help="the config's sampler (default: the denoiser's own)")
    parser.add_argument('--num-rois', type=int, default=100)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument(
        '--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument('--amp', nargs='+', default=list(AMPS), choices=AMPS)
    parser.add_argument(
        '--budget',
        type=float,
        default=420.0,
        help='seconds; rows that would end later are not started')
    parser.add_argument('--sync-check', action='store_true')
    parser.add_argument('--smoke', action='store_true',
                        help='a tiny denoiser (CPU, seconds)')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--out', default='work_dirs/fast_path_check')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    for name in ('num_rois', 'repeats', 'budget'):
        check_positive('--' + name.replace('_', '-'), getattr(args, name))
    device = device_of(args.device)
    start = time.perf_counter()
    setups = coco_setups()
    if args.smoke:
        setups = {k: smoke_setup(v) for k, v in setups.items()}
    sampler = args.sampler or ('lite' if args.denoiser == 'lite' else
                               'default')
    samplers = {
        'default': setups['paper'].sampler,
        'lite': setups['lite'].sampler
    }
    check = SamplerCheck(
        {args.denoiser: setups[args.denoiser]},
        samplers,
        args.num_rois,
        device,
        args.repeats,
        sync_check=args.sync_check)
    plan = [(args.denoiser, sampler, variant, amp) for amp in args.amp
            for variant in args.variants]
    rows = run_rows(
        check, plan, start + args.budget,
        on_row=lambda row: print(json.dumps(row), flush=True))
    report = dict(
        date=date.today().isoformat(),
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'CPU'),
        torch=torch.__version__,
        denoiser=args.denoiser,
        sampler=samplers[sampler],
        num_rois=args.num_rois,
        repeats=args.repeats,
        rows=rows)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.json', 'w') as f:
        json.dump(report, f, indent=2)
    lines = [
        f"{report['date']}, {report['device']}, torch {report['torch']}, "
        f'{args.num_rois} RoIs, sampler {samplers[sampler]}, median of '
        f'{args.repeats}', ''
    ] + sampler_table(rows)
    with open(args.out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
