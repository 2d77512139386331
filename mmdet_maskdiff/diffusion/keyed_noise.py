"""Counter-based Gaussian noise: the noise of a sample depends on its key.

A ``torch.Generator`` shared by a batch hands out numbers in batch order, so
the noise of one sample depends on which samples precede it — at test time
on the batch size and on how a distributed sampler splits the images. Here
every number is a pure function of ``(key, draw, element)``:

* a 32-bit key per sample (e.g. hashed from the sampler seed, the image id
  and the RoI index, :func:`stable_key` and :func:`combine_keys`),
* the draw index (x_T, then one per stochastic sampler step),
* the element index inside the sample,

hashed with the ``lowbias32`` integer finaliser (C. Wellons, "Hash function
prospector", 2018) applied twice, in the spirit of counter-based generators
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011). The
24 high bits give a uniform u; N(0, 1) is the inverse normal CDF at u,
read from a 2^16-bin table of ``ndtri`` with linear interpolation inside a
bin. Only integer ops, a gather, one float multiply and one add are applied
per element, all exactly rounded, so a sample's noise is bit-identical for any
batch composition, chunking, thread count or tensor length (transcendental
functions are not: ATen's vectorised ``log``/``cos`` and the scalar loop that
handles a tensor's tail may differ in the last bit).

All integer arithmetic stays below 2^63 (products are split into 16-bit
halves), so no signed overflow is relied upon.
"""
import operator
import zlib
from typing import Dict, Sequence, Union

import torch
from torch import Tensor

__all__ = [
    'stable_key', 'combine_keys', 'content_key', 'keyed_normal', 'KeyedNoise'
]

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio
_TABLE_BITS = 16
_FRAC_BITS = 8  # 16 + 8 = the 24 bits a float32 uniform can hold

IntOrTensor = Union[int, Tensor]


def _mul32(x: IntOrTensor, c: int) -> IntOrTensor:
    """x · c mod 2^32 for x in [0, 2^32) without exceeding 2^48."""
    low = (x & 0xFFFF) * c
    high = ((x >> 16) * c) & 0xFFFF
    return (low + (high << 16)) & MASK32


