"""Registers the torch-only denoising networks in mmdet's MODELS registry.

The networks live in :mod:`mmdet_maskdiff.networks` without any OpenMMLab
import, so they can be carried to a bare machine and timed alone.
"""
from mmdet.registry import MODELS
from mmdet_maskdiff.networks import MaskDenoisingUNet

MODELS.register_module(module=MaskDenoisingUNet)
