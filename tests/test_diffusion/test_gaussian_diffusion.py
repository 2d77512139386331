import numpy as np
import pytest
import torch

from mmdet_maskdiff.diffusion import GaussianDiffusion, get_beta_schedule


def make_diffusion(prediction_type='epsilon', num_timesteps=1000, **kwargs):
    return GaussianDiffusion(
        get_beta_schedule('linear', num_timesteps),
        prediction_type=prediction_type,
        **kwargs)


def test_constructor_validation():
    with pytest.raises(ValueError, match='prediction_type'):
        make_diffusion('score')
    with pytest.raises(ValueError, match='betas'):
        GaussianDiffusion(np.array([0.1, 1.0]))
    with pytest.raises(ValueError, match='timestep_map'):
        GaussianDiffusion(np.array([0.1, 0.2]), timestep_map=[0])


def test_q_sample_moments():
    diffusion = make_diffusion()
    generator = torch.Generator().manual_seed(0)
    num_samples = 20000
    x0 = torch.tensor([0.7, -1.0, 0.2], dtype=torch.float64)
    for t_value in (10, 300, 900):
        t = torch.full((num_samples, ), t_value, dtype=torch.long)
        noise = torch.randn(
            num_samples, 3, generator=generator, dtype=torch.float64)
        x_t = diffusion.q_sample(x0.expand(num_samples, 3), t, noise)
        acp = np.prod(1.0 - diffusion.betas[:t_value + 1])
        # Standard error of the mean: sqrt(var / n) <= 0.0071; 5 sigma.
        torch.testing.assert_close(
            x_t.mean(0), np.sqrt(acp) * x0, atol=0.035, rtol=0)
        torch.testing.assert_close(
            x_t.var(0),
            torch.full((3, ), 1 - acp, dtype=torch.float64),
            atol=0.05 * (1 - acp),
            rtol=0)
        mean, variance, log_variance = diffusion.q_mean_variance(
            x0.expand(2, 3), t[:2])
        torch.testing.assert_close(mean, np.sqrt(acp) * x0.expand(2, 3))
        torch.testing.assert_close(
            variance.flatten(), torch.full((2, ), 1 - acp,
                                           dtype=torch.float64))
        torch.testing.assert_close(log_variance.exp(), variance)


def test_posterior_against_float64_reference():
    diffusion = make_diffusion(num_timesteps=100)
    betas = get_beta_schedule('linear', 100)
    generator = torch.Generator().manual_seed(1)
    t = torch.tensor([0, 1, 37, 99])
    x0 = torch.rand(
        4, 1, 5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    x_t = torch.randn(4, 1, 5, 5, generator=generator, dtype=torch.float64)
    mean, variance, log_variance = diffusion.q_posterior_mean_variance(
        x0, x_t, t)
    for row, step in enumerate(t.tolist()):
        alpha_bar = np.prod(1 - betas[:step + 1])
        alpha_bar_prev = np.prod(1 -
                                 betas[:step])  # empty product = 1 at t = 0
        beta = betas[step]
        ref_mean = (
            np.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar) * x0[row] +
            np.sqrt(1 - beta) * (1 - alpha_bar_prev) /
            (1 - alpha_bar) * x_t[row])
        ref_var = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
        torch.testing.assert_close(mean[row], ref_mean, rtol=1e-12, atol=1e-12)
        assert variance[row].item() == pytest.approx(
            ref_var, rel=1e-12, abs=1e-15)
        if step > 0:
            assert log_variance[row].item() == pytest.approx(
                np.log(ref_var), rel=1e-12)
    assert variance[0].item() == 0.0 and torch.isfinite(log_variance).all()


def test_extract_dtype_device_and_broadcast():
    diffusion = make_diffusion()
    t = torch.tensor([0, 999])
    coef = diffusion._extract(diffusion.sqrt_alphas_cumprod, t, (2, 1, 4, 4),
                              torch.float16)
    assert coef.shape == (2, 1, 1, 1) and coef.dtype == torch.float16
    assert coef[1].item() == pytest.approx(
        diffusion.sqrt_alphas_cumprod[999], rel=1e-3)