def _mix32(x: IntOrTensor) -> IntOrTensor:
    """``lowbias32``: a bijection of [0, 2^32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def combine_keys(key: IntOrTensor, value: IntOrTensor) -> IntOrTensor:
    """A new 32-bit key from ``key`` and ``value`` (both in [0, 2^32));
    ints or int64 tensors, broadcast like ``+``. Not symmetric."""
    return _mix32((_mix32(key) + _GOLDEN + value) & MASK32)


def stable_key(value: Union[int, str, bytes]) -> int:
    """A 32-bit key of an integer (any size, negative too; numpy integers
    too), str or bytes that is the same in every process (unlike Python's
    salted ``hash``)."""
    if not isinstance(value, (str, bytes)):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f'cannot key {type(value).__name__} {value!r}: '
                            'expected an integer, str or bytes') from None
        key = 1 if value < 0 else 0
        value = abs(value)
        while True:  # fold 32-bit words, lowest first
            key = combine_keys(key, value & MASK32)
            value >>= 32
            if not value:
                return key
    data = value.encode('utf-8') if isinstance(value, str) else value
    return combine_keys(2, zlib.crc32(data) & MASK32)


def content_key(values: Tensor) -> int:
    """A 32-bit key of a tensor's exact contents (shape, dtype bits and
    element order), the same on every device and for every batch it was
    cut from — e.g. of one normalised query image, so that a RoI's noise
    follows the image itself whether it comes from a dataset (any ``img_id``)
    or from ``inference_detector`` / ``DetInferencer``.

    Each element's bit pattern is mixed with its position and the mixed
    words are summed (below 2^63 for up to 2^31 elements: order-free and
    exact).
    """
    flat = values.detach().contiguous().flatten()
    width = flat.element_size()
    if not flat.is_floating_point() or width not in (2, 4):
        raise TypeError('content_key expects a float16/bfloat16/float32 '
                        f'tensor, got {values.dtype}')
    bits = flat.view(torch.int32 if width == 4 else torch.int16).long()
    position = torch.arange(bits.numel(), device=bits.device)
    mixed = _mix32((bits & MASK32) ^ _mix32(position))
    key = stable_key(int(mixed.sum()) & MASK32)
    for size in values.shape:
        key = combine_keys(key, size & MASK32)
    return key


_TABLES: Dict[torch.device, tuple] = {}


def _ndtri_table(device: torch.device) -> tuple:
    """Nodes Φ⁻¹(j / 2^16), j = 0..2^16 (the ends at the smallest and largest
    uniform, ±Φ⁻¹(2^-25)), and the slopes between them, float32 on
    ``device``; antisymmetric by construction, so the noise has mean 0."""
    if device not in _TABLES:
        bins = 1 << _TABLE_BITS
        half = torch.arange(bins // 2 + 1, dtype=torch.float64) / bins
        half[0] = 2.0**-(_TABLE_BITS + _FRAC_BITS + 1)
        lower = torch.special.ndtri(half)  # Φ⁻¹ on [0, 1/2]
        lower[-1] = 0.0
        nodes = torch.cat([lower, -lower[:-1].flip(0)])
        slopes = nodes[1:] - nodes[:-1]
        _TABLES[device] = (nodes[:-1].to(device, torch.float32),
                           slopes.to(device, torch.float32))
    return _TABLES[device]


def keyed_normal(keys: Tensor,
                 draw: int,
                 shape: Sequence[int],
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """N(0, 1) noise of shape (B, *shape): row b depends only on
    ``(keys[b], draw)``.

    Args:
        keys (Tensor): (B, ) int64 keys in [0, 2^32), on the target device.
        draw (int): Index of the draw (e.g. 0 for x_T, i for sampler step i).
        shape (Sequence[int]): Shape of one row.
        dtype (torch.dtype): Output dtype; the noise is computed in float32.

    Returns:
        Tensor: (B, *shape) noise on ``keys.device``.
    """
    if keys.dtype != torch.int64 or keys.dim() != 1:
        raise ValueError('keys must be a 1-D int64 tensor, got '
                         f'{keys.dtype} of shape {tuple(keys.shape)}')
    numel = 1
    for size in shape:
        numel *= int(size)
    stream = combine_keys(keys, int(draw) & MASK32)[:, None]  # (B, 1)
    counter = torch.arange(numel, device=keys.device, dtype=torch.int64)
    bits = _mix32(_mix32((stream + _GOLDEN * 3 + counter) & MASK32) ^ stream)
    uniform = bits >> (32 - _TABLE_BITS - _FRAC_BITS)  # 24 bits
    index = uniform >> _FRAC_BITS
    low_bits = uniform & ((1 << _FRAC_BITS) - 1)
    frac = (low_bits.to(torch.float32) + 0.5) / (1 << _FRAC_BITS)  # exact
    nodes, slopes = _ndtri_table(keys.device)
    noise = nodes[index] + frac * slopes[index]
    return noise.view(len(keys), *shape).to(dtype)


class KeyedNoise:
    """Noise source for the samplers: ``source(draw)`` returns the (B, *shape)
    noise of draw ``draw`` for the B keys given at construction.

    Args:
        keys (Tensor): (B, ) int64 keys in [0, 2^32), one per sample.
        shape (Sequence[int]): Shape of one sample.
        dtype (torch.dtype): Output dtype.
    """

    def __init__(self,
                 keys: Tensor,
                 shape: Sequence[int],
                 dtype: torch.dtype = torch.float32) -> None:
        self.keys = keys
        self.shape = tuple(shape)
        self.dtype = dtype

    def __call__(self, draw: int) -> Tensor:
        return keyed_normal(self.keys, draw, self.shape, self.dtype)
