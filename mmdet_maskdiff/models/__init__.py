from . import denoisers  # noqa: F401  (registers MaskDenoisingUNet)
from .detectors import MaskDiffRCNN
from .layers import CosineSimLinear
from .mask_heads import DiffusionMaskHead, MaskCondition
from .roi_heads import FewShotRoIHead, QueryContext, SupportFeatures

__all__ = [
    'MaskDiffRCNN', 'CosineSimLinear', 'DiffusionMaskHead', 'MaskCondition',
    'FewShotRoIHead', 'QueryContext', 'SupportFeatures'
]
