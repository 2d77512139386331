import math

import numpy as np
import pytest

from mmdet_maskdiff.diffusion import get_beta_schedule, space_timesteps


def test_linear_endpoints_and_monotone():
    betas = get_beta_schedule('linear', 1000)
    assert betas.dtype == np.float64 and betas.shape == (1000, )
    assert betas[0] == pytest.approx(1e-4, abs=1e-12)
    assert betas[-1] == pytest.approx(0.02, abs=1e-12)
    assert np.all(np.diff(betas) > 0)


def test_linear_scales_with_num_timesteps():
    betas = get_beta_schedule('linear', 100)
    assert betas[0] == pytest.approx(1e-3) and betas[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match='T > 20'):
        get_beta_schedule('linear', 20)


@pytest.mark.parametrize('num_timesteps', [50, 1000])
def test_cosine_matches_closed_form(num_timesteps):
    betas = get_beta_schedule('cosine', num_timesteps)
    alphas_cumprod = np.cumprod(1.0 - betas)
    s = 0.008
    f = [
        math.cos(((t / num_timesteps) + s) / (1 + s) * math.pi / 2)**2
        for t in range(num_timesteps + 1)
    ]
    reference = np.array([f[t + 1] / f[0] for t in range(num_timesteps)])
    np.testing.assert_allclose(alphas_cumprod, reference, rtol=0, atol=1e-6)
    assert betas.max() <= 0.999 and betas.min() > 0
    assert betas[-1] == 0.999  # the clip is active at the singular end


@pytest.mark.parametrize('name, num_timesteps', [('quadratic', 10),
                                                 ('cosine', 0),
                                                 ('linear', -3)])
def test_bad_schedule_requests(name, num_timesteps):
    with pytest.raises(ValueError):
        get_beta_schedule(name, num_timesteps)


def test_space_timesteps_even_and_ddim():
    assert space_timesteps(1000, 4) == [0, 333, 666, 999]
    assert space_timesteps(1000, '4') == [0, 333, 666, 999]
    assert space_timesteps(1000, 'ddim50') == list(range(0, 1000, 20))
    ddim = space_timesteps(1000, 'ddim10')
    assert len(ddim) == 10 and ddim[0] == 0 and ddim[-1] >= 990
    assert len(set(np.diff(ddim))) == 1  # evenly strided
    assert space_timesteps(50, 'ddim50') == list(range(50))
    assert space_timesteps(1000, 'ddim1') == [999]


def test_space_timesteps_trailing():
    """Lin et al. 2024, Table 2: round(flip(arange(T, 0, −T/S))) − 1."""
    for count in (1, 3, 4, 8, 1000):
        expected = sorted(
            int(round(t)) - 1 for t in np.arange(1000, 0, -1000 / count))
        assert space_timesteps(1000, f'trailing{count}') == expected
    assert space_timesteps(1000, 'trailing4') == [249, 499, 749, 999]
    assert space_timesteps(1000, 'trailing3') == [332, 666, 999]
    assert space_timesteps(1000, 'trailing1') == [999]
    with pytest.raises(
            ValueError,
            match=r"'trailing1001' asks for 1001 of "
            r'1000 steps; need 1 <= steps <= 1000'):
        space_timesteps(1000, 'trailing1001')


def test_space_timesteps_sections():
    # improved-diffusion: 10 steps -> sections of 5 and 5; keep 3 and 2.
    assert space_timesteps(10, '3,2') == [0, 2, 4, 5, 9]
    kept = space_timesteps(300, [10, 15, 20])
    assert len(kept) == 45 and kept == sorted(set(kept))
    assert min(kept) == 0 and max(kept) == 299


@pytest.mark.parametrize('steps', [
    1001, 'ddim1001', 0, 'ddim0', '600,600', 'ddimx', 'a,b', 'trailing0',
    'trailingx'
])
def test_space_timesteps_errors(steps):
    with pytest.raises(ValueError):
        space_timesteps(1000, steps)


def test_space_timesteps_type_error():
    with pytest.raises(TypeError):
        space_timesteps(1000, 2.5)
