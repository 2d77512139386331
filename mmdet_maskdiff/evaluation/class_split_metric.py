"""The base of the per-instance metrics reported for base / novel / all."""
from typing import Dict, List, Mapping, Optional, Sequence, Union

from mmengine.evaluator import BaseMetric

from .few_shot_coco_metric import check_split_specs, resolve_split_specs


class ClassSplitMetric(BaseMetric):
    """A metric over instances that reports each class split (``all``, then
    the splits of ``class_splits``).

    Args:
        class_splits (dict, optional): split name -> class names or keyword,
            exactly as :class:`FewShotCocoMetric`'s. Defaults to
            ``dict(base='BASE', novel='NOVEL')``; ``dict()`` reports ``all``
            only.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Key prefix. Defaults to the subclass's
            ``default_prefix``.
    """

    def __init__(self,
                 class_splits: Optional[Mapping[str,
                                                Union[str,
                                                      Sequence[str]]]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if class_splits is None:
            class_splits = dict(base='BASE', novel='NOVEL')
        self.class_splits = check_split_specs(class_splits)

    def split_labels(self) -> Dict[str, List[int]]:
        """Split name -> the label indices of its classes (``all`` first),
        resolved against ``dataset_meta``."""
        splits = resolve_split_specs(self.class_splits, self.dataset_meta)
        classes = list(self.dataset_meta['classes'])
        return {
            split: [classes.index(name) for name in names]
            for split, names in splits.items()
        }
