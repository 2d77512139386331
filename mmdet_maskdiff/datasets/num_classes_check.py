"""``num_classes`` of the model against the classes of the datasets.

A config states the label space twice: in its datasets (``classes`` /
``class_splits`` of :class:`FewShotCocoDataset`, or ``metainfo.classes``)
and as ``num_classes`` of the heads. A mismatch trains or evaluates
silently wrong (labels beyond the classifier, or classes that never get a
label), so it is checked before the runner is built.
"""
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config

from mmdet_maskdiff.utils.config_tree import iter_config_dicts
from .class_splits import resolve_classes

#: ``num_classes`` keys of the model checked against the datasets; the
#: denoiser's is filled in by the mask head (``ConditionedMaskHead``), so a
#: value written there must agree too
NUM_CLASSES_KEYS: Tuple[str, ...] = (
    'model.roi_head.bbox_head.num_classes',
    'model.roi_head.mask_head.num_classes',
    'model.roi_head.mask_head.denoiser.num_classes',
)
LOADERS: Tuple[str, ...] = ('train_dataloader', 'val_dataloader',
                            'test_dataloader')


def dataset_num_classes(dataset: dict) -> Optional[int]:
    """The size of a dataset config's label space, or None when the config
    does not say (a dataset type of another package without
    ``metainfo.classes``)."""
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is not None:
        return len(classes)
    if dataset.get('type') == 'FewShotCocoDataset':
        return len(
            resolve_classes(
                dataset.get('classes', 'ALL'), dataset.get('class_splits')))
    return None


def _datasets(cfg: Config) -> Iterator[Tuple[str, int]]:
    """``(dotted path, number of classes)`` of each dataset config in the
    data loaders that states its classes (``ConcatDataset`` members
    included)."""
    tree = cfg.to_dict()
    for loader in LOADERS:
        for path, node in iter_config_dicts(tree.get(loader), loader):
            count = dataset_num_classes(node)
            if count is not None:
                yield path, count


def _lookup(cfg: Config, dotted: str) -> Optional[int]:
    node = cfg
    for key in dotted.split('.'):
        if not hasattr(node, 'get'):
            return None
        node = node.get(key)
        if node is None:
            return None
    return node if isinstance(node, int) else None


def check_num_classes(cfg: Config) -> None:
    """Raise when a head's ``num_classes`` differs from the number of
    classes of a dataset of the config.

    Args:
        cfg (Config): the full config (before the runner is built).

    Raises:
        ValueError: one line naming the model key, its value, the dataset
            config's path and its number of classes.
    """
    datasets: List[Tuple[str, int]] = list(_datasets(cfg))
    for key in NUM_CLASSES_KEYS:
        value = _lookup(cfg, key)
        if value is None:
            continue
        for path, count in datasets:
            if value != count:
                raise ValueError(
                    f'{key}={value} but {path} has {count} classes '
                    '(its classes / class_splits); set num_classes = '
                    f'{count} in the config')
