"""The test-time sampler settings of a diffusion mask head, validated.

One home: ``model.test_cfg.rcnn.diffusion_sampling`` (a dict of the keys
below that differ from the defaults), parsed once, when the RoI head is built
(:func:`parse_sampler_settings`), into a frozen :class:`SamplerSettings` that
the RoI head hands to the mask head. The dataclass's field defaults are the
only place the defaults are written. Bad values are one-line ``ValueError``\\ s
naming the key. Torch only, so the settings can be used without mmdet.

Keys (defaults: :class:`SamplerSettings`; choices in ``docs/defaults.md``):

* ``type``: ``'ddim'`` (Song et al. 2021) or ``'ddpm'`` (Ho et al. 2020);
* ``steps``: respaced steps in [1, T]; None = all T;
* ``eta``: DDIM's η >= 0;
* ``guidance_weight``: classifier-free guidance w >= 0 (finite; the paper's
  ε̃ = (1 + w)·ε(c) − w·ε(∅), Ho & Salimans 2022: w = 0 is the conditional
  model, w < 0 would steer away from the class);
* ``num_samples``: masks sampled per RoI, >= 1;
* ``seed``: an int — every RoI's noise is a function of the seed, the RoI's
  key and the sample index (:mod:`~mmdet_maskdiff.diffusion.keyed_noise`) —
  or None (the global RNG);
* ``chunk_size``: RoIs per sampling pass (bounds memory), >= 1; None = all;
* ``amp``: False, or True / ``'bf16'``: the denoiser under bfloat16 autocast
  on CUDA. On the CPU it is not applied (fp32, a warning once): CPU autocast
  in bf16 is slower than fp32 on most CPUs and changes the masks;
* ``fast``: None (eager), or the inference fast path (:class:`FastPath`);
* ``spacing``: the respaced timesteps: ``'linspace'`` (N steps from T − 1
  down to 0, improved-diffusion's) or ``'trailing'`` (T − 1 down to
  ≈ T / N − 1; Lin et al., WACV 2024, Table 2);
* ``x0_between_steps``: how x̂_0 forms the next x_t: ``'clip'`` (clamped to
  [−1, 1]) or ``'sign'`` (binarised; the last step's x̂_0 is kept);
* ``output``: each sample's mask: ``'binary'`` (the final x_0 thresholded at
  0) or ``'soft'`` ((x̂_0 + 1) / 2 of the last step, a probability as
  FCNMaskHead's sigmoid).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Tuple

import torch

__all__ = [
    'SAMPLER_HOME', 'SAMPLER_KEYS', 'FAST_KEYS', 'FastPath', 'SamplerSettings',
    'parse_sampler_settings'
]

#: where the settings live in a config
SAMPLER_HOME = 'model.test_cfg.rcnn.diffusion_sampling'
FAST_KEYS = ('enabled', 'devices', 'bucket_sizes', 'compile', 'cuda_graphs')


@dataclass(frozen=True)
class FastPath:
    """The inference fast path: static shapes for compilation.

    The RoIs of a sampling pass are padded up to the smallest of
    ``bucket_sizes`` that holds them (passes of more RoIs are split at the
    largest bucket), so the denoiser sees at most ``len(bucket_sizes)``
    batch shapes and ``torch.compile`` / CUDA-graph capture compile each
    once. Padding rows repeat the last RoI and are dropped after sampling;
    with a ``seed`` every real RoI keeps its own keyed noise, so its mask is
    the eager path's (bit-equal in fp32).

    Attributes:
        devices: device types the fast path runs on (others run eager).
            Default ``('cuda',)``: off on the CPU.
        bucket_sizes: increasing RoI counts, each >= 1.
        compile: ``torch.compile`` the denoiser (CUDA only; needs a torch
            with ``torch.compile`` and Triton).
        cuda_graphs: compile with ``mode='reduce-overhead'``, which replays
            each bucket's denoiser as a CUDA graph (needs ``compile``).
    """
    devices: Tuple[str, ...] = ('cuda', )
    bucket_sizes: Tuple[int, ...] = (32, 64, 128, 256)
    compile: bool = False
    cuda_graphs: bool = False

    def applies_to(self, device: torch.device) -> bool:
        """Whether the fast path runs for RoIs on ``device``."""
        return torch.device(device).type in self.devices

    def bucket(self, num: int) -> int:
        """The padded RoI count of a pass of ``num`` <= max bucket RoIs."""
        for size in self.bucket_sizes:
            if size >= num:
                return size
        return self.bucket_sizes[-1]

    @property
    def compile_mode(self) -> Optional[str]:
        """``torch.compile`` mode (None: default)."""
        return 'reduce-overhead' if self.cuda_graphs else None


@dataclass(frozen=True)
class SamplerSettings:
    """Validated test-time sampler settings (see the module docstring)."""
    type: str = 'ddim'
    steps: Optional[int] = 2
    eta: float = 0.0
    guidance_weight: float = 1.0
    num_samples: int = 1
    seed: Optional[int] = 0
    chunk_size: Optional[int] = None
    amp: bool = False
    fast: Optional[FastPath] = field(default=None)
    spacing: str = 'linspace'
    x0_between_steps: str = 'clip'
    output: str = 'binary'

    def to_dict(self) -> dict:
        """Plain-dict form, as it is written in a config."""
        out = asdict(self)
        if self.fast is not None:
            out['fast'] = asdict(self.fast)
        return out


#: the keys of the settings, in dataclass order
SAMPLER_KEYS = tuple(f.name for f in fields(SamplerSettings))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(where: str, key: str, message: str) -> None:
    raise ValueError(f'{where}.{key} {message}')


def _reject_unknown_keys(cfg: Mapping, valid: Tuple[str, ...],
                         where: str) -> None:
    """Fail on the first (sorted) key of ``cfg`` not in ``valid``."""
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f'{where}: unknown key {unknown[0]!r}; valid: '
                         f'{list(valid)}')


def _fast_fields(value: Mapping, where: str) -> Tuple[bool, FastPath]:
    """``enabled`` and the unchecked :class:`FastPath` of a ``fast`` dict
    (lists turned into tuples); unknown keys and a non-bool ``enabled``
    fail."""
    _reject_unknown_keys(value, FAST_KEYS, where)
    value = dict(value)
    enabled = value.pop('enabled', True)
    if not isinstance(enabled, bool):
        _fail(where, 'enabled', f'must be True or False, got {enabled!r}')
    fast = FastPath(**{
        k: tuple(v) if isinstance(v, list) else v
        for k, v in value.items()
    })
    return enabled, fast


def _check_fast_buckets(fast: FastPath,
                        where: str) -> Tuple[Tuple[str, ...], Any]:
    """Check ``devices`` and ``bucket_sizes``; returns the devices as a
    tuple (a single name allowed) and the bucket sizes."""
    devices = fast.devices
    if isinstance(devices, str):
        devices = (devices, )
    if not devices or any(d not in ('cpu', 'cuda') for d in devices):
        _fail(where, 'devices',
              f"must name 'cpu' and/or 'cuda', got {fast.devices!r}")
    sizes = fast.bucket_sizes
    if (not isinstance(sizes, (tuple, list)) or not sizes
            or not all(_is_int(s) and s >= 1 for s in sizes)
            or list(sizes) != sorted(set(sizes))):
        _fail(where, 'bucket_sizes', 'must be increasing ints >= 1, got '
              f'{sizes!r}')
    return devices, sizes


def _check_fast_compile(fast: FastPath, devices: Tuple[str, ...],
                        where: str) -> None:
    """Check ``compile`` and ``cuda_graphs`` (bools; graphs need compile;
    compile needs ``torch.compile`` and CUDA-only ``devices``)."""
    for key in ('compile', 'cuda_graphs'):
        if not isinstance(getattr(fast, key), bool):
            _fail(where, key,
                  f'must be True or False, got {getattr(fast, key)!r}')
    if fast.cuda_graphs and not fast.compile:
        _fail(
            where, 'cuda_graphs', "needs compile=True (the graphs are "
            "captured by torch.compile(mode='reduce-overhead'))")
    if fast.compile:
        if not hasattr(torch, 'compile'):
            _fail(
                where, 'compile', f'needs torch.compile, which torch '
                f'{torch.__version__} lacks; set compile=False')
        if 'cpu' in devices:
            _fail(
                where, 'compile', "runs on CUDA only; set "
                "devices=('cuda',) or compile=False")


def _parse_fast(value: Any, where: str) -> Optional[FastPath]:
    """``fast``: None / False (off), True (defaults) or a dict of
    :class:`FastPath` fields plus ``enabled`` (default True; False: checked
    but off, so a config can hold the settings and a command line flip
    them on)."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        _fail(
            where, 'fast', 'must be None, True or a dict of '
            f'{list(FAST_KEYS)}, got {value!r}')
    where = f'{where}.fast'
    enabled, fast = _fast_fields(value, where)
    devices, sizes = _check_fast_buckets(fast, where)
    _check_fast_compile(fast, devices, where)
    if not enabled:  # checked, but off (a config switch to flip)
        return None
    return FastPath(
        devices=tuple(devices),
        bucket_sizes=tuple(int(s) for s in sizes),
        compile=fast.compile,
        cuda_graphs=fast.cuda_graphs)


