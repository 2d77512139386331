"""Classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion
Guidance", 2022, arXiv 2207.12598) as in MaskDiff's guided mask sampling
(Le et al., AAAI 2024):

    ε̃ = (1 + w) · ε_θ(y_t, t, x, k, c) − w · ε_θ(y_t, t, x, k, ∅).

The conditional and the unconditional branch run as one batched forward.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor

__all__ = ['classifier_free_guidance', 'drop_labels']

DenoiseFn = Callable[..., Tensor]
_PASS_THROUGH = (bool, int, float, str)


def _double_batch(name: str, value: Any) -> Any:
    """Batch a conditioning kwarg for the [conditional; null] forward."""
    if value is None or isinstance(value, _PASS_THROUGH):
        return value
    if isinstance(value, Tensor):
        return torch.cat([value, value], dim=0)
    cat_with_self = getattr(value, 'cat_with_self', None)
    if callable(cat_with_self):
        return cat_with_self()
    raise TypeError(
        f'cannot batch conditioning argument {name!r} of type '
        f'{type(value).__name__} for classifier-free guidance: pass a '
        'Tensor or an object with a cat_with_self() method')


def classifier_free_guidance(denoise_fn: DenoiseFn, guidance_weight: float,
                             null_label: int, labels: Tensor,
                             **cond: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap a class-conditional denoiser into a guided ``model_fn``.

    The conditioning (``labels`` and ``cond``) is fixed for a whole reverse
    chain, so its [conditional; null] batch is built here, once, and every
    sampling step only doubles x_t and t.

    Args:
        denoise_fn: ``denoise_fn(x_t, t, labels=labels, **cond)`` returning
            (N, ...). ``labels`` and ``cond`` go by keyword, so a
            :class:`~mmdet_maskdiff.networks.MaskDenoisingUNet` can be
            passed directly.
        guidance_weight: w. 0 gives the plain conditional model (one forward
            on N samples); otherwise one forward on 2N samples.
        null_label: label of the unconditional ("null") class.
        labels: (N,) long class labels c.
        **cond: the other conditioning arguments of ``denoise_fn``. For the
            2N forward each value is batched as follows: a Tensor is
            concatenated with itself along dim 0; an object with a
            ``cat_with_self()`` method (e.g. the UNet's
            ``ConditionEncoding``) is replaced by what that returns; None and
            plain Python scalars (bool, int, float, str) pass through;
            anything else raises TypeError.

    Returns:
        Callable: ``model_fn(x_t (N, ...), t (N,))`` returning ε̃ (N, ...),
        the samplers' ``model_fn``.
    """
    weight = float(guidance_weight)
    if not math.isfinite(weight):
        raise ValueError(
            f'guidance_weight must be finite, got {guidance_weight}')
    if weight == 0.0:

        def conditional_fn(x_t: Tensor, t: Tensor) -> Tensor:
            return denoise_fn(x_t, t, labels=labels, **cond)

        return conditional_fn

    batch = labels.shape[0]
    both_labels = torch.cat([labels, torch.full_like(labels, int(null_label))])
    doubled = {name: _double_batch(name, value) for name, value in cond.items()}

    def guided_fn(x_t: Tensor, t: Tensor) -> Tensor:
        output = denoise_fn(
            torch.cat([x_t, x_t]), torch.cat([t, t]), labels=both_labels,
            **doubled)
        conditional, unconditional = output[:batch], output[batch:]
        return (1.0 + weight) * conditional - weight * unconditional

    return guided_fn


def drop_labels(labels: Tensor,
                drop_prob: float,
                null_label: int,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """Replace each label by ``null_label`` with probability ``drop_prob``.

    Training-time class dropout, so that one network learns the conditional
    and the unconditional model (Ho & Salimans 2022, Algorithm 1).

    Args:
        labels: (N,) long class labels.
        drop_prob: probability in [0, 1] of dropping a label.
        null_label: label of the unconditional class.
        generator: RNG on ``labels.device``.

    Returns:
        Tensor: (N,) labels, a new tensor.
    """
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f'drop_prob must be in [0, 1], got {drop_prob}')
    if drop_prob == 0.0:
        return labels.clone()
    dropped = torch.rand(
        labels.shape, generator=generator, device=labels.device) < drop_prob
    return torch.where(dropped, torch.full_like(labels, null_label), labels)
