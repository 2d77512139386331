from . import denoisers  # noqa: F401  (registers MaskDenoisingUNet)
from .detectors import MaskDiffRCNN
from .layers import CosineSimLinear
from .mask_heads import (ConditionedMaskHead, ConditionSpec,
                         DiffusionMaskHead, MaskCondition, RegressionMaskHead,
                         condition_spec_of)
from .roi_heads import (FewShotRoIHead, QueryContext, SupportEncoder,
                        SupportFeatures, support_encoder_of)

__all__ = [
    'MaskDiffRCNN', 'CosineSimLinear', 'ConditionedMaskHead',
    'DiffusionMaskHead', 'RegressionMaskHead', 'MaskCondition',
    'ConditionSpec', 'condition_spec_of', 'FewShotRoIHead', 'QueryContext',
    'SupportEncoder', 'SupportFeatures', 'support_encoder_of'
]