@pytest.mark.parametrize('prediction_type', ['epsilon', 'x0', 'v'])
@pytest.mark.parametrize('clip', [True, False])
def test_prediction_round_trips(prediction_type, clip):
    diffusion = make_diffusion(prediction_type, clip_denoised=clip)
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(
        6, 1, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    noise = torch.randn(6, 1, 8, 8, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 250, 700, 999])
    x_t = diffusion.q_sample(x0, t, noise)
    target = diffusion.training_target(x0, noise, t)
    torch.testing.assert_close(
        diffusion.predict_x0(target, x_t, t), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        diffusion.predict_eps(target, x_t, t), noise, rtol=1e-7, atol=1e-7)


def test_predict_x0_clipping():
    diffusion = make_diffusion('x0')
    x_t = torch.zeros(1, 1, 2, 2)
    out = torch.full((1, 1, 2, 2), 3.0)
    t = torch.tensor([5])
    assert diffusion.predict_x0(out, x_t, t).max().item() == 1.0
    assert diffusion.predict_x0(out, x_t, t, clip=False).max().item() == 3.0
    # ε consistent with the clipped x0: x_t = √ᾱ x0 + √(1-ᾱ) ε.
    eps = diffusion.predict_eps(out, x_t, t)
    rebuilt = diffusion.q_sample(torch.ones_like(x_t), t, eps)
    torch.testing.assert_close(rebuilt, x_t, atol=1e-5, rtol=0)


@pytest.mark.parametrize('prediction_type', ['epsilon', 'x0', 'v'])
def test_training_losses_zero_for_exact_model(prediction_type):
    diffusion = make_diffusion(prediction_type).respace(20)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 1, 6, 6, generator=generator) * 2 - 1
    noise = torch.randn(4, 1, 6, 6, generator=generator)
    t = torch.tensor([0, 5, 13, 19])
    seen = {}

    def oracle(x_t, t_model, offset):
        seen['t'] = t_model
        return diffusion.training_target(x0, noise, t) + offset

    out = diffusion.training_losses(
        oracle, x0, t, noise, model_kwargs=dict(offset=0.0))
    assert out['loss'].shape == (4, )
    torch.testing.assert_close(out['loss'], torch.zeros(4))
    # the network saw the original timesteps, not the respaced indices
    assert seen['t'].tolist() == diffusion.timestep_map[t.numpy()].tolist()
    assert seen['t'].tolist()[-1] == 999
    shifted = diffusion.training_losses(
        oracle, x0, t, noise, model_kwargs=dict(offset=0.5))['loss']
    torch.testing.assert_close(shifted, torch.full((4, ), 0.25))


def test_respace_keeps_alphas_cumprod():
    diffusion = make_diffusion()
    respaced = diffusion.respace('ddim10')
    assert respaced.num_timesteps == 10
    assert respaced.timestep_map.tolist() == [111 * i for i in range(10)]
    np.testing.assert_allclose(
        respaced.alphas_cumprod,
        diffusion.alphas_cumprod[respaced.timestep_map],
        rtol=1e-12)
    assert respaced.prediction_type == diffusion.prediction_type

    nested = respaced.respace(4)  # indices 0, 3, 6, 9 of the respaced chain
    assert nested.timestep_map.tolist() == [0, 333, 666, 999]
    np.testing.assert_allclose(
        nested.alphas_cumprod,
        diffusion.alphas_cumprod[nested.timestep_map],
        rtol=1e-12)
    t = torch.arange(4)
    assert nested.model_timesteps(t).tolist() == [0, 333, 666, 999]


def test_respace_all_steps_is_identity():
    diffusion = make_diffusion(num_timesteps=50)
    same = diffusion.respace(50)
    np.testing.assert_allclose(same.betas, diffusion.betas, rtol=1e-10)
    assert same.timestep_map.tolist() == list(range(50))
