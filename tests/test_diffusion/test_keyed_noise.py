"""Counter-based per-sample noise: a pure function of (key, draw, element)."""
import math
import os
import subprocess
import sys

import pytest
import torch

from mmdet_maskdiff.diffusion import (KeyedNoise, combine_keys, keyed_normal,
                                      stable_key)
from mmdet_maskdiff.diffusion.keyed_noise import _mix32

MASK32 = 0xFFFFFFFF


def lowbias32_reference(x: int) -> int:
    """lowbias32 with Python's unbounded ints (no split multiplications)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def test_mix32_matches_the_big_int_reference():
    values = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, MASK32] + [
        int(v) for v in torch.randint(
            0, 2**32, (200, ), generator=torch.Generator().manual_seed(0))
    ]
    expected = [lowbias32_reference(v) for v in values]
    assert [_mix32(v) for v in values] == expected  # int path
    assert _mix32(torch.tensor(values)).tolist() == expected  # tensor path
    assert len(set(expected)) == len(set(values))  # a bijection


def test_noise_of_a_row_does_not_depend_on_the_other_rows():
    keys = torch.randint(
        0, 2**32, (37, ), generator=torch.Generator().manual_seed(1))
    full = keyed_normal(keys, 3, (1, 16, 16))
    assert full.shape == (37, 1, 16, 16) and full.dtype == torch.float32
    # alone, reordered, or in an odd-sized batch: the same bits
    for rows in ([5], [36, 0, 17], list(range(1, 36, 2))):
        part = keyed_normal(keys[rows], 3, (1, 16, 16))
        assert torch.equal(part, full[rows])
    # another draw or key gives other noise
    assert not torch.equal(keyed_normal(keys, 4, (1, 16, 16)), full)
    assert not torch.equal(full[0], full[1])
    source = KeyedNoise(keys[:4], (1, 16, 16), torch.float64)
    assert source(3).dtype == torch.float64
    assert torch.equal(source(3), full[:4].double())


def test_noise_is_standard_normal():
    keys = torch.arange(400)
    z = keyed_normal(keys, 0, (1000, )).double().flatten()  # 4e5 values
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)
    # Kolmogorov-Smirnov distance to Φ, 1 % critical value 1.63 / √n
    x = z.sort().values
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert (cdf - empirical).abs().max().item() < 1.63 / math.sqrt(n)
    # no correlation between neighbouring elements, keys and draws
    grid = z.view(400, 1000)
    other_draw = keyed_normal(keys, 1, (1000, )).double()
    for a, b in ((grid[:, :-1], grid[:, 1:]), (grid[:-1], grid[1:]),
                 (grid, other_draw)):
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(corr.item()) < 5 / math.sqrt(a.numel())


def test_stable_key_is_the_same_in_every_process():
    values = [0, 7, -7, 2**40 + 3, 'img/0001.jpg', b'raw']
    keys = [stable_key(v) for v in values]
    assert len(set(keys)) == len(keys)
    assert all(0 <= k <= MASK32 for k in keys)
    assert stable_key(torch.tensor(7).item()) == keys[1]
    code = ('from mmdet_maskdiff.diffusion import stable_key; '
            f'print([stable_key(v) for v in {values!r}])')
    env = dict(os.environ, PYTHONHASHSEED='12345')
    out = subprocess.run([sys.executable, '-c', code],
                         env=env,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    assert out.strip() == str(keys)
    with pytest.raises(TypeError, match='cannot key float'):
        stable_key(1.5)


def test_combine_keys_broadcasts_and_is_not_symmetric():
    keys = combine_keys(stable_key(3), torch.arange(5))
    assert keys.tolist() == [combine_keys(stable_key(3), i) for i in range(5)]
    assert combine_keys(1, 2) != combine_keys(2, 1)


def test_keys_must_be_int64_vector():
    with pytest.raises(ValueError, match='1-D int64'):
        keyed_normal(torch.zeros(3), 0, (2, ))
