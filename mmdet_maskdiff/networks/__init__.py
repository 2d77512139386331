"""Torch-only networks of MaskDiff, and the count of their stage-2
activation memory."""
from .activation_memory import (SavedTensorCounter, Stage2ActivationMemory,
                                stage2_activation_memory)
from .mask_unet import ConditionEncoding, MaskDenoisingUNet

__all__ = [
    'MaskDenoisingUNet', 'ConditionEncoding', 'SavedTensorCounter',
    'Stage2ActivationMemory', 'stage2_activation_memory'
]
