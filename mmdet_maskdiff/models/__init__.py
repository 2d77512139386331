from . import denoisers  # noqa: F401  (registers MaskDenoisingUNet)
from .detectors import MaskDiffRCNN
from .layers import CosineSimLinear
from .mask_heads import (ConditionedMaskHead, ConditionSpec,
                         DiffusionMaskHead, MaskCondition, RegressionMaskHead,
                         condition_spec_of)
from .roi_heads import FewShotRoIHead, QueryContext, SupportFeatures

__all__ = [
    'MaskDiffRCNN', 'CosineSimLinear', 'ConditionedMaskHead',
    'DiffusionMaskHead', 'RegressionMaskHead', 'MaskCondition',
    'ConditionSpec', 'condition_spec_of', 'FewShotRoIHead', 'QueryContext',
    'SupportFeatures'
]
