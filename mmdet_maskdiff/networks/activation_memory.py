"""Bytes that autograd keeps for the backward pass: a device-free measure of
stage-2 training memory.

On a GPU, the stage-2 step of MaskDiff is dominated by the denoiser's
activations (issue 11: 59.5 GB peak at 256 RoIs in fp32 on an H200). The CPU
cannot report a peak, but it can count what a GPU would have to hold: every
tensor that autograd saves for the backward pass passes through
:func:`torch.autograd.graph.saved_tensors_hooks`. :class:`SavedTensorCounter`
adds up the distinct storages of those tensors, leaving out parameters (they
exist whether or not one trains). The count grows linearly with the RoI
count, so :func:`stage2_activation_memory` measures two small counts and
extrapolates. Torch only (no mmdet), so the count can be put beside a GPU
measurement on a bare GPU box.

With activation checkpointing (``MaskDenoisingUNet(with_cp=True)``) the
checkpointed blocks save only their inputs; the backward pass then recomputes
one block at a time, so the peak also holds the activations of the largest
block, which is measured separately (``recompute_per_roi_bytes``).
"""
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional

import torch
from torch import Tensor, nn

from ..diffusion import GaussianDiffusion, denoiser_loss

__all__ = [
    'SavedTensorCounter', 'Stage2ActivationMemory', 'stage2_activation_memory'
]


