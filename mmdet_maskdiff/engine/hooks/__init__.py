from .diffusion_sampler_hook import DiffusionSamplerHook
from .iteration_seed_hook import IterationSeedHook, iteration_seed
from .support_set_hook import SupportSetHook

__all__ = [
    'DiffusionSamplerHook', 'IterationSeedHook', 'SupportSetHook',
    'iteration_seed'
]
