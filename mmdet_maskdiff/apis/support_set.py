"""Replace the K-shot support set a loaded model carries.

A stage-2 checkpoint carries its test-time support set (see
``mmdet_maskdiff.models.roi_heads.stored_support``), so::

    model = init_detector(config, checkpoint)   # predicts as trained

To predict with another K-shot sample of the same K and class list (another
TFA seed, or a checkpoint saved without a support set), build it from a
config's ``SupportSetHook`` — the K-shot files must then be on disk::

    use_config_support_set(model, config)  # e.g. with ...dataset.seed=3
"""
import copy
from typing import Optional, Union

from mmengine.config import Config

from mmdet.registry import HOOKS
from mmdet_maskdiff.few_shot.sample import (apply_few_shot_seed,
                                           support_set_hook_config)


def find_support_set_hook(config: Config) -> dict:
    """The ``SupportSetHook`` entry of ``config.custom_hooks``.

    Raises:
        ValueError: the config has none (one line, naming the config).
    """
    hook = support_set_hook_config(config)
    if hook is not None:
        return hook
    raise ValueError(
        f'config {getattr(config, "filename", None) or "<in memory>"} has no '
        'SupportSetHook in custom_hooks: use a MaskDiff stage-2 config '
        '(configs/maskdiff/coco_<K>shot.py)')


def use_config_support_set(model,
                           config: Optional[Union[str,
                                                  Config]] = None) -> None:
    """Give ``model`` the K-shot support set of ``config``'s
    ``SupportSetHook``, replacing the one its checkpoint carried (and in
    checkpoints saved from it later).

    Args:
        model (MaskDiffRCNN): A loaded model.
        config (str | Config, optional): Defaults to ``model.cfg`` (set by
            ``init_detector``).

    Raises:
        ValueError: no ``SupportSetHook`` in the config, a K-shot file is
            missing, or the set has another K or class list than the model.
    """
    if config is None:
        config = model.cfg
    elif isinstance(config, str):
        config = Config.fromfile(config)
    config = copy.deepcopy(config)
    apply_few_shot_seed(config)
    hook = HOOKS.build(find_support_set_hook(config).copy())
    hook.set_config(config)
    hook.use_test_bank(model)
