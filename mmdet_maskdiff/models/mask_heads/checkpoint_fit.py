"""Whether a state dict fits a conditioned mask head, and why not.

The MaskDiff head and its regression twin have the same network tensors, so a
checkpoint of one loads silently into the other under mmengine's non-strict
loading; :func:`checkpoint_problem` names the mismatch in one line and its
likely cause, for ``ConditionedMaskHead._load_from_state_dict``.
"""
from typing import Mapping, Optional

from mmdet_maskdiff.structures import StateDictDiff, first_and_count

#: the one tensor the regression twin saves beyond the denoiser (its fixed
#: timestep): the two heads' tensors are otherwise the same, so it tells a
#: twin checkpoint from a MaskDiff one
TWIN_STATE_KEY = 'fixed_timestep'


def _mismatch_cause(state_dict: dict, own: dict, diff: StateDictDiff,
                    prefix: str) -> str:
    """The likely cause of a mask-head checkpoint that does not fit.

    * the twin's :data:`TWIN_STATE_KEY` on one side only: the checkpoint
      holds the other head (MaskDiff vs its regression twin), whose tensors
      are otherwise the same;
    * residual blocks whose ``time_proj`` gives C instead of 2 × C rows are
      those of the additive blocks before the scale-shift fix
      (CHANGELOG.md), not another config.
    """
    twin_key = prefix + TWIN_STATE_KEY
    if twin_key in diff.unexpected:
        return ('the checkpoint holds the regression twin '
                '(RegressionMaskHead), not a DiffusionMaskHead: load it with '
                'its config (configs/maskdiff/coco_*shot_twin.py)')
    if twin_key in diff.missing:
        return ('the checkpoint holds a MaskDiff DiffusionMaskHead, not the '
                'regression twin (RegressionMaskHead): load it with the '
                'MaskDiff config (coco_*shot.py), or train the twin')
    reshaped = diff.reshaped
    if reshaped and all('.time_proj.' in key and state_dict[key].shape[0] *
                        2 == own[key].shape[0] for key in reshaped):
        return ('the checkpoint has the additive residual blocks of '
                'mmdet_maskdiff before the scale-shift fix '
                '(CHANGELOG.md); retrain stage 2 from the stage-1b '
                'checkpoint')
    return ('the checkpoint was trained with another num_shots, mask_size, '
            'num_classes or denoiser')


def checkpoint_problem(own_state: Mapping, state_dict: Mapping,
                       prefix: str) -> Optional[str]:
    """Why ``state_dict`` cannot fill a head whose own state is
    ``own_state`` (keys without ``prefix``), or None when it can.

    Every tensor of the head must be there with its shape, and no other
    tensor under ``prefix``; a state dict with no tensor under ``prefix`` at
    all fits (stage 1b → stage 2, where the head is new).

    Returns:
        str | None: One line: the first problem, how many follow, and the
        likely cause.
    """
    own = {prefix + key: value for key, value in own_state.items()}
    present = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not present:
        return None
    diff = StateDictDiff.between(own, present)
    problems = diff.lines(own, present)
    if not problems:
        return None
    return (f'{first_and_count(problems)}; '
            + _mismatch_cause(present, own, diff, prefix))
