from .hooks import (DiffusionSamplerHook, IterationSeedHook, SupportSetHook,
                    iteration_seed)
from .runner import OracleBoxTestLoop

__all__ = [
    'DiffusionSamplerHook', 'IterationSeedHook', 'SupportSetHook',
    'iteration_seed', 'OracleBoxTestLoop'
]
