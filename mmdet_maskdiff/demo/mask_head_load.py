"""One line, instead of mmengine's key list, for the mask head that a
stage-1 detector checkpoint cannot hold.

The demo loads the stage-1b detector into every stage-2 model (to train a
mask head, and to test the untrained diffusion head). mmengine's
``load_state_dict`` then lists every weight the checkpoint lacks (for the
diffusion head about 20 KB of key names), although their absence is the
point. A load post-hook on the model takes the mask head's keys out of
mmengine's missing-key list before it is printed (mmengine lets such hooks
edit it in place) and prints their count in one line. Any other missing or
unexpected key is still reported by mmengine, in full.
"""
from typing import Set

from mmengine.model import is_model_wrapper
from torch import nn
from torch.utils.hooks import RemovableHandle

#: where the mask head of mmdet's two-stage detectors sits in the state dict
MASK_HEAD_PREFIX = 'roi_head.mask_head.'


def mask_head_keys(model: nn.Module) -> Set[str]:
    """The state-dict keys of ``model``'s mask head (none without one)."""
    roi_head = getattr(model, 'roi_head', None)
    mask_head = getattr(roi_head, 'mask_head', None)
    if mask_head is None:
        return set()
    return {MASK_HEAD_PREFIX + key for key in mask_head.state_dict()}


def expect_missing_mask_head(model: nn.Module, note: str) -> RemovableHandle:
    """Report the mask-head weights a loaded checkpoint lacks in one line.

    Args:
        model (nn.Module): the runner's model (a model wrapper is unwrapped,
            as mmengine's ``Runner.load_checkpoint`` does).
        note (str): what the line starts with, e.g. ``'untrained diffusion
            head'``.

    Returns:
        RemovableHandle: the load post-hook, registered on the model.
    """
    if is_model_wrapper(model):
        model = model.module
    expected = mask_head_keys(model)

    def hook(module: nn.Module, incompatible_keys) -> None:
        missing = incompatible_keys.missing_keys
        absent = [key for key in missing if key in expected]
        if not absent:
            return
        missing[:] = [key for key in missing if key not in expected]
        print(f'[demo] {note}: {len(absent)} mask-head weights not in the '
              'checkpoint, as expected (they keep their initialisation)')

    return model.register_load_state_dict_post_hook(hook)
