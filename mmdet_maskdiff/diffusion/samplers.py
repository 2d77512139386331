"""Reverse-process samplers: DDPM ancestral sampling and DDIM.

* DDPM: Ho et al., NeurIPS 2020 (arXiv 2006.11239), Algorithm 2 with the
  posterior q(x_{t−1} | x_t, x̂_0) (Eq. 6-7) and its fixed-small variance β̃_t.
* DDIM: Song et al., "Denoising Diffusion Implicit Models", ICLR 2021
  (arXiv 2010.02502), Eq. 12 with σ_t(η) of Eq. 16: η = 1 over all steps
  reproduces the DDPM chain, η = 0 is deterministic.

Both run over the steps of the given (possibly respaced) diffusion, feed the
network the original training timesteps, work on the whole batch at once and
keep the loop free of host syncs: per-step scalars come from the diffusion's
numpy tables and every random draw from ``generator`` or, for noise that must
not depend on the batch a sample is in, from a ``noise_source`` (e.g.
:class:`~mmdet_maskdiff.diffusion.keyed_noise.KeyedNoise`).
"""
from __future__ import annotations

from typing import (Any, Callable, Mapping, NamedTuple, Optional, Sequence,
                    Union)

import numpy as np
import torch
from torch import Tensor

from .gaussian_diffusion import GaussianDiffusion

__all__ = ['SampleOutput', 'ddpm_sample', 'ddim_sample']

ModelFn = Callable[..., Tensor]
DeviceLike = Union[str, torch.device, None]
# update(i, t_index, x_t, model_output, pred_x0) -> x_{t-1}
StepUpdate = Callable[[int, Tensor, Tensor, Tensor, Tensor], Tensor]
# noise_source(draw) -> (N, ...) noise; draw 0 is x_T, draw i the z of step i
NoiseSource = Callable[[int], Tensor]
# draw_noise(draw, like) -> noise shaped like ``like``
NoiseDraw = Callable[[int, Tensor], Tensor]


class SampleOutput(NamedTuple):
    """Result of a sampling loop.

    Attributes:
        sample: (N, ...) the final x_0.
        trajectory: ``(t_original, x_t, pred_x0)`` every ``trajectory_every``
            steps and at the last step, as detached copies; empty when
            trajectory capture is off.
    """
    sample: Tensor
    trajectory: list[tuple[int, Tensor, Tensor]]


def _noise_drawer(generator: Optional[torch.Generator],
                  noise_source: Optional[NoiseSource]) -> NoiseDraw:
    """One function for every random draw of a sampler."""
    if noise_source is None:
        return lambda draw, like: torch.randn(
            like.shape,
            generator=generator,
            device=like.device,
            dtype=like.dtype)
    if generator is not None:
        raise ValueError('give either generator or noise_source, not both')

    def draw_noise(draw: int, like: Tensor) -> Tensor:
        z = noise_source(draw)
        if z.shape != like.shape:
            raise ValueError(f'noise_source gave shape {tuple(z.shape)}, '
                             f'expected {tuple(like.shape)}')
        return z.to(device=like.device, dtype=like.dtype)

    return draw_noise


def _initial_noise(shape: Sequence[int], noise: Optional[Tensor],
                   draw_noise: NoiseDraw, generator: Optional[torch.Generator],
                   device: DeviceLike, dtype: torch.dtype) -> Tensor:
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f'noise has shape {tuple(noise.shape)}, '
                             f'expected {tuple(shape)}')
        return noise.to(
            device=noise.device if device is None else device, dtype=dtype)
    if device is None:
        device = 'cpu' if generator is None else generator.device
    like = torch.empty(tuple(shape), device=device, dtype=dtype)
    return draw_noise(0, like)


def _check_every(trajectory_every: Optional[int]) -> Optional[int]:
    if trajectory_every is not None and (isinstance(trajectory_every, bool)
                                         or trajectory_every < 1):
        raise ValueError('trajectory_every must be None or >= 1, got '
                         f'{trajectory_every}')
    return trajectory_every


