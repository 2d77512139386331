"""Diffusion core of MaskDiff (torch + numpy only): schedules, Gaussian
diffusion, the denoiser's training loss, samplers, classifier-free guidance,
and the test-time sampling of RoI masks with its settings."""
from .denoiser_loss import denoiser_loss
from .gaussian_diffusion import PREDICTION_TYPES, GaussianDiffusion
from .guidance import classifier_free_guidance, drop_labels
from .keyed_noise import (KeyedNoise, combine_keys, content_key, keyed_normal,
                          stable_key)
from .roi_sampler import RoIMaskSampler
from .sampler_settings import (FastPath, SamplerSettings,
                               parse_sampler_settings)
from .samplers import SampleOutput, ddim_sample, ddpm_sample
from .schedules import betas_for_alpha_bar, get_beta_schedule, space_timesteps

__all__ = [
    'get_beta_schedule', 'betas_for_alpha_bar', 'space_timesteps',
    'GaussianDiffusion', 'PREDICTION_TYPES', 'denoiser_loss', 'SampleOutput',
    'ddpm_sample', 'ddim_sample', 'classifier_free_guidance', 'drop_labels', 'KeyedNoise',
    'combine_keys', 'content_key', 'keyed_normal', 'stable_key', 'RoIMaskSampler',
    'FastPath', 'SamplerSettings', 'parse_sampler_settings'
]
