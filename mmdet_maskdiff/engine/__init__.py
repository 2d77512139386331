from .hooks import DiffusionSamplerHook, SupportSetHook
from .runner import OracleBoxTestLoop

__all__ = ['DiffusionSamplerHook', 'SupportSetHook', 'OracleBoxTestLoop']
