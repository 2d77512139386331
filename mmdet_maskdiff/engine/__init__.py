from .hooks import DiffusionSamplerHook, SupportSetHook
from .runner import FewShotRunner

__all__ = ['DiffusionSamplerHook', 'FewShotRunner', 'SupportSetHook']
