"""Checkpoints that do not fit the model are errors, not log lines.

mmengine loads ``load_from`` and the checkpoint of ``tools/test.py`` with
``strict=False``: a tensor whose shape differs (e.g. ``num_shots=3`` against
a 5-shot checkpoint changes the mask head's first convolution) is reported in
one log line and keeps its random initial value, and the run ends with exit
0 and a near-zero AP. Here:

* :func:`read_checkpoint` names the file when it cannot be read (truncated,
  not a checkpoint);
* :func:`checkpoint_mismatch` lists missing, unexpected and reshaped tensors;
* :func:`load_checkpoint_strictly` (``tools/test.py``) loads a checkpoint
  only when every tensor of the model is in it with the same shape.

Training keeps mmengine's non-strict ``load_from``, where it is intended:
stage 2 loads the stage-1b detector and its whole ``roi_head.mask_head.*`` is
new; stage 1b loads stage 1a and re-initialises the last box layers. The
mask head itself is strict on every path (``ConditionedMaskHead.
_load_from_state_dict``): all of its tensors with their shapes, or none.
"""
from dataclasses import replace
from typing import Dict, List, Optional, Sequence

from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint

from mmdet_maskdiff.structures import StateDictDiff, first_and_count
from mmdet_maskdiff.utils.cli_checks import InputError
from .roi_heads.stored_support import STATE_KEY as STORED_SUPPORT_KEY


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint on the CPU (mmengine's loader, i.e.
    :func:`~mmdet_maskdiff.utils.safe_checkpoint.load_checkpoint_file`); a
    missing, unreadable or refused file raises :class:`InputError` naming
    ``path``."""
    try:
        return _load_checkpoint(path, map_location='cpu')
    except InputError:  # refused by utils/safe_checkpoint.py: one line
        raise
    except FileNotFoundError:
        raise InputError(f'checkpoint file {path} does not exist') from None
    except Exception as exc:  # torch / pickle raise many types
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        message = lines[0]
        if not message.startswith('cannot read checkpoint'):  # not compat's
            message = (f'cannot read checkpoint {path}: {message} (a '
                       'truncated download or not a checkpoint?)')
        raise InputError(message) from None


def _state_dict(checkpoint: dict) -> Dict[str, object]:
    state = checkpoint.get('state_dict', checkpoint)
    return {
        (key[len('module.'):] if key.startswith('module.') else key): value
        for key, value in state.items()
    }


def _is_stored_support(key: str) -> bool:
    """Whether ``key`` belongs to a stored K-shot support set
    (``roi_head.support_encoder.support_set.*``): data of any size, not weights, checked by
    ``FewShotRoIHead`` when it loads them (K and class list)."""
    return f'.{STORED_SUPPORT_KEY}.' in f'.{key}'


def checkpoint_mismatch(
    model_state: Dict[str, object],
    checkpoint: dict,
    allowed_missing: Sequence[str] = ()) -> List[str]:
    """What keeps ``checkpoint`` from filling ``model_state`` exactly.

    Args:
        model_state (dict): ``model.state_dict()``. The stored support set
            (``*.support_set.*``) is left out on both sides.
        checkpoint (dict): A checkpoint (with ``state_dict``) or a state dict.
        allowed_missing (Sequence[str]): Key prefixes the checkpoint may lack.

    Returns:
        list[str]: One entry per problem, reshaped tensors first; empty when
        the checkpoint fits.
    """
    state = _state_dict(checkpoint)
    diff = StateDictDiff.between(model_state, state, _is_stored_support)
    diff = replace(diff, missing=[
        key for key in diff.missing
        if not key.startswith(tuple(allowed_missing))
    ])
    return diff.lines(model_state, state)


def describe_mismatch(path: str,
                      problems: List[str],
                      head_problem: Optional[str] = None) -> str:
    """One line: the mask head's account of the mismatch
    (:func:`mask_head_problem`) if it has one, else the first problem, the
    count of the others and the usual cause."""
    account = head_problem or (
        f'{first_and_count(problems)}; was it trained with another config '
        '(e.g. another num_shots, mask_size or num_classes)?')
    return f'checkpoint {path} does not fit the model of the config: {account}'


def mask_head_problem(model, checkpoint: dict) -> Optional[str]:
    """The mask head's own account of why ``checkpoint`` does not fit it
    (``checkpoint_problem`` of a ``ConditionedMaskHead``, which names e.g. a
    MaskDiff checkpoint given to its regression twin), or None."""
    head = getattr(getattr(model, 'roi_head', None), 'mask_head', None)
    explain = getattr(head, 'checkpoint_problem', None)
    if explain is None:
        return None
    return explain(_state_dict(checkpoint), 'roi_head.mask_head.')


def load_checkpoint_strictly(runner, path: str) -> dict:
    """Load ``path`` into ``runner.model`` only if it fits exactly.

    Raises:
        InputError: the file cannot be read, or a tensor of the model is
            missing from it, has another shape, or it has extra tensors.

    Returns:
        dict: The checkpoint as loaded by ``runner.load_checkpoint``.
    """
    checkpoint = read_checkpoint(path)
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    problems = checkpoint_mismatch(model.state_dict(), checkpoint)
    if problems:
        raise InputError(
            describe_mismatch(path, problems,
                              mask_head_problem(model, checkpoint)))
    return runner.load_checkpoint(path, strict=True)
