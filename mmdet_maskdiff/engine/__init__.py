from .hooks import DiffusionSamplerHook, SupportSetHook

__all__ = ['DiffusionSamplerHook', 'SupportSetHook']
