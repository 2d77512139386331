"""RoIMaskSampler's step settings: spacing, x̂_0 between steps, output."""
import pytest
import torch
from torch import nn

from mmdet_maskdiff.diffusion import (GaussianDiffusion, RoIMaskSampler,
                                      get_beta_schedule,
                                      parse_sampler_settings)

T = 1000


class FixedX0Denoiser(nn.Module):
    """Predicts x̂_0 = 0.6 · (first condition channel), whatever x_t (the
    sampler clamps it to [-1, 1]); records the timesteps it is called at."""

    def __init__(self):
        super().__init__()
        self.timesteps = []

    def encode_condition(self, cond, cond_vector):
        return cond

    def forward(self, x_t, t, condition=None, labels=None):
        self.timesteps.append(int(t[0]))
        return 0.6 * condition[:, :1]


def sample(steps=4, **settings):
    diffusion = GaussianDiffusion(
        get_beta_schedule('linear', T), prediction_type='x0')
    sampler = RoIMaskSampler(diffusion, null_label=3)
    cond = torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    denoiser = FixedX0Denoiser()
    fg_sum, trajectory = sampler.sample(
        denoiser,
        cond,
        None,
        torch.zeros(5, dtype=torch.long),
        None,
        parse_sampler_settings(
            dict(steps=steps, guidance_weight=0, **settings), T),
        trajectory_every=1)
    return cond, fg_sum, trajectory, denoiser.timesteps


@pytest.mark.parametrize('spacing, timesteps', [
    ('linspace', [999, 666, 333, 0]),
    ('trailing', [999, 749, 499, 249]),
])
def test_spacing(spacing, timesteps):
    assert sample(spacing=spacing)[3] == timesteps


def test_output_binary_and_soft():
    cond, binary, _, _ = sample()
    torch.testing.assert_close(binary, (cond[:, :1] > 0).float())
    _, soft, _, _ = sample(output='soft')
    torch.testing.assert_close(soft,
                               ((0.6 * cond[:, :1]).clamp(-1, 1) + 1) / 2)
    _, soft3, _, _ = sample(output='soft', num_samples=3)
    torch.testing.assert_close(soft3, 3 * soft)


def test_x0_between_steps_sign():
    _, _, clipped, _ = sample()
    cond, _, signed, _ = sample(x0_between_steps='sign')
    # every step's x̂_0 but the last is binary; the last is the network's
    assert signed['pred_x0'][:, :-1].abs().eq(1).all()
    torch.testing.assert_close(signed['pred_x0'][:, -1],
                               (0.6 * cond[:, :1]).clamp(-1, 1))
    assert not clipped['pred_x0'][:, 0].abs().eq(1).all()
