"""What keeps a checkpoint's tensors from filling a model's state exactly.

One comparison for the two places that must not load a checkpoint silently
wrong: ``tools/test.py``'s strict load of the whole model
(:func:`mmdet_maskdiff.models.checkpoint_checks.checkpoint_mismatch`) and
``ConditionedMaskHead._load_from_state_dict`` (the mask heads), strict about
their own tensors whatever mmengine asks (``load_from`` and ``init_detector``
load with ``strict=False``, which keeps a tensor of another shape at its
random initial value).
"""
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional


@dataclass(frozen=True)
class StateDictDiff:
    """The keys on which a model's state and a checkpoint's disagree.

    Attributes:
        reshaped (list[str]): Keys in both whose tensors differ in shape, in
            the model's order.
        missing (list[str]): Keys of the model the checkpoint lacks.
        unexpected (list[str]): Keys of the checkpoint the model lacks.
    """

    reshaped: List[str]
    missing: List[str]
    unexpected: List[str]

    @classmethod
    def between(cls,
                model_state: Mapping[str, object],
                checkpoint_state: Mapping[str, object],
                ignore: Optional[Callable[[str], bool]] = None
                ) -> 'StateDictDiff':
        """Compare ``model_state`` (``module.state_dict()``) with
        ``checkpoint_state`` (tensors by key), skipping keys for which
        ``ignore(key)`` is true on both sides."""
        if ignore is not None:
            model_state = {k: v for k, v in model_state.items()
                           if not ignore(k)}
            checkpoint_state = {k: v for k, v in checkpoint_state.items()
                                if not ignore(k)}
        reshaped = [
            key for key, value in model_state.items()
            if key in checkpoint_state
            and hasattr(checkpoint_state[key], 'shape')
            and tuple(checkpoint_state[key].shape) != tuple(value.shape)
        ]
        missing = [key for key in model_state if key not in checkpoint_state]
        unexpected = [
            key for key in checkpoint_state if key not in model_state
        ]
        return cls(reshaped, missing, unexpected)

    def lines(self, model_state: Mapping[str, object],
              checkpoint_state: Mapping[str, object]) -> List[str]:
        """One sentence per problem: reshaped tensors first (with both
        shapes), then missing keys, then extra keys."""
        reshaped = [
            f'{key} has shape {tuple(checkpoint_state[key].shape)} in the '
            f'checkpoint, {tuple(model_state[key].shape)} in the model'
            for key in self.reshaped
        ]
        missing = [f'{key} is missing from the checkpoint'
                   for key in self.missing]
        unexpected = [f'{key} is in the checkpoint but not in the model'
                      for key in self.unexpected]
        return reshaped + missing + unexpected


def first_and_count(problems: List[str]) -> str:
    """``problems[0]``, and how many follow it: the head of a one-line
    error."""
    more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
    return problems[0] + more
