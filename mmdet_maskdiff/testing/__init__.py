"""Helpers shared by the tests, the tools and the CPU demo (mmdet keeps such
helpers in ``mmdet.testing``): the small-scale config overrides."""
from .small_scale import cpu_scale_options, to_cfg_options_args

__all__ = ['cpu_scale_options', 'to_cfg_options_args']