def _check_chain_keys(merged: dict, num_timesteps: int, where: str) -> None:
    """Check the keys of the reverse chain: ``type``, ``steps`` (in [1,
    ``num_timesteps``] or None), ``eta`` and ``guidance_weight``."""
    if merged['type'] not in ('ddim', 'ddpm'):
        _fail(where, 'type', f"must be 'ddim' or 'ddpm', got "
              f"{merged['type']!r}")
    steps = merged['steps']
    if steps is not None and not (_is_int(steps)
                                  and 1 <= steps <= num_timesteps):
        _fail(
            where, 'steps', f'must be None or an int in [1, '
            f'{num_timesteps}], got {steps!r}')
    eta = merged['eta']
    if not (_is_number(eta) and eta >= 0):
        _fail(where, 'eta', f'must be a number >= 0, got {eta!r}')
    weight = merged['guidance_weight']
    if not (_is_number(weight) and math.isfinite(weight) and weight >= 0):
        _fail(
            where, 'guidance_weight', 'must be a finite number >= 0 (w < 0 '
            'is anti-guidance: the guided (1 + w) eps(c) - w eps(null) then '
            f'moves away from the class), got {weight!r}')


STEP_CHOICES = dict(
    spacing=('linspace', 'trailing'),
    x0_between_steps=('clip', 'sign'),
    output=('binary', 'soft'))


