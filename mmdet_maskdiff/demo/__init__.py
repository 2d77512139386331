"""CPU-scale runs of the COCO configs on the embedded synthetic dataset."""
from .cpu_scale import cpu_scale_options

__all__ = ['cpu_scale_options']
