"""The K-shot members of a (wrapped) dataset: the
:class:`~.few_shot_coco.FewShotCocoDataset` s that read K-shot files."""
from typing import Any, Iterator, List

from .few_shot_coco import FewShotCocoDataset


def _wrapped(dataset: Any) -> Iterator[Any]:
    """``dataset`` and every dataset it wraps (Concat / Repeat /
    ClassBalanced, nested), depth first."""
    yield dataset
    for child in getattr(dataset, 'datasets', None) or []:
        yield from _wrapped(child)
    child = getattr(dataset, 'dataset', None)
    if child is not None:
        yield from _wrapped(child)


def k_shot_members(dataset: Any) -> List[FewShotCocoDataset]:
    """The :class:`FewShotCocoDataset` s in ``dataset`` (itself or wrapped)
    that read K-shot files (``few_shot_root`` set)."""
    return [
        member for member in _wrapped(dataset)
        if isinstance(member, FewShotCocoDataset) and member.few_shot_root
    ]
