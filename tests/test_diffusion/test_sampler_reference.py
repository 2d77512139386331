"""The samplers against the papers' formulas, written here independently of
the package (its schedule, respacing and parameterisation code are not used
for the expected values).

* Hand-computed chains: the linear schedule (Ho et al. 2020), respaced as
  improved-diffusion's ``space_timesteps`` does for one section (Nichol &
  Dhariwal 2021), a fake network that returns a fixed tensor and fixed noise;
  every step of DDIM (Song et al. 2021, Eq. 12 with σ_t(η) of Eq. 16) and of
  DDPM (Ho et al. 2020, Eq. 6-7 and Alg. 2) is recomputed in float64.
* Data with an exact score: x_0 ~ N(μ, s²) per pixel, for which
  E[x_0 | x_t] = μ + √ᾱ s² / (ᾱ s² + 1 − ᾱ) · (x_t − √ᾱ μ) is the optimal
  network. The samplers' outputs must have the moments that an independent
  linear recursion gives for the discretised chain, the long chains must
  reproduce the data's moments, and DDIM's (η = 0) error must not grow with
  the number of steps.
"""
import numpy as np
import pytest
import torch

from mmdet_maskdiff.diffusion import (GaussianDiffusion, ddim_sample,
                                      ddpm_sample, get_beta_schedule)

T = 1000
SHAPE = (2, 1, 3, 3)
KINDS = ('x0', 'epsilon', 'v')


