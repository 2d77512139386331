from .few_shot_roi_head import FewShotRoIHead
from .support_encoder import (QueryContext, SupportEncoder, SupportFeatures,
                              support_encoder_of)

__all__ = [
    'FewShotRoIHead', 'QueryContext', 'SupportEncoder', 'SupportFeatures',
    'support_encoder_of'
]
