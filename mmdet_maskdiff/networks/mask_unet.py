"""MaskDiff's denoiser: a conditional UNet over binary masks (Le et al.,
AAAI 2024, arXiv 2303.05105, Fig. 1 + supplement).

Layout: residual blocks at every resolution, ``num_res_blocks`` per level on
the way down and ``num_res_blocks + 1`` on the way up; attention in the middle
block (ResBlock-Attn-ResBlock) and after every residual block of a level whose
width is in ``attention_channels`` (the 384-channel level by default), in both
branches. With base 128 and multipliers (1, 2, 3, 4) this is the layout of the
improved-diffusion UNet (Nichol & Dhariwal 2021) that the paper describes.

Conditioning:

* y_t, the object region x and the K-shot information k are concatenated
  along channels (paper). The first convolution is split as
  conv([y; c]) = conv_y(y) + conv_c(c), so the condition's share is computed
  once per sampling run (:meth:`MaskDenoisingUNet.encode_condition`).
* Time: sinusoidal embedding (Vaswani et al. 2017, as in DDPM) + MLP.
* Class, for classifier-free guidance: an embedding of the block's width is
  added to the features inside every residual block (paper supplement);
  label ``num_classes`` is the learned null class.
* Optional pooled support prototype: projected and added to the time
  embedding (our choice; not in the paper).

Memory: ``with_cp=True`` recomputes every UNet block in the backward pass
instead of keeping its activations (``torch.utils.checkpoint``,
non-reentrant), as ``with_cp`` does in mmdet's backbones. Only the block
inputs are kept: at the COCO size, 3.3× less stage-2 memory for +27 % step
time on an H200 (docs/benchmarks.md).

The blocks (time embedding, residual, attention, resampling) are in
:mod:`.unet_blocks`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from .unet_blocks import (AttentionBlock, ConditionedSequential, Downsample,
                          ResidualBlock, Upsample, group_norm,
                          timestep_embedding, zero_init)

__all__ = ['MaskDenoisingUNet', 'ConditionEncoding']


@dataclass(frozen=True)
class ConditionEncoding:
    """The condition's precomputed share of the network input, reusable at
    every sampling step.

    Attributes:
        cond_feat: (N, base_channels, m, m) ``in_conv_cond(cond)``.
        vector_emb: (N, 4·base_channels) projected ``cond_vector``, or None.
    """
    cond_feat: Tensor
    vector_emb: Optional[Tensor] = None

    def cat_with_self(self) -> 'ConditionEncoding':
        """The encoding of the doubled batch [c; c] (batched CFG).

        Returns:
            ConditionEncoding: tensors with batch 2N.
        """
        vector_emb = self.vector_emb
        if vector_emb is not None:
            vector_emb = torch.cat([vector_emb, vector_emb])
        return ConditionEncoding(
            torch.cat([self.cond_feat, self.cond_feat]), vector_emb)


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) \
            or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')


class MaskDenoisingUNet(nn.Module):
    """Conditional denoiser ε_θ(y_t, t, x, k, c) of MaskDiff.

    Args:
        mask_channels: channels of y_t and of the output.
        cond_channels: channels of the spatial condition (object region x and
            K-shot information k, concatenated), e.g. 4 = crop + mask.
        num_classes: number of real classes; label ``num_classes`` is the
            learned null class.
        base_channels: width of the first level; the time embedding is 4×.
        channel_mults: width multiplier of each level; len − 1 downsamplings.
        num_res_blocks: residual blocks per level down (one more up).
        attention_channels: level widths that get attention after each
            residual block; each must be a width of this UNet. The middle
            block always has attention.
        num_head_channels: width of one attention head; must divide every
            attended width.
        dropout: dropout probability in the residual blocks.
        cond_vector_dim: width of an optional pooled support prototype
            (0: none).
        mask_size: m, the side of y_t; divisible by
            2 ** (len(channel_mults) − 1).
        norm_groups: GroupNorm groups (its gcd with each width is used).
        with_cp: activation checkpointing per UNet block (every down block,
            the middle block, every up block): their activations are
            recomputed in the backward pass instead of being stored. Takes
            effect only while autograd records (training). Same outputs and
            gradients as without it (dropout masks are replayed).
    """

    def __init__(self,
                 *,
                 mask_channels: int = 1,
                 cond_channels: int = 4,
                 num_classes: int = 80,
                 base_channels: int = 128,
                 channel_mults: Sequence[int] = (1, 2, 3, 4),
                 num_res_blocks: int = 2,
                 attention_channels: Sequence[int] = (384, ),
                 num_head_channels: int = 64,
                 dropout: float = 0.0,
                 cond_vector_dim: int = 0,
                 mask_size: int = 64,
                 norm_groups: int = 32,
                 with_cp: bool = False) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        attention_channels = tuple(attention_channels)
        widths = self._validate(locals())  # the arguments, by name
        self.mask_channels = mask_channels
        self.cond_channels = cond_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.cond_vector_dim = cond_vector_dim
        self.mask_size = mask_size
        self.widths = widths
        self.with_cp = with_cp
        self.num_res_blocks = num_res_blocks
        self.attention_channels = attention_channels
        self._block_args = dict(
            emb_channels=4 * base_channels,
            num_classes=num_classes,
            dropout=dropout,
            norm_groups=norm_groups,
            num_head_channels=num_head_channels)
        self._build_inputs(mask_channels, cond_channels, base_channels,
                           cond_vector_dim)
        skip_widths = self._build_down_blocks()
        self.middle_block = ConditionedSequential(
            self._res_block(widths[-1], widths[-1]),
            self._attention(widths[-1]),
            self._res_block(widths[-1], widths[-1]))
        self._build_up_blocks(skip_widths)
        self.out = nn.Sequential(
            group_norm(widths[0], norm_groups), nn.SiLU(),
            zero_init(nn.Conv2d(widths[0], mask_channels, 3, padding=1)))

    # ----------------------------------------------------------- building
    def _res_block(self, in_channels: int, out_channels: int) -> ResidualBlock:
        args = self._block_args
        return ResidualBlock(in_channels, out_channels, args['emb_channels'],
                             args['num_classes'], args['dropout'],
                             args['norm_groups'])

    def _attention(self, channels: int) -> AttentionBlock:
        return AttentionBlock(channels, self._block_args['num_head_channels'],
                              self._block_args['norm_groups'])

    def _build_inputs(self, mask_channels: int, cond_channels: int,
                      base_channels: int, cond_vector_dim: int) -> None:
        """Time MLP, prototype projection and the split first convolution
        conv([y; c]) = in_conv_mask(y) + in_conv_cond(c)."""
        emb_channels = self._block_args['emb_channels']
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_channels), nn.SiLU(),
            nn.Linear(emb_channels, emb_channels))
        self.cond_vector_proj = (
            nn.Linear(cond_vector_dim, emb_channels)
            if cond_vector_dim else None)
        self.in_conv_mask = nn.Conv2d(
            mask_channels, base_channels, 3, padding=1)
        self.in_conv_cond = nn.Conv2d(
            cond_channels, base_channels, 3, padding=1, bias=False)

    def _build_down_blocks(self) -> list:
        """``num_res_blocks`` residual blocks (+ attention) per level, then a
        downsampling except at the last level.

        Returns:
            list[int]: The width of every skip connection, in order.
        """
        self.down_blocks = nn.ModuleList()
        skip_widths = [self.base_channels]
        channels = self.base_channels
        for level, width in enumerate(self.widths):
            for _ in range(self.num_res_blocks):
                layers = [self._res_block(channels, width)]
                if width in self.attention_channels:
                    layers.append(self._attention(width))
                self.down_blocks.append(ConditionedSequential(*layers))
                channels = width
                skip_widths.append(channels)
            if level != len(self.widths) - 1:
                self.down_blocks.append(
                    ConditionedSequential(Downsample(channels)))
                skip_widths.append(channels)
        return skip_widths

    def _build_up_blocks(self, skip_widths: list) -> None:
        """``num_res_blocks + 1`` residual blocks (+ attention) per level,
        each over [h, skip], then an upsampling except at the first level."""
        self.up_blocks = nn.ModuleList()
        channels = self.widths[-1]
        for level, width in reversed(list(enumerate(self.widths))):
            for i in range(self.num_res_blocks + 1):
                layers = [self._res_block(channels + skip_widths.pop(), width)]
                channels = width
                if width in self.attention_channels:
                    layers.append(self._attention(width))
                if level > 0 and i == self.num_res_blocks:
                    layers.append(Upsample(channels))
                self.up_blocks.append(ConditionedSequential(*layers))

    @staticmethod
    def _validate(args: dict) -> tuple[int, ...]:
        """Check the constructor arguments; return the level widths."""
        positive = ('mask_channels', 'cond_channels', 'num_classes',
                    'base_channels', 'num_res_blocks', 'num_head_channels',
                    'mask_size', 'norm_groups')
        for name in positive:
            _check_int(name, args[name], minimum=1)
        _check_int('cond_vector_dim', args['cond_vector_dim'], minimum=0)
        if not isinstance(args['with_cp'], bool):
            raise ValueError('with_cp must be True or False, got '
                             f"{args['with_cp']!r}")
        mults = args['channel_mults']
        if not mults or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1
                for m in mults):
            raise ValueError('channel_mults must be a non-empty sequence of '
                             f'positive ints, got {mults!r}')
        factor = 2**(len(mults) - 1)
        if args['mask_size'] % factor:
            raise ValueError(
                f"mask_size={args['mask_size']} must be divisible by "
                f'2 ** (len(channel_mults) - 1) = {factor}')
        if not 0.0 <= args['dropout'] < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got "
                             f"{args['dropout']}")
        widths = tuple(args['base_channels'] * m for m in mults)
        unknown = sorted(set(args['attention_channels']) - set(widths))
        if unknown:
            raise ValueError(f'attention_channels {unknown} are not level '
                             f'widths of this UNet {widths}')
        head = args['num_head_channels']
        for width in set(args['attention_channels']) | {widths[-1]}:
            if width % head:
                raise ValueError(f'num_head_channels={head} must divide '
                                 f'every attended width, not {width}')
        return widths

    # --------------------------------------------------------------- inputs
    def _check_spatial(self, name: str, tensor: Tensor,
                       channels: int) -> None:
        m = self.mask_size
        if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (channels, m, m):
            raise ValueError(f'{name} must have shape (N, {channels}, {m}, '
                             f'{m}), got {tuple(tensor.shape)}')

    def _check_vector(self, cond_vector: Optional[Tensor], batch: int) -> None:
        dim = self.cond_vector_dim
        if dim == 0:
            if cond_vector is not None:
                raise ValueError('cond_vector was given but the UNet was '
                                 'built with cond_vector_dim=0')
            return
        if cond_vector is None:
            raise ValueError(f'cond_vector of shape (N, {dim}) is required '
                             f'(cond_vector_dim={dim})')
        if tuple(cond_vector.shape) != (batch, dim):
            raise ValueError(f'cond_vector must have shape ({batch}, {dim}), '
                             f'got {tuple(cond_vector.shape)}')

    def encode_condition(
            self,
            cond: Tensor,
            cond_vector: Optional[Tensor] = None) -> ConditionEncoding:
        """Check the condition's shapes and precompute its share of the
        input, once per training step or sampling run.

        Args:
            cond: (N, cond_channels, m, m) object region x and K-shot
                information k.
            cond_vector: (N, cond_vector_dim) pooled support prototype;
                required iff ``cond_vector_dim > 0``.

        Returns:
            ConditionEncoding: ``cond_feat`` (N, base_channels, m, m) and
            ``vector_emb`` (N, 4·base_channels) or None.

        Raises:
            ValueError: a shape differs from the above (one line).
        """
        self._check_spatial('cond', cond, self.cond_channels)
        self._check_vector(cond_vector, cond.shape[0])
        vector_emb = None
        if self.cond_vector_proj is not None:
            vector_emb = self.cond_vector_proj(cond_vector)
        return ConditionEncoding(self.in_conv_cond(cond), vector_emb)

    # --------------------------------------------------------------- forward
    def forward(self, y_t: Tensor, t: Tensor, condition: ConditionEncoding,
                labels: Tensor) -> Tensor:
        """Predict the diffusion target for noisy masks (ε, x_0 or v: the
        network is agnostic).

        Shapes are not checked here (this runs at every sampling step):
        :meth:`encode_condition` checks the condition once, and the inputs
        must share its batch N.

        Args:
            y_t: (N, mask_channels, m, m) noisy masks.
            t: (N,) timesteps (original training steps).
            condition: :meth:`encode_condition` of the condition.
            labels: (N,) long classes in [0, num_classes]; ``num_classes`` is
                the null class.

        Returns:
            Tensor: (N, mask_channels, m, m).
        """
        if not isinstance(condition, ConditionEncoding):
            raise TypeError('condition must be the ConditionEncoding of '
                            'encode_condition(cond, cond_vector), got '
                            f'{type(condition).__name__}')
        emb = self.time_mlp(
            timestep_embedding(t, self.base_channels).to(y_t.dtype))
        if condition.vector_emb is not None:
            emb = emb + condition.vector_emb
        h = self.in_conv_mask(y_t) + condition.cond_feat
        skips = [h]
        for block in self.down_blocks:
            h = self._run_block(block, h, emb, labels)
            skips.append(h)
        h = self._run_block(self.middle_block, h, emb, labels)
        for block in self.up_blocks:
            h = self._run_block(block, torch.cat([h, skips.pop()], dim=1), emb,
                                labels)
        return self.out(h)

    def _run_block(self, block: ConditionedSequential, h: Tensor, emb: Tensor,
                   labels: Tensor) -> Tensor:
        """One UNet block, checkpointed when ``with_cp`` and autograd
        records (mmdet backbones' ``with_cp`` pattern)."""
        if self.with_cp and torch.is_grad_enabled():
            return cp.checkpoint(block, h, emb, labels, use_reentrant=False)
        return block(h, emb, labels)
