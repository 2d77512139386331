import numpy as np
import pytest
import torch

from mmdet_maskdiff.diffusion import (GaussianDiffusion, ddim_sample,
                                      ddpm_sample, get_beta_schedule)

SHAPE = (3, 1, 6, 6)


def make_diffusion(num_timesteps=50, prediction_type='epsilon'):
    return GaussianDiffusion(
        get_beta_schedule('linear', num_timesteps),
        prediction_type=prediction_type)


def shrink_model(x_t, t):
    """A simple analytic 'network': ε̂ = 0.5 · x_t + 0.001 · t."""
    return 0.5 * x_t + 0.001 * t.to(x_t.dtype).view(-1, 1, 1, 1)


def delta_oracle(diffusion, x0):
    """Exact ε for the data distribution δ(x0) (t: original timesteps):
    ε = (x_t − √ᾱ_t x0) / √(1 − ᾱ_t)."""
    acp = torch.as_tensor(
        np.cumprod(1 - get_beta_schedule('linear', 1000)), dtype=torch.float64)

    def model_fn(x_t, t):
        a = acp[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return model_fn


def test_ddim_eta0_is_deterministic():
    diffusion = make_diffusion().respace('ddim10')
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(
        diffusion,
        shrink_model,
        SHAPE,
        noise=noise,
        generator=torch.Generator().manual_seed(1))
    b = ddim_sample(
        diffusion,
        shrink_model,
        SHAPE,
        noise=noise,
        generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.sample, b.sample)
    assert a.trajectory == []


def test_ddim_eta1_all_steps_equals_ddpm():
    diffusion = make_diffusion(50)
    ddpm = ddpm_sample(
        diffusion,
        shrink_model,
        SHAPE,
        generator=torch.Generator().manual_seed(7),
        dtype=torch.float64)
    ddim = ddim_sample(
        diffusion,
        shrink_model,
        SHAPE,
        eta=1.0,
        generator=torch.Generator().manual_seed(7),
        dtype=torch.float64)
    torch.testing.assert_close(ddim.sample, ddpm.sample, rtol=1e-9, atol=1e-9)
    # and it is not trivially equal to the deterministic path
    ddim0 = ddim_sample(
        diffusion,
        shrink_model,
        SHAPE,
        eta=0.0,
        generator=torch.Generator().manual_seed(7),
        dtype=torch.float64)
    assert (ddim0.sample - ddpm.sample).abs().max() > 1e-3


def test_ddim_eta1_matches_ddpm_in_float32():
    diffusion = make_diffusion(50)
    ddpm = ddpm_sample(
        diffusion,
        shrink_model,
        SHAPE,
        generator=torch.Generator().manual_seed(3))
    ddim = ddim_sample(
        diffusion,
        shrink_model,
        SHAPE,
        eta=1.0,
        generator=torch.Generator().manual_seed(3))
    assert ddpm.sample.dtype == torch.float32
    torch.testing.assert_close(ddim.sample, ddpm.sample, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('steps', ['ddim5', 'ddim50', 1000])
def test_ddim_recovers_delta_distribution(steps):
    diffusion = make_diffusion(1000).respace(steps)
    x0 = torch.rand(
        SHAPE, generator=torch.Generator().manual_seed(4),
        dtype=torch.float64) * 1.6 - 0.8
    out = ddim_sample(
        diffusion,
        delta_oracle(diffusion, x0),
        SHAPE,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.sample, x0, rtol=0, atol=1e-6)


def test_ddpm_recovers_delta_distribution():
    diffusion = make_diffusion(1000).respace(25)
    x0 = torch.rand(
        SHAPE, generator=torch.Generator().manual_seed(4),
        dtype=torch.float64) * 1.6 - 0.8
    out = ddpm_sample(
        diffusion,
        delta_oracle(diffusion, x0),
        SHAPE,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(out.sample, x0, rtol=0, atol=1e-6)


def test_model_sees_original_timesteps_and_kwargs():
    diffusion = make_diffusion(1000).respace('ddim4')
    calls = []

    def model_fn(x_t, t, scale):
        calls.append((t.dtype, tuple(t.shape), t.tolist()[0]))
        return scale * x_t

    ddim_sample(diffusion, model_fn, SHAPE, model_kwargs=dict(scale=0.1))
    assert [c[2] for c in calls] == [999, 666, 333, 0]
    assert all(c[0] == torch.long and c[1] == (SHAPE[0], ) for c in calls)


def test_trajectory_capture():
    diffusion = make_diffusion(50).respace(10)
    out = ddpm_sample(
        diffusion,
        shrink_model,
        SHAPE,
        generator=torch.Generator().manual_seed(0),
        trajectory_every=4)
    steps = [t for t, _, _ in out.trajectory]
    assert steps == [int(diffusion.timestep_map[i]) for i in (9, 5, 1, 0)]
    for _, x_t, pred_x0 in out.trajectory:
        assert x_t.shape == pred_x0.shape == SHAPE
        assert not x_t.requires_grad
        assert pred_x0.abs().max() <= 1.0
    with pytest.raises(ValueError):
        ddpm_sample(diffusion, shrink_model, SHAPE, trajectory_every=0)


def test_inputs_validated():
    diffusion = make_diffusion(50)
    with pytest.raises(ValueError, match='eta'):
        ddim_sample(diffusion, shrink_model, SHAPE, eta=-0.1)
    with pytest.raises(ValueError, match='noise'):
        ddim_sample(
            diffusion, shrink_model, SHAPE, noise=torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match='model output'):
        ddim_sample(diffusion, lambda x, t: x[:, :, :3], SHAPE)


def test_runs_under_inference_mode():
    diffusion = make_diffusion(50).respace(3)
    out = ddim_sample(diffusion, lambda x, t: x * 0.1, SHAPE)
    assert out.sample.is_inference()


@pytest.mark.parametrize('sampler', ['ddpm', 'ddim'])
def test_noise_source_gives_every_draw(sampler):
    """x_T is draw 0, the z of step i is draw i; with a noise source the
    generator is not used."""
    diffusion = make_diffusion().respace('ddim5')
    draws = []

    def source(draw):
        draws.append(draw)
        return torch.full(SHAPE, float(draw))

    run = ddpm_sample if sampler == 'ddpm' else ddim_sample
    kwargs = {} if sampler == 'ddpm' else dict(eta=1.0)
    out = run(diffusion, shrink_model, SHAPE, noise_source=source, **kwargs)
    assert draws == [0, 4, 3, 2, 1]
    # the same numbers through a generator-shaped path: one draw per call
    replay = iter([torch.full(SHAPE, float(d)) for d in draws])
    first = next(replay)
    again = run(
        diffusion,
        shrink_model,
        SHAPE,
        noise=first,
        noise_source=lambda draw: next(replay),
        **kwargs)
    assert torch.equal(out.sample, again.sample)
    with pytest.raises(ValueError, match='either generator or noise_source'):
        run(diffusion,
            shrink_model,
            SHAPE,
            generator=torch.Generator(),
            noise_source=source)
    with pytest.raises(ValueError, match='noise_source gave shape'):
        run(diffusion,
            shrink_model,
            SHAPE,
            noise_source=lambda draw: torch.zeros(1))
