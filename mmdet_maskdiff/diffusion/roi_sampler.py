"""Sample binary masks for N RoIs: chunks, samples per RoI, keyed noise,
guidance, and the inference fast path (static RoI buckets, compile).

Torch only (no mmdet), so the sampler can be timed on a bare GPU box. The
mask head builds the denoiser's inputs and calls :meth:`RoIMaskSampler.sample`.

Layout of one pass of n RoIs (a chunk) and S samples: the chain's row r is
sample ``r // n`` of RoI ``r % n``; with a seed, row r's noise is keyed by
``combine_keys(roi_key, sample)`` (:mod:`.keyed_noise`), so it does not depend
on n, on the chunking or on the padding of the fast path.

Fast path (:class:`~.sampler_settings.FastPath`): n is padded to a bucket
size b (padding rows repeat the last RoI and are dropped afterwards), so the
denoiser sees a few static batch shapes, which ``torch.compile`` (optionally
with CUDA graphs) compiles once each. The loop has no host syncs: per-step
scalars come from numpy tables, shapes are Python ints, and keyed noise is
computed on the device.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .gaussian_diffusion import GaussianDiffusion
from .guidance import classifier_free_guidance
from .keyed_noise import KeyedNoise, combine_keys, stable_key
from .sampler_settings import FastPath, SamplerSettings
from .samplers import SampleOutput, ddim_sample, ddpm_sample

__all__ = ['RoIMaskSampler']


def _pad_rows(tensor: Optional[Tensor], size: int) -> Optional[Tensor]:
    """``tensor`` (n, ...) padded to (size, ...) by repeating its last row."""
    if tensor is None or tensor.shape[0] == size:
        return tensor
    pad = tensor[-1:].expand(size - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, pad])


def _pass_rows(tensors: Sequence[Optional[Tensor]], rows: slice,
               size: int) -> List[Optional[Tensor]]:
    """The ``rows`` of each tensor (None stays None), padded to ``size``
    rows (:func:`_pad_rows`)."""
    return [
        _pad_rows(None if tensor is None else tensor[rows], size)
        for tensor in tensors
    ]


def _passes(num: int, chunk: int,
            groups: Optional[Sequence[int]]) -> List[Tuple[int, int]]:
    """``(start, stop)`` of the sampling passes: at most ``chunk`` rows each,
    never across a group boundary."""
    sizes = [num] if groups is None else list(groups)
    if sum(sizes) != num:
        raise ValueError(f'groups {sizes} do not add up to {num} RoIs')
    passes, first = [], 0
    for size in sizes:
        for start in range(first, first + size, max(chunk, 1)):
            passes.append((start, min(start + chunk, first + size)))
        first += size
    return passes


def _roi_noise_keys(num: int, device: torch.device,
                    noise_keys: Optional[Tensor],
                    seed: Optional[int]) -> Optional[Tensor]:
    """(num, ) long noise key of each RoI under the sampler ``seed``
    (``noise_keys``, or the RoI index when None); None when unseeded."""
    if seed is None:
        return None
    keys = torch.arange(num, device=device) if noise_keys is None \
        else noise_keys
    return combine_keys(
        keys.to(device=device, dtype=torch.long), stable_key(seed))


def _fast_path_for(settings: SamplerSettings, device: torch.device,
                   trajectory_every: Optional[int]) -> Optional[FastPath]:
    """The fast path of ``settings`` when it applies to ``device`` and no
    trajectory is kept (the trajectory runs eager); otherwise None."""
    fast = settings.fast
    if fast is not None and not (fast.applies_to(device)
                                 and trajectory_every is None):
        return None
    return fast


def _chunk_size(settings: SamplerSettings, fast: Optional[FastPath],
                num: int) -> int:
    """RoIs per pass: ``settings.chunk_size`` (None: all ``num``), at most
    the largest bucket of the fast path."""
    chunk = settings.chunk_size or num
    if fast is not None:
        chunk = min(chunk, fast.bucket_sizes[-1])
    return chunk


def _foreground_sum(sample: Tensor, num_samples: int, num_rois: int,
                    dtype: torch.dtype, output: str) -> Tensor:
    """(num_rois, 1, m, m) the sum over the ``num_samples`` samples of each
    pixel's foreground probability, from a pass's chain ``sample`` (rows:
    samples x padded RoIs, 1, m, m; the last step's x̂_0); padding RoIs are
    dropped. ``output``: ``'binary'`` (1 where the sample is > 0: the sum is
    the count of foreground samples) or ``'soft'`` ((x̂_0 + 1) / 2, clamped
    to [0, 1])."""
    if output == 'soft':
        probs = ((sample.to(dtype) + 1) / 2).clamp(0.0, 1.0)
    else:
        probs = (sample > 0).to(dtype)
    probs = probs.view(num_samples, -1, *sample.shape[1:])
    return probs[:, :num_rois].sum(dim=0)


def _trajectory_dict(trajectory: List[Tuple[int, Tensor, Tensor]]) -> dict:
    """``steps`` and the (rows, steps, ...) stacks ``x_t`` and ``pred_x0``
    of a :class:`~.samplers.SampleOutput` trajectory."""
    return dict(
        steps=[step for step, _, _ in trajectory],
        x_t=torch.stack([x for _, x, _ in trajectory], 1),
        pred_x0=torch.stack([p for _, _, p in trajectory], 1))


class RoIMaskSampler:
    """Reverse chains for the RoIs of a mask head.

    Holds what is derived from the settings and reused across calls: the
    respaced diffusion per step count and the compiled denoisers. It is not
    a module (nothing of it is saved in a checkpoint).

    Args:
        diffusion (GaussianDiffusion): The training diffusion (T steps).
        null_label (int): The null class of classifier-free guidance.
    """

    def __init__(self, diffusion: GaussianDiffusion, null_label: int) -> None:
        self.diffusion = diffusion
        self.null_label = null_label
        self._respaced: Dict[Tuple[Optional[int], str], GaussianDiffusion] = {}
        self._compiled: Dict[Tuple[int, Optional[str]], Callable] = {}
        self._warned_amp = False

    def sampling_diffusion(self,
                           steps: Optional[int],
                           spacing: str = 'linspace') -> GaussianDiffusion:
        """The diffusion whose steps the sampler visits (cached).

        Args:
            steps (int, optional): Respaced steps; None: all T.
            spacing (str): ``'linspace'`` (T − 1 down to 0) or
                ``'trailing'`` (T − 1 down to ≈ T / steps − 1), see
                :func:`~.schedules.space_timesteps`.
        """
        if steps in (None, self.diffusion.num_timesteps):
            return self.diffusion
        key = (steps, spacing)
        if key not in self._respaced:
            self._respaced[key] = self.diffusion.respace(
                steps if spacing == 'linspace' else f'{spacing}{steps}')
        return self._respaced[key]

    @torch.inference_mode()
    def sample(
        self,
        denoiser: nn.Module,
        cond: Tensor,
        cond_vector: Optional[Tensor],
        labels: Tensor,
        noise_keys: Optional[Tensor],
        settings: SamplerSettings,
        trajectory_every: Optional[int] = None,
        groups: Optional[Sequence[int]] = None
    ) -> Tuple[Tensor, Optional[dict]]:
        """Sample ``num_samples`` binary masks for each of N RoIs.

        A pass of the denoiser never mixes RoIs of two ``groups`` (e.g. two
        images): a network's output for one row can change in the last bit
        with the other rows of its batch (BLAS blocking), so grouping by image
        keeps an image's masks bit-identical whatever images share its batch
        or process.

        Args:
            denoiser (nn.Module): A
                :class:`~mmdet_maskdiff.networks.MaskDenoisingUNet`.
            cond (Tensor): (N, cond_channels, m, m) condition [x, k].
            cond_vector (Tensor, optional): (N, D) prototypes, or None.
            labels (Tensor): (N, ) long classes.
            noise_keys (Tensor, optional): (N, ) int64 keys in [0, 2^32);
                None: the RoI's index. Used when ``settings.seed`` is set.
            settings (SamplerSettings): The validated sampler settings.
            trajectory_every (int, optional): Keep every n-th step of the
                first chunk (then the chain runs eager).
            groups (Sequence[int], optional): RoI counts of consecutive
                groups (summing to N) that no pass mixes; None: one group.

        Returns:
            tuple: ``fg_count`` (N, 1, m, m), the sum over the samples of
            each pixel's foreground probability — with ``output='binary'``
            the number of samples that are foreground there — in
            ``cond.dtype``; the trajectory of
            the first chunk (dict with ``steps``, ``x_t``, ``pred_x0``) or
            None.
        """
        num, size = cond.shape[0], cond.shape[-1]
        roi_keys = _roi_noise_keys(num, cond.device, noise_keys, settings.seed)
        fast = _fast_path_for(settings, cond.device, trajectory_every)
        chunk = _chunk_size(settings, fast, num)
        fg_count = cond.new_zeros((num, 1, size, size))
        trajectory = None
        for start, stop in _passes(num, chunk, groups):
            rows = slice(start, stop)
            padded = stop - start if fast is None else fast.bucket(stop -
                                                                   start)
            out = self._sample_pass(
                denoiser,
                *_pass_rows((cond, cond_vector, labels, roi_keys), rows,
                            padded), settings, fast,
                trajectory_every if start == 0 else None)
            fg_count[rows] = _foreground_sum(out.sample, settings.num_samples,
                                             stop - start, cond.dtype,
                                             settings.output)
            if start == 0 and out.trajectory:
                trajectory = _trajectory_dict(out.trajectory)
        return fg_count, trajectory

    def _sample_pass(self, denoiser: nn.Module, cond: Tensor,
                     cond_vector: Optional[Tensor], labels: Tensor,
                     roi_keys: Optional[Tensor], settings: SamplerSettings,
                     fast: Optional[FastPath],
                     trajectory_every: Optional[int]) -> SampleOutput:
        """One reverse chain for the n RoIs of a pass (rows: samples x
        RoIs)."""
        samples, n = settings.num_samples, cond.shape[0]
        size = cond.shape[-1]
        noise_source = None
        if roi_keys is not None:  # chain row r: sample r // n, RoI r % n
            sample_index = torch.arange(
                samples, device=cond.device).repeat_interleave(n)
            noise_source = KeyedNoise(
                combine_keys(roi_keys.repeat(samples), sample_index),
                (1, size, size), cond.dtype)
        encoding = denoiser.encode_condition(
            cond.repeat(samples, 1, 1, 1),
            None if cond_vector is None else cond_vector.repeat(samples, 1))
        denoise = denoiser if fast is None or not fast.compile else \
            self._compiled_denoiser(denoiser, fast)
        model_fn = classifier_free_guidance(
            denoise,
            settings.guidance_weight,
            self.null_label,
            labels.repeat(samples),
            condition=encoding)
        use_amp = settings.amp and cond.device.type == 'cuda'
        if settings.amp and not use_amp and not self._warned_amp:
            self._warned_amp = True
            warnings.warn('sampler amp=True applies on CUDA only; sampling on '
                          f'{cond.device.type} runs in {cond.dtype}')
        common = dict(
            noise_source=noise_source,
            device=cond.device,
            dtype=cond.dtype,
            trajectory_every=trajectory_every,
            binarize_x0=settings.x0_between_steps == 'sign')
        diffusion = self.sampling_diffusion(settings.steps, settings.spacing)
        shape = (samples * n, 1, size, size)
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=use_amp):
            if settings.type == 'ddim':
                return ddim_sample(
                    diffusion, model_fn, shape, eta=settings.eta, **common)
            return ddpm_sample(diffusion, model_fn, shape, **common)

    def _compiled_denoiser(self, denoiser: nn.Module,
                           fast: FastPath) -> Callable:
        """``torch.compile`` of the denoiser's forward (one per denoiser and
        mode; each bucket shape compiles once, ``dynamic=False``)."""
        key = (id(denoiser), fast.compile_mode)
        if key not in self._compiled:
            from torch.utils._triton import has_triton
            if not has_triton():
                raise RuntimeError(
                    'sampler fast.compile needs Triton for CUDA, which this '
                    'torch install lacks; set fast.compile=False')
            compiled = torch.compile(
                denoiser, mode=fast.compile_mode, dynamic=False)
            if fast.cuda_graphs:
                # a CUDA-graph replay overwrites its previous outputs: keep
                # this step's output before the next step replays
                def compiled_step(*args, _fn=compiled, **kwargs) -> Tensor:
                    torch.compiler.cudagraph_mark_step_begin()
                    return _fn(*args, **kwargs).clone()

                self._compiled[key] = compiled_step
            else:
                self._compiled[key] = compiled
        return self._compiled[key]
