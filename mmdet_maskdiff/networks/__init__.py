"""Torch-only networks of MaskDiff."""
from .mask_unet import ConditionEncoding, MaskDenoisingUNet

__all__ = ['MaskDenoisingUNet', 'ConditionEncoding']
