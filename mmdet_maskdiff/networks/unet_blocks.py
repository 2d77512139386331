"""The building blocks of :class:`~.mask_unet.MaskDenoisingUNet`: the
sinusoidal time embedding, residual blocks conditioned on time and class,
self-attention, down- / upsampling, and the sequential container that hands
the conditions to the residual blocks."""
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    'timestep_embedding', 'group_norm', 'zero_init', 'ResidualBlock',
    'AttentionBlock', 'Downsample', 'Upsample', 'ConditionedSequential'
]


def timestep_embedding(t: Tensor,
                       dim: int,
                       max_period: float = 10000.0) -> Tensor:
    """Sinusoidal timestep embedding (Vaswani et al. 2017, as in DDPM).

    Args:
        t: (N,) timesteps (int or float).
        dim: embedding width.
        max_period: longest wavelength.

    Returns:
        Tensor: (N, dim) float32, [cos | sin] halves (zero-padded when
        ``dim`` is odd).
    """
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * exponents / half)
    angles = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(embedding, (0, dim % 2))


def group_norm(channels: int, norm_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(norm_groups, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-Conv ×2 residual block with time and class inputs.

    h = conv1(act(norm1(x))),
    (s, b) = W·act(emb),
    out = skip(x) + conv2(dropout(act(norm2(h) · (1 + s) + b + E[label]))).

    The embeddings enter *after* ``norm2``: the scale-shift ("AdaGN") form of
    improved-diffusion's ``use_scale_shift_norm`` (Nichol & Dhariwal 2021;
    Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", §3). Adding them
    before ``norm2`` — improved-diffusion's other option — is not used: a
    per-channel constant added in front of a GroupNorm is removed by it
    wherever a group holds one channel (``gcd(norm_groups, C) == C``, every
    width ≤ 32 with 32 groups), so a narrow UNet would be blind to t, the
    class and the prototype; and only the part that differs within a group
    survives elsewhere.

    E has ``num_classes + 1`` rows (the last one is the null class) and is
    zero-initialised (our choice: the network starts class-agnostic); conv2
    is zero-initialised as in improved-diffusion.

    Args:
        in_channels: input width.
        out_channels: output width C.
        emb_channels: time-embedding width.
        num_classes: number of real classes.
        dropout: dropout probability before conv2.
        norm_groups: GroupNorm groups (its gcd with the width is used).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int,
                 num_classes: int, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        # (scale, shift) of norm2's output, from the time (+ prototype)
        # embedding
        self.time_proj = nn.Linear(emb_channels, 2 * out_channels)
        self.class_embedding = nn.Embedding(num_classes + 1, out_channels)
        nn.init.zeros_(self.class_embedding.weight)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(
            nn.Conv2d(out_channels, out_channels, 3, padding=1))
        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor, labels: Tensor) -> Tensor:
        """
        Args:
            x: (N, C_in, H, W) features.
            emb: (N, E) time (+ prototype) embedding.
            labels: (N,) long classes in [0, num_classes].

        Returns:
            Tensor: (N, C, H, W).
        """
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(emb)).chunk(2, dim=1)
        shift = shift + self.class_embedding(labels)
        h = self.norm2(h) * (1 + scale[:, :, None, None]) + \
            shift[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H×W positions, with a residual and
    a zero-initialised output projection.

    Args:
        channels: width C, divisible by ``num_head_channels``.
        num_head_channels: width of one head.
        norm_groups: GroupNorm groups (its gcd with C is used).
    """

    def __init__(self, channels: int, num_head_channels: int,
                 norm_groups: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_heads = channels // num_head_channels
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: (N, C, H, W) features.

        Returns:
            Tensor: (N, C, H, W).
        """
        n, c, height, width = x.shape
        length = height * width
        qkv = self.qkv(self.norm(x).reshape(n, c, length))
        # (N, 3C, L) -> q, k, v, each (N, heads, L, C / heads)
        qkv = qkv.reshape(n, 3, self.num_heads, c // self.num_heads, length)
        q, k, v = qkv.permute(1, 0, 2, 4, 3)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.permute(0, 1, 3, 2).reshape(n, c, length)
        return x + self.proj_out(attended).reshape(n, c, height, width)


class Downsample(nn.Module):
    """Stride-2 3×3 convolution: (N, C, H, W) -> (N, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 convolution: (N, C, H, W) -> (N, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class ConditionedSequential(nn.Sequential):
    """Hands (emb, labels) to residual blocks and only x to other layers."""

    def forward(  # type: ignore[override]
            self, x: Tensor, emb: Tensor, labels: Tensor) -> Tensor:
        for layer in self:
            if isinstance(layer, ResidualBlock):
                x = layer(x, emb, labels)
            else:
                x = layer(x)
        return x
