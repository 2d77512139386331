from .hooks import (DiffusionSamplerHook, IterationSeedHook, SupportSetHook,
                    iteration_seed)
from .runner import FewShotRunner, OracleBoxTestLoop

__all__ = [
    'DiffusionSamplerHook', 'IterationSeedHook', 'SupportSetHook',
    'iteration_seed', 'FewShotRunner', 'OracleBoxTestLoop'
]
