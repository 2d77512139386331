"""CPU-scale runs of the COCO configs on the embedded synthetic dataset."""
from .cpu_scale import cpu_scale_options, to_cfg_options_args

__all__ = ['cpu_scale_options', 'to_cfg_options_args']