def reference_alphas_cumprod():
    """ᾱ_t of DDPM's linear schedule, β from 1e-4 to 0.02 over T = 1000."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))


def reference_space_timesteps(num_steps):
    """improved-diffusion's ``space_timesteps(T, [num_steps])``: one section,
    a fractional stride accumulated and rounded, both ends kept."""
    if num_steps == 1:
        return [T - 1]
    stride = (T - 1) / (num_steps - 1)
    kept, index = [], 0.0
    for _ in range(num_steps):
        kept.append(round(index))
        index += stride
    return kept


def reference_x0_eps(kind, output, x_t, acp, clip):
    """(x̂_0, ε̂) from a network output; with ``clip``, x̂_0 is clamped to
    [-1, 1] and ε̂ recomputed from it (improved-diffusion's DDIM)."""
    a, b = np.sqrt(acp), np.sqrt(1.0 - acp)
    if kind == 'x0':
        x0 = output
    elif kind == 'epsilon':
        x0 = (x_t - b * output) / a
    else:  # v = a ε − b x_0 (Salimans & Ho 2022)
        x0 = a * x_t - b * output
    if clip:
        x0 = np.clip(x0, -1.0, 1.0)
    if kind == 'epsilon' and not clip:
        return x0, output
    if kind == 'v' and not clip:
        return x0, a * output + b * x_t
    return x0, (x_t - a * x0) / b


def reference_chain(sampler,
                    kind,
                    output_fn,
                    x_T,
                    noises,
                    num_steps,
                    eta,
                    clip,
                    binarize=False):
    """x_t before every step and the final sample of a respaced chain.

    Args:
        sampler: 'ddim' or 'ddpm'.
        output_fn: (x_t, original t) -> network output (numpy).
        noises: z of respaced step i is ``noises[i]``.
        binarize: x̂_0 -> sign(x̂_0) (and ε̂ from it) but at the last step.

    Returns:
        tuple: list of (original t, x_t, x̂_0) per step, final sample.
    """
    acp_all = reference_alphas_cumprod()
    kept = reference_space_timesteps(num_steps)
    x, trajectory = x_T, []
    for i in reversed(range(len(kept))):
        acp = acp_all[kept[i]]
        acp_prev = acp_all[kept[i - 1]] if i > 0 else 1.0
        x0, eps = reference_x0_eps(kind, output_fn(x, kept[i]), x, acp, clip)
        if binarize and i > 0:
            x0 = np.where(x0 >= 0, 1.0, -1.0)
            eps = (x - np.sqrt(acp) * x0) / np.sqrt(1 - acp)
        trajectory.append((kept[i], x, x0))
        z = noises[i] if i > 0 else 0.0
        if sampler == 'ddim':  # Song et al. 2021, Eq. 12 and 16
            sigma = eta * np.sqrt(
                (1 - acp_prev) / (1 - acp)) * np.sqrt(1 - acp / acp_prev)
            x = (
                np.sqrt(acp_prev) * x0 +
                np.sqrt(1 - acp_prev - sigma**2) * eps + sigma * z)
        else:  # Ho et al. 2020, Eq. 7 with the respaced β_t = 1 − ᾱ_t/ᾱ_prev
            beta = 1 - acp / acp_prev
            mean = (
                np.sqrt(acp_prev) * beta / (1 - acp) * x0 + np.sqrt(1 - beta) *
                (1 - acp_prev) / (1 - acp) * x)
            x = mean + np.sqrt((1 - acp_prev) / (1 - acp) * beta) * z
    return trajectory, x


def package_diffusion(kind, num_steps, clip):
    return GaussianDiffusion(
        get_beta_schedule('linear', T),
        prediction_type=kind,
        clip_denoised=clip).respace(num_steps)


def run_package(sampler, diffusion, model_fn, x_T, noises, eta, **kwargs):
    if sampler == 'ddim':
        kwargs['eta'] = eta
    run = ddim_sample if sampler == 'ddim' else ddpm_sample
    return run(
        diffusion,
        model_fn,
        x_T.shape,
        noise=torch.from_numpy(x_T),
        noise_source=lambda draw: torch.from_numpy(noises[draw]),
        dtype=torch.float64,
        trajectory_every=1,
        **kwargs)


@pytest.mark.parametrize('num_steps,kept', [(4, [0, 333, 666, 999]),
                                            (5, [0, 250, 500, 749, 999])])
def test_reference_respacing(num_steps, kept):
    """The hand respacing and the package's agree (the rounding of 499.5 and
    749.25 included)."""
    assert reference_space_timesteps(num_steps) == kept
    diffusion = package_diffusion('x0', num_steps, False)
    assert diffusion.timestep_map.tolist() == kept
    np.testing.assert_allclose(
        diffusion.alphas_cumprod, reference_alphas_cumprod()[kept], rtol=1e-12)


@pytest.mark.parametrize('clip', [False, True])
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('sampler,eta', [('ddim', 0.0), ('ddim', 0.5),
                                         ('ddpm', None)])
@pytest.mark.parametrize('num_steps', [4, 5])
def test_chain_matches_hand_computation(num_steps, sampler, eta, kind, clip):
    """Every step of a respaced chain with a fixed network output and fixed
    noise equals the float64 hand computation: x_t before each step, x̂_0
    and the sample; the network sees the original timesteps."""
    rng = np.random.default_rng(num_steps)
    output = rng.normal(size=SHAPE) * 0.8
    x_T = rng.normal(size=SHAPE)
    noises = [rng.normal(size=SHAPE) for _ in range(num_steps)]
    seen = []

    def model_fn(x_t, t):
        seen.append(t.tolist())
        return torch.from_numpy(output)

    out = run_package(sampler, package_diffusion(kind, num_steps, clip),
                      model_fn, x_T, noises, eta)
    trajectory, sample = reference_chain(sampler, kind, lambda x, t: output,
                                         x_T, noises, num_steps, eta, clip)
    kept = reference_space_timesteps(num_steps)
    assert seen == [[t] * SHAPE[0] for t in reversed(kept)]
    assert [t for t, _, _ in out.trajectory] == list(reversed(kept))
    for (_, x_t, x0), (_, ref_x_t, ref_x0) in zip(out.trajectory, trajectory):
        np.testing.assert_allclose(
            x_t.numpy(), ref_x_t, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x0.numpy(), ref_x0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        out.sample.numpy(), sample, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('sampler,eta', [('ddim', 0.0), ('ddim', 0.5),
                                         ('ddpm', None)])
def test_binarized_chain_matches_hand_computation(sampler, eta, kind):
    """``binarize_x0``: every step but the last forms x_{t−1} from sign(x̂_0)
    (and the ε̂ that goes with it); the last step's x̂_0 is the sample."""
    rng = np.random.default_rng(7)
    output = rng.normal(size=SHAPE) * 0.8
    x_T = rng.normal(size=SHAPE)
    noises = [rng.normal(size=SHAPE) for _ in range(5)]
    out = run_package(
        sampler,
        package_diffusion(kind, 5, True),
        lambda x, t: torch.from_numpy(output),
        x_T,
        noises,
        eta,
        binarize_x0=True)
    trajectory, sample = reference_chain(
        sampler,
        kind,
        lambda x, t: output,
        x_T,
        noises,
        5,
        eta,
        clip=True,
        binarize=True)
    for (_, x_t, x0), (_, ref_x_t, ref_x0) in zip(out.trajectory, trajectory):
        np.testing.assert_allclose(
            x_t.numpy(), ref_x_t, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x0.numpy(), ref_x0, rtol=1e-10, atol=1e-12)
    assert all(x0.abs().eq(1).all() for _, _, x0 in out.trajectory[:-1])
    np.testing.assert_allclose(
        out.sample.numpy(), sample, rtol=1e-10, atol=1e-12)
    if kind == 'x0':  # (ε's clamped x̂_0 is ±1 anyway at large t)
        plain = run_package(sampler, package_diffusion(kind, 5, True),
                            lambda x, t: torch.from_numpy(output), x_T, noises,
                            eta)
        assert not torch.allclose(plain.trajectory[-1][1],
                                  out.trajectory[-1][1])


def test_one_ddim_step_by_hand():
    """One η = 0.5 step of the 5-step chain, t = 999 -> 749, with x̂_0
    predicted: the three terms of Eq. 12 written out, in numbers."""
    acp = reference_alphas_cumprod()
    a_t, a_prev = acp[999], acp[749]
    x_T, x0, z = 0.9, 0.4, -1.3
    eps = (x_T - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
    sigma = 0.5 * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    expected = (
        np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps +
        sigma * z)
    # a step that skips the ε̂ term or takes σ(η²) lands elsewhere
    assert abs(expected - (np.sqrt(a_prev) * x0 + sigma * z)) > 0.1
    out = ddim_sample(
        package_diffusion('x0', 5, False),
        lambda x, t: torch.full_like(x, x0), (1, 1, 1, 1),
        eta=0.5,
        noise=torch.full((1, 1, 1, 1), x_T, dtype=torch.float64),
        noise_source=lambda draw: torch.full(
            (1, 1, 1, 1), z, dtype=torch.float64),
        dtype=torch.float64,
        trajectory_every=1)
    t_second, x_second, _ = out.trajectory[1]
    assert t_second == 749
    assert x_second.item() == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------
# Gaussian data: the exact network
MU, S = 0.3, 0.5
NUM_SAMPLES = 20000
# standard errors of the sample mean and variance of NUM_SAMPLES normals
MEAN_TOL = 5 * S / np.sqrt(NUM_SAMPLES)
VAR_TOL = 5 * S**2 * np.sqrt(2 / (NUM_SAMPLES - 1))


def exact_model(kind):
    """The optimal network for x_0 ~ N(MU, S²): the posterior mean of x_0
    (or of ε, v) given x_t, at the original timestep t."""
    acp_all = torch.from_numpy(reference_alphas_cumprod())

    def model_fn(x_t, t):
        acp = acp_all[t].view(-1, 1, 1, 1)
        a, b = acp.sqrt(), (1 - acp).sqrt()
        x0 = MU + a * S**2 / (acp * S**2 + b**2) * (x_t - a * MU)
        if kind == 'x0':
            return x0
        eps = (x_t - a * x0) / b
        return eps if kind == 'epsilon' else a * eps - b * x0

    return model_fn


def chain_moments(sampler, num_steps, eta):
    """Mean and variance of the chain's output for x_T ~ N(0, 1), by a
    linear recursion: with the exact network each step is
    x_prev = m x_t + c + σ z."""
    acp_all = reference_alphas_cumprod()
    kept = reference_space_timesteps(num_steps)
    gain, offset, noise_var = 1.0, 0.0, 0.0
    for i in reversed(range(num_steps)):
        acp = acp_all[kept[i]]
        acp_prev = acp_all[kept[i - 1]] if i > 0 else 1.0
        a, b = np.sqrt(acp), np.sqrt(1 - acp)
        k = a * S**2 / (acp * S**2 + b**2)  # x̂_0 = k x_t + MU (1 − a k)
        if sampler == 'ddim':
            sigma = eta * np.sqrt(
                (1 - acp_prev) / (1 - acp) * (1 - acp / acp_prev))
            d = np.sqrt(1 - acp_prev - sigma**2)  # ε̂ = (x_t − a x̂_0) / b
            m = np.sqrt(acp_prev) * k + d * (1 - a * k) / b
            c = (np.sqrt(acp_prev) - d * a / b) * MU * (1 - a * k)
        else:
            beta = 1 - acp / acp_prev
            coef_x0 = np.sqrt(acp_prev) * beta / (1 - acp)
            coef_xt = np.sqrt(1 - beta) * (1 - acp_prev) / (1 - acp)
            m = coef_x0 * k + coef_xt
            c = coef_x0 * MU * (1 - a * k)
            sigma = np.sqrt((1 - acp_prev) / (1 - acp) * beta)
        gain, offset = m * gain, m * offset + c
        noise_var = m * m * noise_var + (sigma**2 if i > 0 else 0.0)
    return offset, gain**2 + noise_var


def gaussian_samples(sampler, kind, num_steps, eta=0.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (NUM_SAMPLES, 1, 1, 1)
    diffusion = GaussianDiffusion(
        get_beta_schedule('linear', T),
        prediction_type=kind,
        clip_denoised=False).respace(num_steps)
    run = ddim_sample if sampler == 'ddim' else ddpm_sample
    kwargs = dict(eta=eta) if sampler == 'ddim' else {}
    return run(
        diffusion,
        exact_model(kind),
        shape,
        generator=generator,
        dtype=torch.float64,
        **kwargs).sample.flatten()


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('sampler,eta,num_steps', [('ddim', 0.0, 5),
                                                   ('ddim', 0.0, 50),
                                                   ('ddim', 0.5, 5),
                                                   ('ddpm', None, 5),
                                                   ('ddpm', None, 50)])
def test_gaussian_chain_moments(sampler, eta, num_steps, kind):
    """With the exact network, the samples have the moments of the
    discretised chain (independent recursion), within 5 standard errors."""
    samples = gaussian_samples(sampler, kind, num_steps, eta)
    mean, var = chain_moments(sampler, num_steps, eta or 0.0)
    assert samples.mean().item() == pytest.approx(mean, abs=MEAN_TOL)
    # a variance far below S² has a proportionally smaller standard error
    assert samples.var().item() == pytest.approx(
        var, abs=VAR_TOL * max(var, 0.01) / S**2)


@pytest.mark.parametrize('kind', ['x0', 'epsilon'])
@pytest.mark.parametrize('sampler', ['ddim', 'ddpm'])
def test_gaussian_full_chain_matches_data(sampler, kind):
    """Over all T steps, DDPM and DDIM (η = 0) reproduce the data's mean and
    variance within 5 standard errors."""
    samples = gaussian_samples(sampler, kind, T)
    assert samples.mean().item() == pytest.approx(MU, abs=MEAN_TOL)
    assert samples.var().item() == pytest.approx(S**2, abs=VAR_TOL)


def w2_to_data(samples):
    """2-Wasserstein distance of N(mean, var) of ``samples`` to N(MU, S²)."""
    return float(
        np.hypot(samples.mean().item() - MU,
                 samples.std().item() - S))


@pytest.mark.parametrize('kind', KINDS)
def test_ddim_error_does_not_grow_with_steps(kind):
    """DDIM (η = 0) with the exact network: the distance of the samples to
    the data does not grow from 5 to 50 steps (it falls: few deterministic
    steps under-disperse — one step from t = T returns ≈ E[x_0], variance
    ≈ 0 — and more steps approach the data's variance)."""
    errors = [
        w2_to_data(gaussian_samples('ddim', kind, n)) for n in (1, 5, 50)
    ]
    assert errors[0] == pytest.approx(S, abs=0.01)  # a point at ≈ MU
    assert errors[2] <= errors[1]
    assert errors[2] < 0.05


# ----------------------------------------------------------------------------
# Binary pixels: x_0 = +1 with probability P_FG, else −1 (a mask pixel whose
# label the conditioning leaves uncertain)
P_FG = 0.8
FRACTION_TOL = 5 * np.sqrt(P_FG * (1 - P_FG) / NUM_SAMPLES)


def two_point_model(x_t, t):
    """The exact x_0-network: E[x_0 | x_t] = tanh(√ᾱ x_t / (1 − ᾱ)
    + ½ log(P_FG / (1 − P_FG)))."""
    acp = torch.from_numpy(reference_alphas_cumprod())[t].view(-1, 1, 1, 1)
    return torch.tanh(acp.sqrt() * x_t / (1 - acp) + 0.5 * np.log(P_FG /
                                                                  (1 - P_FG)))


@pytest.mark.parametrize('sampler,num_steps,fraction', [
    ('ddim', 1, 1.0),
    ('ddim', 2, 1.0),
    ('ddim', 50, P_FG),
    ('ddpm', 50, P_FG),
])
def test_two_point_pixels(sampler, num_steps, fraction):
    """With the exact network, one or two DDIM steps (t = 999, 0) return
    the sign of E[x_0] — every pixel foreground, the Bayes decision — while
    50 steps draw samples, foreground in a fraction P_FG. Scored against an
    independent draw of the truth, the samples are right with probability
    P_FG² + (1 − P_FG)² = 0.68 < P_FG = 0.8: a correct sampler loses pixel
    accuracy with more steps whenever the posterior is uncertain."""
    diffusion = GaussianDiffusion(
        get_beta_schedule('linear', T),
        prediction_type='x0').respace(num_steps)
    run = ddim_sample if sampler == 'ddim' else ddpm_sample
    samples = run(
        diffusion,
        two_point_model, (NUM_SAMPLES, 1, 1, 1),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64).sample
    assert (samples > 0).double().mean().item() == pytest.approx(
        fraction, abs=FRACTION_TOL)