class SavedTensorCounter:
    """Context manager that counts the bytes autograd saves for backward.

    Each storage is counted once (views and re-saves share it), at its full
    size. Saved tensors are kept alive until the context exits, so a freed
    storage cannot be reused at the same address and be missed.

    Args:
        exclude: tensors whose storages are not counted (parameters).
        blocks: optional ``name -> module``; bytes saved while a module runs
            are also attributed to it (the innermost one) in ``per_block``.

    Attributes:
        activation_bytes (int): distinct saved storages, excluded ones left
            out.
        excluded_bytes (int): distinct saved storages of ``exclude``.
        per_block (dict[str, int]): bytes saved inside each of ``blocks``.
    """

    def __init__(self,
                 exclude: Iterable[Tensor] = (),
                 blocks: Optional[Mapping[str, nn.Module]] = None) -> None:
        self._excluded_ptrs = {t.untyped_storage().data_ptr() for t in exclude}
        self._blocks = dict(blocks or {})
        self._stack = ExitStack()
        self._kept = []
        self._seen: Dict[int, int] = {}
        self._current = []
        self.activation_bytes = 0
        self.excluded_bytes = 0
        self.per_block: Dict[str, int] = {name: 0 for name in self._blocks}

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes and ptr not in self._seen:
            self._seen[ptr] = nbytes
            self._kept.append(tensor)
            if ptr in self._excluded_ptrs:
                self.excluded_bytes += nbytes
            else:
                self.activation_bytes += nbytes
                if self._current:
                    self.per_block[self._current[-1]] += nbytes
        return tensor

    def __enter__(self) -> 'SavedTensorCounter':
        for name, module in self._blocks.items():

            def enter(module, args, name=name):
                self._current.append(name)

            def leave(module, args, output):
                self._current.pop()

            self._stack.callback(
                module.register_forward_pre_hook(enter).remove)
            self._stack.callback(module.register_forward_hook(leave).remove)
        self._stack.enter_context(
            torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._kept.clear()


@dataclass(frozen=True)
class Stage2ActivationMemory:
    """Activation bytes of one stage-2 step of the denoiser, linear in the
    RoI count N.

    Attributes:
        fixed_bytes: saved bytes that do not grow with N (e.g. the autocast
            copies of the weights).
        per_roi_bytes: saved bytes per RoI.
        recompute_per_roi_bytes: per RoI, the activations of the largest
            checkpointed block, recomputed in the backward pass (0 without
            checkpointing).
        recompute_fixed_bytes: the part of that block's activations that
            does not grow with N.
        parameter_bytes: the denoiser's parameters (not included above).
    """
    fixed_bytes: int
    per_roi_bytes: int
    recompute_per_roi_bytes: int
    recompute_fixed_bytes: int
    parameter_bytes: int

    def saved_bytes(self, num_rois: int) -> int:
        """Bytes saved for backward at ``num_rois`` RoIs."""
        return self.fixed_bytes + self.per_roi_bytes * num_rois

    def peak_bytes(self, num_rois: int) -> int:
        """Saved bytes plus one recomputed block: the activation peak of the
        backward pass at ``num_rois`` RoIs."""
        return (self.saved_bytes(num_rois) + self.recompute_fixed_bytes +
                self.recompute_per_roi_bytes * num_rois)


def _unet_blocks(denoiser: nn.Module) -> Dict[str, nn.Module]:
    blocks = {}
    for group in ('down_blocks', 'up_blocks'):
        for i, block in enumerate(getattr(denoiser, group, ())):
            blocks[f'{group}.{i}'] = block
    if hasattr(denoiser, 'middle_block'):
        blocks['middle_block'] = denoiser.middle_block
    return blocks


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an int >= 1, got {value!r}')


def _count(denoiser: nn.Module, diffusion: GaussianDiffusion,
           num_rois: int, amp_dtype: Optional[torch.dtype],
           seed: int) -> SavedTensorCounter:
    """Count one :func:`denoiser_loss` forward on random RoIs."""
    m = denoiser.mask_size
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(num_rois, denoiser.cond_channels, m, m, generator=gen)
    cond_vector = None
    if denoiser.cond_vector_dim:
        cond_vector = torch.randn(
            num_rois, denoiser.cond_vector_dim, generator=gen)
    labels = torch.randint(
        0, denoiser.num_classes, (num_rois, ), generator=gen)
    x0 = (torch.rand(num_rois, 1, m, m, generator=gen) > 0.5).float() * 2 - 1
    blocks = {} if denoiser.with_cp else _unet_blocks(denoiser)
    counter = SavedTensorCounter(exclude=denoiser.parameters(), blocks=blocks)
    with counter, torch.autocast(
            'cpu',
            dtype=amp_dtype or torch.bfloat16,
            enabled=amp_dtype is not None):
        loss = denoiser_loss(denoiser, diffusion, cond, cond_vector, labels,
                             x0).mean()
        del loss  # the graph dies here; the counts are taken
    return counter


def stage2_activation_memory(denoiser: nn.Module,
                             diffusion: GaussianDiffusion,
                             num_rois: int = 1,
                             amp_dtype: Optional[torch.dtype] = None,
                             seed: int = 0) -> Stage2ActivationMemory:
    """Measure the stage-2 activations of a denoiser trained with
    :func:`~mmdet_maskdiff.diffusion.denoiser_loss` (what
    ``DiffusionMaskHead`` trains), on the CPU, at ``num_rois`` and
    ``2 * num_rois`` RoIs (forward only: the saved tensors are known once
    the loss is computed).

    Args:
        denoiser: a :class:`~mmdet_maskdiff.networks.MaskDenoisingUNet` on
            the CPU, in train mode; its ``with_cp`` decides whether
            checkpointing is measured.
        diffusion: the training diffusion (a head's ``diffusion``).
        num_rois: the smaller of the two RoI counts measured.
        amp_dtype: run under CPU autocast with this dtype (e.g.
            ``torch.bfloat16``); None measures fp32.
        seed: seed of the random RoIs.

    Returns:
        Stage2ActivationMemory: the linear model ``fixed + per_roi · N``
        (and, with checkpointing, the same for the largest block).
    """
    _check_count('num_rois', num_rois)

    def count(rois: int) -> SavedTensorCounter:
        return _count(denoiser, diffusion, rois, amp_dtype, seed)

    small = count(num_rois).activation_bytes
    large = count(2 * num_rois).activation_bytes
    fixed, per_roi = _line(small, large, num_rois)
    recompute_fixed = recompute = 0
    if denoiser.with_cp:
        denoiser.with_cp = False
        try:
            blocks_small = count(num_rois).per_block
            blocks_large = count(2 * num_rois).per_block
        finally:
            denoiser.with_cp = True
        lines = [
            _line(blocks_small[name], blocks_large[name], num_rois)
            for name in blocks_small
        ]
        recompute_fixed = max(fixed for fixed, _ in lines)
        recompute = max(slope for _, slope in lines)
    parameter_bytes = sum(p.numel() * p.element_size()
                          for p in denoiser.parameters())
    return Stage2ActivationMemory(fixed, per_roi, recompute, recompute_fixed,
                                  parameter_bytes)


def _line(small: int, large: int, num_rois: int) -> tuple:
    """(fixed, per-RoI) bytes through the counts at N and 2N RoIs; the
    per-RoI part is rounded up, so the line never underestimates."""
    per_roi = max(0, -(-(large - small) // num_rois))
    return max(0, small - per_roi * num_rois), per_roi
