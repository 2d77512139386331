"""The classes of the synthetic FSIS dataset (easy and hard sets), their
base / novel splits (registered as the ``class_splits`` presets
``'synthetic'`` and ``'synthetic_hard'``), and the balanced stream of class
ids its images draw from."""
from typing import Dict, List, Tuple

import numpy as np

from .class_splits import register_class_splits

SYNTHETIC_CLASS_SPLITS = dict(
    base=('circle', 'square', 'triangle', 'ring', 'cross', 'star'),
    novel=('crescent', 'heart'))
SYNTHETIC_CLASSES: Tuple[str, ...] = (
    SYNTHETIC_CLASS_SPLITS['base'] + SYNTHETIC_CLASS_SPLITS['novel'])
# configs and the command line can say class_splits='synthetic'
register_class_splits('synthetic', **SYNTHETIC_CLASS_SPLITS)

SYNTHETIC_HARD_CLASS_SPLITS = dict(
    base=SYNTHETIC_CLASS_SPLITS['base'] + ('hexagon', 'ellipse', 'bolt'),
    novel=SYNTHETIC_CLASS_SPLITS['novel'] + ('arrow', ))
SYNTHETIC_HARD_CLASSES: Tuple[str, ...] = (
    SYNTHETIC_HARD_CLASS_SPLITS['base'] + SYNTHETIC_HARD_CLASS_SPLITS['novel'])
# ... and class_splits='synthetic_hard' for difficulty='hard'
register_class_splits('synthetic_hard', **SYNTHETIC_HARD_CLASS_SPLITS)

#: class splits of each difficulty of :func:`make_synthetic_fsis`
SYNTHETIC_SPLITS_BY_DIFFICULTY: Dict[str, Dict[str, Tuple[str, ...]]] = dict(
    easy=SYNTHETIC_CLASS_SPLITS, hard=SYNTHETIC_HARD_CLASS_SPLITS)
#: the ``class_splits`` preset name of each difficulty
SYNTHETIC_SPLIT_NAMES: Dict[str, str] = dict(
    easy='synthetic', hard='synthetic_hard')


def synthetic_classes(difficulty: str = 'easy') -> Tuple[str, ...]:
    """The class names (label order, base then novel) of a difficulty."""
    splits = SYNTHETIC_SPLITS_BY_DIFFICULTY[difficulty]
    return splits['base'] + splits['novel']


class ClassStream:
    """Class ids from consecutive shuffled permutations (balanced counts)."""

    def __init__(self, num_classes: int, rng: np.random.Generator) -> None:
        self.num_classes = num_classes
        self.rng = rng
        self.queue: List[int] = []

    def next(self) -> int:
        if not self.queue:
            self.queue = self.rng.permutation(self.num_classes).tolist()
        return self.queue.pop()
