"""Noise schedules and timestep respacing, as plain data (numpy / lists).

* Linear: Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS
  2020 (arXiv 2006.11239): β from 1e-4 to 0.02 for T = 1000, both scaled by
  1000 / T for other T as in Nichol & Dhariwal, "Improved Denoising Diffusion
  Probabilistic Models", ICML 2021 (arXiv 2102.09672).
* Cosine: Nichol & Dhariwal 2021, Eq. 17: ᾱ(t) = f(t) / f(0) with
  f(t) = cos²((t / T + s) / (1 + s) · π / 2), s = 0.008, β clipped at 0.999.
* Respacing: the subset of the T training steps that a sampler visits
  (Nichol & Dhariwal 2021, Sec. 4; Song et al., "Denoising Diffusion
  Implicit Models", ICLR 2021); the trailing spacing of Lin et al., "Common
  Diffusion Noise Schedules and Sample Steps are Flawed", WACV 2024, Table 2.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import numpy as np

__all__ = ['get_beta_schedule', 'betas_for_alpha_bar', 'space_timesteps']

StepSpec = Union[int, str, Sequence[int]]

_COSINE_OFFSET = 0.008
_MAX_BETA = 0.999


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_num_timesteps(num_timesteps: int) -> int:
    if not _is_int(num_timesteps):
        raise TypeError('num_timesteps must be an int, got '
                        f'{type(num_timesteps).__name__}')
    if num_timesteps < 1:
        raise ValueError(f'num_timesteps must be >= 1, got {num_timesteps}')
    return int(num_timesteps)


def betas_for_alpha_bar(num_timesteps: int,
                        alpha_bar: Callable[[float], float],
                        max_beta: float = _MAX_BETA) -> np.ndarray:
    """Discretise a continuous ᾱ(τ), τ ∈ [0, 1], into T betas.

    β_i = min(1 − ᾱ((i + 1) / T) / ᾱ(i / T), max_beta)
    (Nichol & Dhariwal 2021, Sec. 3.2).

    Args:
        num_timesteps: T.
        alpha_bar: decreasing ᾱ(τ) on [0, 1] (normalisation is irrelevant).
        max_beta: upper clip that avoids the singularity at τ = 1.

    Returns:
        np.ndarray: (T,) float64 betas.
    """
    num_timesteps = _check_num_timesteps(num_timesteps)
    taus = np.arange(num_timesteps + 1) / num_timesteps
    alpha_bars = np.array([alpha_bar(tau) for tau in taus], dtype=np.float64)
    return np.minimum(1.0 - alpha_bars[1:] / alpha_bars[:-1], max_beta)


def _cosine_alpha_bar(tau: float) -> float:
    """Nichol & Dhariwal 2021, Eq. 17 (unnormalised)."""
    angle = (tau + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi / 2
    return math.cos(angle)**2


def get_beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
    """Named beta schedule.

    Args:
        name: ``'linear'`` (DDPM: β from 1e-4 to 0.02 at T = 1000, both
            scaled by 1000 / T) or ``'cosine'`` (Nichol & Dhariwal 2021,
            s = 0.008, β <= 0.999).
        num_timesteps: T >= 1. The linear schedule needs T > 20: otherwise
            its last β reaches 1 (ᾱ = 0).

    Returns:
        np.ndarray: (T,) float64 betas in (0, 1).

    Raises:
        ValueError: unknown ``name``, T < 1, or a linear schedule with
            T <= 20.
    """
    num_timesteps = _check_num_timesteps(num_timesteps)
    if name == 'linear':
        scale = 1000.0 / num_timesteps
        beta_start, beta_end = scale * 1e-4, scale * 0.02
        if beta_end >= 1.0:
            raise ValueError(
                "the 'linear' schedule scales β_T = 0.02 · 1000 / T; "
                f'T={num_timesteps} gives β_T={beta_end:g} >= 1. '
                "Use T > 20 or the 'cosine' schedule.")
        return np.linspace(
            beta_start, beta_end, num_timesteps, dtype=np.float64)
    if name == 'cosine':
        return betas_for_alpha_bar(num_timesteps, _cosine_alpha_bar)
    raise ValueError(
        f"unknown beta schedule {name!r}; expected 'linear' or 'cosine'")


def _parse_count(text: str, spec: object) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'cannot parse timestep spacing {spec!r}: '
                         f'{text!r} is not an integer') from None


def _strided_steps(num_timesteps: int, count: int) -> list[int]:
    """``count`` steps 0, s, 2s, ... with the largest stride s that fits."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"'ddim{count}' asks for {count} of "
                         f'{num_timesteps} steps; need 1 <= steps <= '
                         f'{num_timesteps}')
    if count == 1:
        return [num_timesteps - 1]
    stride = (num_timesteps - 1) // (count - 1)
    return [i * stride for i in range(count)]