def _sampling_loop(diffusion: GaussianDiffusion,
                   model_fn: ModelFn,
                   x: Tensor,
                   update: StepUpdate,
                   trajectory_every: Optional[int],
                   model_kwargs: Optional[Mapping[str, Any]],
                   binarize_x0: bool = False) -> SampleOutput:
    """For i = S−1..0: call the network, predict x_0 (its sign at every step
    but the last with ``binarize_x0``), apply ``update``."""
    kwargs = dict(model_kwargs or {})
    batch = x.shape[0]
    trajectory: list[tuple[int, Tensor, Tensor]] = []
    for step, i in enumerate(reversed(range(diffusion.num_timesteps))):
        t_original = int(diffusion.timestep_map[i])  # numpy: no device sync
        t_index = torch.full((batch, ), i, dtype=torch.long, device=x.device)
        t_model = torch.full((batch, ),
                             t_original,
                             dtype=torch.long,
                             device=x.device)
        model_output = model_fn(x, t_model, **kwargs)
        if model_output.shape != x.shape:
            raise ValueError(f'model output shape {tuple(model_output.shape)}'
                             f' != sample shape {tuple(x.shape)}')
        pred_x0 = diffusion.predict_x0(model_output, x, t_index)
        if binarize_x0 and i > 0:
            pred_x0 = pred_x0.ge(0).to(pred_x0.dtype) * 2 - 1
        if trajectory_every is not None and (step % trajectory_every == 0
                                             or i == 0):
            trajectory.append(
                (t_original, x.detach().clone(), pred_x0.detach().clone()))
        x = update(i, t_index, x, model_output, pred_x0)
    return SampleOutput(x, trajectory)


@torch.inference_mode()
def ddpm_sample(diffusion: GaussianDiffusion,
                model_fn: ModelFn,
                shape: Sequence[int],
                *,
                noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None,
                noise_source: Optional[NoiseSource] = None,
                device: DeviceLike = None,
                dtype: torch.dtype = torch.float32,
                trajectory_every: Optional[int] = None,
                model_kwargs: Optional[Mapping[str, Any]] = None,
                binarize_x0: bool = False) -> SampleOutput:
    """Ancestral sampling x_{t−1} = μ̃(x_t, x̂_0) + √β̃_t z (DDPM Alg. 2).

    Fixed-small variance β̃_t; no noise at the last step. Draw order: x_T
    (unless ``noise`` is given), then one z per step except the last — the
    order of :func:`ddim_sample` with η > 0.

    Args:
        diffusion: the (possibly respaced) diffusion whose steps are visited.
        model_fn: ``model_fn(x_t (N, ...), t (N,) long original timesteps,
            **model_kwargs)`` returning the ``diffusion.prediction_type``
            output (N, ...).
        shape: (N, ...) sample shape.
        noise: (N, ...) initial x_T; drawn from ``generator`` if None.
        generator: RNG on the target device for every draw.
        noise_source: instead of ``generator``, ``noise_source(draw)``
            returns each draw (N, ...): draw 0 is x_T, draw i the z of step
            i; see :class:`~mmdet_maskdiff.diffusion.keyed_noise.KeyedNoise`.
        device: target device; defaults to ``noise.device``, else
            ``generator.device``, else CPU.
        dtype: sample dtype.
        trajectory_every: keep (t, x_t, x̂_0) every k steps and at the last;
            None: off.
        model_kwargs: extra keyword arguments for ``model_fn``.
        binarize_x0: replace x̂_0 by its sign (a binary mask in {−1, 1})
            before it forms x_{t−1}, at every step but the last (whose x̂_0
            is the sample); False: x̂_0 as the diffusion predicts it
            (clamped to [−1, 1] when ``diffusion.clip_denoised``).

    Returns:
        SampleOutput: ``sample`` (N, ...) and ``trajectory``.
    """
    draw_noise = _noise_drawer(generator, noise_source)
    x = _initial_noise(shape, noise, draw_noise, generator, device, dtype)

    def update(i: int, t_index: Tensor, x_t: Tensor, model_output: Tensor,
               pred_x0: Tensor) -> Tensor:
        mean, variance, _ = diffusion.q_posterior_mean_variance(
            pred_x0, x_t, t_index)
        if i == 0:
            return mean
        z = draw_noise(i, x_t)
        return mean + variance.sqrt() * z

    return _sampling_loop(diffusion, model_fn, x, update,
                          _check_every(trajectory_every), model_kwargs,
                          binarize_x0)


