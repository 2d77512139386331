from .diffusion_mask_head import DiffusionMaskHead
from .mask_condition import ConditionSpec, MaskCondition, condition_spec_of

__all__ = [
    'DiffusionMaskHead', 'MaskCondition', 'ConditionSpec', 'condition_spec_of'
]
