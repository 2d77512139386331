from .diffusion_sampler_hook import DiffusionSamplerHook
from .support_set_hook import SupportSetHook

__all__ = ['DiffusionSamplerHook', 'SupportSetHook']
