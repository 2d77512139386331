from .conditioned_mask_head import ConditionedMaskHead
from .diffusion_mask_head import DiffusionMaskHead
from .mask_condition import ConditionSpec, MaskCondition, condition_spec_of
from .regression_mask_head import RegressionMaskHead

__all__ = [
    'ConditionedMaskHead', 'DiffusionMaskHead', 'RegressionMaskHead',
    'MaskCondition', 'ConditionSpec', 'condition_spec_of'
]
