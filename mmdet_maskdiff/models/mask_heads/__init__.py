from .diffusion_mask_head import DiffusionMaskHead
from .mask_condition import MaskCondition

__all__ = ['DiffusionMaskHead', 'MaskCondition']