def _trailing_steps(num_timesteps: int, count: int) -> list[int]:
    """``count`` steps T − 1, T − 1 − T/count, ... rounded (Lin et al. 2024,
    Table 2, "trailing"): the chain starts at T − 1 and its last step is
    ≈ T/count − 1, not 0."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"'trailing{count}' asks for {count} of "
                         f'{num_timesteps} steps; need 1 <= steps <= '
                         f'{num_timesteps}')
    stride = num_timesteps / count
    return sorted(
        int(round(num_timesteps - i * stride)) - 1 for i in range(count))


def _sectioned_steps(num_timesteps: int, counts: Sequence[int]) -> list[int]:
    """Improved-diffusion sections: T is split into ``len(counts)`` near-equal
    sections; section i keeps ``counts[i]`` evenly spaced steps, its first and
    last included."""
    if any(count < 1 for count in counts):
        raise ValueError(
            f'every section count must be >= 1, got {list(counts)}')
    if len(counts) == 1 and counts[0] == 1:
        return [num_timesteps - 1]
    if sum(counts) > num_timesteps:
        raise ValueError(
            f'cannot keep {sum(counts)} steps out of {num_timesteps}')
    size_per_section, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per_section + (1 if i < extra else 0)
        if count > size:
            raise ValueError(
                f'section {i} has {size} steps, cannot keep {count}')
        stride = 1.0 if count == 1 else (size - 1) / (count - 1)
        kept.extend(start + round(j * stride) for j in range(count))
        start += size
    return kept


def space_timesteps(num_timesteps: int, steps: StepSpec) -> list[int]:
    """Choose the original timesteps that a sampler visits.

    Args:
        num_timesteps: T of the diffusion being respaced.
        steps: one of

            * ``int`` N or ``'N'``: N steps evenly spaced over [0, T − 1],
              both ends kept (rounded fractional stride, as improved-diffusion
              does for one section);
            * ``'ddimN'``: 0, s, ..., (N − 1)·s with the largest integer
              stride s = ⌊(T − 1) / (N − 1)⌋, so that the chain starts as
              close to T − 1 as an even stride allows (improved-diffusion
              takes the smallest such stride instead);
            * ``'trailingN'``: T − 1 − round(i · T / N) for i < N (Lin et
              al. 2024, "trailing"): N evenly spaced steps that end at
              ≈ T / N − 1 instead of 0, so the last step still denoises;
            * ``'a,b,c'`` or a sequence of ints: T is split into that many
              near-equal sections and section i keeps ``counts[i]`` evenly
              spaced steps.

            A single step in total (``1``, ``'1'``, ``'ddim1'``) keeps
            [T − 1]: one step is only useful from the noisiest timestep.

    Returns:
        list[int]: sorted, unique timesteps in [0, T − 1].

    Raises:
        ValueError: malformed spec, a count < 1, or more steps than T (or
            than a section holds).
        TypeError: ``steps`` of another type.
    """
    num_timesteps = _check_num_timesteps(num_timesteps)
    if isinstance(steps, str):
        spec = steps.strip()
        if spec.startswith('ddim'):
            count = _parse_count(spec[len('ddim'):], steps)
            return _strided_steps(num_timesteps, count)
        if spec.startswith('trailing'):
            count = _parse_count(spec[len('trailing'):], steps)
            return _trailing_steps(num_timesteps, count)
        counts = [
            _parse_count(part.strip(), steps) for part in spec.split(',')
        ]
    elif _is_int(steps):
        counts = [int(steps)]
    elif (isinstance(steps, Sequence) and len(steps) > 0
          and all(_is_int(count) for count in steps)):
        counts = [int(count) for count in steps]
    else:
        raise TypeError("steps must be an int, 'ddimN', 'trailingN', "
                        f"'a,b,...' or a sequence of ints, got {steps!r}")
    return _sectioned_steps(num_timesteps, counts)
