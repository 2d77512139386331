from .hooks import (DiffusionSamplerHook, IterationSeedHook, SupportSetHook,
                    iteration_seed)

__all__ = [
    'DiffusionSamplerHook', 'IterationSeedHook', 'SupportSetHook',
    'iteration_seed'
]