def _ddim_coefficients(
        diffusion: GaussianDiffusion,
        eta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step numpy tables of DDIM (Song et al. 2021, Eq. 12 and 16).

    Returns:
        tuple: σ_t (S,), the coefficient √(1 − ᾱ_{t−1} − σ_t²) of ε̂ (S,)
        and √ᾱ_{t−1} (S,), over the steps of ``diffusion``.
    """
    acp, acp_prev = diffusion.alphas_cumprod, diffusion.alphas_cumprod_prev
    variance_ratio = (1.0 - acp_prev) / (1.0 - acp)
    sigmas = eta * np.sqrt(variance_ratio * (1.0 - acp / acp_prev))
    direction_coefs = np.sqrt(np.clip(1.0 - acp_prev - sigmas**2, 0.0, None))
    return sigmas, direction_coefs, np.sqrt(acp_prev)


@torch.inference_mode()
def ddim_sample(diffusion: GaussianDiffusion,
                model_fn: ModelFn,
                shape: Sequence[int],
                *,
                eta: float = 0.0,
                noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None,
                noise_source: Optional[NoiseSource] = None,
                device: DeviceLike = None,
                dtype: torch.dtype = torch.float32,
                trajectory_every: Optional[int] = None,
                model_kwargs: Optional[Mapping[str, Any]] = None,
                binarize_x0: bool = False) -> SampleOutput:
    """DDIM sampling (Song et al. 2021, Eq. 12):

    x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t z,
    σ_t = η · √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_{t−1}) (Eq. 16),

    with ᾱ of the (respaced) diffusion and ε̂ derived from the clipped (or
    binarised) x̂_0 when ``diffusion.clip_denoised`` (or ``binarize_x0``).
    η = 0 draws nothing after x_T; η > 0 draws one z per step except the
    last (σ = 0 there).

    Args:
        eta: η >= 0 (0: deterministic; 1 over all steps: DDPM).
        diffusion, model_fn, shape, noise, generator, noise_source, device,
            dtype, trajectory_every, model_kwargs, binarize_x0: as in
            :func:`ddpm_sample`.

    Returns:
        SampleOutput: ``sample`` (N, ...) and ``trajectory``.
    """
    eta = float(eta)
    if not eta >= 0.0:
        raise ValueError(f'eta must be >= 0, got {eta}')
    sigmas, direction_coefs, sqrt_acp_prev = _ddim_coefficients(diffusion, eta)
    draw_noise = _noise_drawer(generator, noise_source)
    x = _initial_noise(shape, noise, draw_noise, generator, device, dtype)

    def update(i: int, t_index: Tensor, x_t: Tensor, model_output: Tensor,
               pred_x0: Tensor) -> Tensor:
        # ε̂ from the x̂_0 actually used when that differs from the raw
        # prediction (clamped or binarised)
        eps = diffusion.predict_eps(
            model_output,
            x_t,
            t_index,
            clip=diffusion.clip_denoised or binarize_x0,
            pred_x0=pred_x0)
        x_prev = (
            float(sqrt_acp_prev[i]) * pred_x0 +
            float(direction_coefs[i]) * eps)
        if i == 0 or eta == 0.0:
            return x_prev
        z = draw_noise(i, x_t)
        return x_prev + float(sigmas[i]) * z

    return _sampling_loop(diffusion, model_fn, x, update,
                          _check_every(trajectory_every), model_kwargs,
                          binarize_x0)
