"""The K-shot sample a checkpoint was trained on, against this run's.

mmengine stores the training config in every checkpoint's ``meta``; its
``train_dataloader`` names the seed and K of the K-shot set trained on.
:func:`check_checkpoint_sample` (called by
:meth:`~mmdet_maskdiff.engine.runner.FewShotRunner.load_checkpoint`) refuses
a checkpoint of another seed or K; ``few_shot.check_checkpoint=False``
turns it off.
"""
import os.path as osp
from typing import Any, Dict, Optional

from mmengine.config import Config

from mmdet_maskdiff.utils.cli_checks import InputError
from mmdet_maskdiff.utils.safe_checkpoint import (load_checkpoint_file,
                                                  stored_config_value)
from .config_keys import FEW_SHOT_KEY, SEED_PLACEHOLDER
from .sample import training_sample


def checkpoint_sample(checkpoint: dict) -> Optional[Dict[str, Any]]:
    """The K-shot sample a checkpoint was trained on, read from the training
    config mmengine stores in ``checkpoint['meta']['cfg']`` (its
    ``train_dataloader``, read without executing the text:
    :func:`~mmdet_maskdiff.utils.safe_checkpoint.stored_config_value`);
    None when the checkpoint has no such config or it trained on no K-shot
    set."""
    loader = stored_config_value(checkpoint, 'train_dataloader')
    if not isinstance(loader, dict):
        return None
    return training_sample(dict(train_dataloader=loader))


def checkpoint_file_sample(path: str) -> Optional[Dict[str, Any]]:
    """:func:`checkpoint_sample` of a local file (None when it is absent)."""
    if not path or not osp.isfile(path):
        return None
    return checkpoint_sample(load_checkpoint_file(path, map_location='cpu'))


def check_checkpoint_sample(cfg: Config, checkpoint: dict,
                            filename: str) -> None:
    """Raise when ``checkpoint`` was trained on another K-shot sample (seed
    or K) than the one ``cfg`` trains or tests with.

    Raises:
        InputError: one line naming the file and both samples.
    """
    if not (cfg.get(FEW_SHOT_KEY) or {}).get('check_checkpoint', True):
        return
    ours = training_sample(cfg)
    theirs = checkpoint_sample(checkpoint)
    if ours is None or theirs is None:
        return
    if (ours['seed'], ours['num_novel_shots']) != (
            theirs['seed'], theirs['num_novel_shots']):
        raise InputError(
            f'checkpoint {filename} was trained on the K-shot sample '
            f'seed={theirs["seed"]}, K={theirs["num_novel_shots"]}, but this '
            f'run uses seed={ours["seed"]}, K={ours["num_novel_shots"]}; load '
            f'the checkpoint of that seed and K ({FEW_SHOT_KEY}.seed moves '
            f'load_from when it contains {SEED_PLACEHOLDER}), or pass '
            f'--cfg-options {FEW_SHOT_KEY}.check_checkpoint=False')