def _check_step_keys(merged: dict, where: str) -> None:
    """Check the keys of :data:`STEP_CHOICES`: one of their choices."""
    for key, choices in STEP_CHOICES.items():
        if merged[key] not in choices:
            _fail(where, key, f'must be one of {list(choices)}, got '
                  f'{merged[key]!r}')


def _check_pass_keys(merged: dict, where: str) -> None:
    """Check the keys of the sampling passes: ``num_samples``, ``seed``,
    ``chunk_size`` and ``amp``."""
    samples = merged['num_samples']
    if not (_is_int(samples) and samples >= 1):
        _fail(where, 'num_samples', f'must be an int >= 1, got {samples!r}')
    seed = merged['seed']
    if seed is not None and not _is_int(seed):
        _fail(where, 'seed', f'must be None or an int, got {seed!r}')
    chunk = merged['chunk_size']
    if chunk is not None and not (_is_int(chunk) and chunk >= 1):
        _fail(
            where, 'chunk_size', 'must be None (all RoIs in one pass) or '
            f'an int >= 1, got {chunk!r}')
    amp = merged['amp']
    if amp not in (False, True, 'bf16') or (amp != 'bf16'
                                            and not isinstance(amp, bool)):
        _fail(where, 'amp', f"must be False, True or 'bf16', got {amp!r}")


def parse_sampler_settings(cfg: Optional[Mapping],
                           num_timesteps: int,
                           where: str = SAMPLER_HOME) -> SamplerSettings:
    """Validate sampler settings; missing keys take the defaults.

    Args:
        cfg (Mapping, optional): The settings (e.g.
            ``model.test_cfg.rcnn.diffusion_sampling``); missing keys and
            None give the defaults of :class:`SamplerSettings`.
        num_timesteps (int): T of the training diffusion (bounds ``steps``).
        where (str): Name of the settings in error messages.

    Returns:
        SamplerSettings: The complete settings.

    Raises:
        ValueError: one line naming the key at fault.
    """
    cfg = dict(cfg or {})
    _reject_unknown_keys(cfg, SAMPLER_KEYS, where)
    merged = {**SamplerSettings().to_dict(), **cfg}
    _check_chain_keys(merged, num_timesteps, where)
    _check_pass_keys(merged, where)
    _check_step_keys(merged, where)
    steps, seed, chunk = merged['steps'], merged['seed'], merged['chunk_size']
    return SamplerSettings(
        type=merged['type'],
        steps=None if steps is None else int(steps),
        eta=float(merged['eta']),
        guidance_weight=float(merged['guidance_weight']),
        num_samples=int(merged['num_samples']),
        seed=None if seed is None else int(seed),
        chunk_size=None if chunk is None else int(chunk),
        amp=bool(merged['amp']),
        fast=_parse_fast(merged['fast'], where),
        spacing=merged['spacing'],
        x0_between_steps=merged['x0_between_steps'],
        output=merged['output'])
