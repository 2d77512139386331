"""Deprecated: moved to :mod:`mmdet_maskdiff.testing.small_scale`.

Importing this module still works for one release and warns; every name is
the same object as in the new module.
"""
import warnings

from mmdet_maskdiff.testing.small_scale import (DIFFUSION_HEAD_SIZES,
                                                FCN_HEAD_SIZES, IMAGE_SCALE,
                                                MODEL_SIZES, NUM_CLASSES,
                                                cpu_scale_options,
                                                to_cfg_options_args)

__all__ = [
    'IMAGE_SCALE', 'NUM_CLASSES', 'MODEL_SIZES', 'DIFFUSION_HEAD_SIZES',
    'FCN_HEAD_SIZES', 'cpu_scale_options', 'to_cfg_options_args'
]

warnings.warn(
    'mmdet_maskdiff.demo.cpu_scale moved to '
    'mmdet_maskdiff.testing.small_scale; the old path will be removed in the '
    'next release',
    DeprecationWarning,
    stacklevel=2)
