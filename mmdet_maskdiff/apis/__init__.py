"""Using a trained MaskDiff model outside a Runner run."""
from .inference import (MaskDiffInferencer, check_weights_fit,
                        get_diffusion_sampling, set_diffusion_sampling)
from .support_set import find_support_set_hook, use_config_support_set

__all__ = [
    'MaskDiffInferencer', 'check_weights_fit', 'find_support_set_hook',
    'get_diffusion_sampling', 'set_diffusion_sampling',
    'use_config_support_set'
]
