"""Base / novel class splits of the few-shot benchmarks.

COCO few-shot protocol (TFA, Wang et al. 2020; MTFA / iMTFA for instance
segmentation): the 20 categories shared with PASCAL VOC are *novel*, the other
60 are *base*. Names are the category names of the COCO annotation files,
spaces included (``'potted plant'``, ``'dining table'``), which are also the
names used in TFA's ``cocosplit`` file names.

A label space is always an ordered tuple of class names: the label of an
instance is the index of its class in that tuple. :func:`resolve_classes`
turns a split keyword (``'ALL'``, ``'BASE'``, ``'NOVEL'``) or an explicit
sequence into such a tuple, for COCO or for any dataset whose base / novel
classes are given as ``class_splits=dict(base=[...], novel=[...])``.
"""
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

# mmdet ``CocoDataset.METAINFO['classes']`` order (= COCO category id order).
COCO_ALL_CLASSES: Tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')

# The 20 PASCAL VOC categories, in the TFA / mmfewshot order.
COCO_NOVEL_CLASSES: Tuple[str,
                          ...] = ('person', 'bicycle', 'car', 'motorcycle',
                                  'airplane', 'bus', 'train', 'boat', 'bird',
                                  'cat', 'dog', 'horse', 'sheep', 'cow',
                                  'bottle', 'chair', 'couch', 'potted plant',
                                  'dining table', 'tv')

# The other 60, in ``COCO_ALL_CLASSES`` order.
COCO_BASE_CLASSES: Tuple[str, ...] = tuple(name for name in COCO_ALL_CLASSES
                                           if name not in COCO_NOVEL_CLASSES)

COCO_SPLIT: Dict[str, Tuple[str, ...]] = dict(
    ALL=COCO_ALL_CLASSES, BASE=COCO_BASE_CLASSES, NOVEL=COCO_NOVEL_CLASSES)

SPLIT_NAMES: Tuple[str, ...] = ('ALL', 'BASE', 'NOVEL')

#: named base / novel definitions, usable as ``class_splits='<name>'`` in
#: configs and on the command line (``--cfg-options ...class_splits=coco``),
#: or per side, ``class_splits=dict(base='coco', novel='coco')``. An ``ALL``
#: entry keeps a label order other than ``base + novel`` (COCO's category
#: id order).
CLASS_SPLIT_PRESETS: Dict[str, Dict[str, Tuple[str, ...]]] = dict(
    coco=dict(
        base=COCO_BASE_CLASSES,
        novel=COCO_NOVEL_CLASSES,
        ALL=COCO_ALL_CLASSES))


def register_class_splits(name: str,
                          base: Sequence[str],
                          novel: Sequence[str],
                          all_classes: Optional[Sequence[str]] = None) -> None:
    """Make ``class_splits=name`` mean ``dict(base=base, novel=novel)``.

    Args:
        name (str): the preset name (case-insensitive).
        base (Sequence[str]): the base class names.
        novel (Sequence[str]): the novel class names.
        all_classes (Sequence[str], optional): the label order of ``ALL``,
            a permutation of ``base + novel``; None means ``base + novel``.
    """
    preset = dict(base=tuple(base), novel=tuple(novel))
    if all_classes is not None:
        if sorted(all_classes) != sorted(preset['base'] + preset['novel']):
            raise ValueError(f'register_class_splits({name!r}): all_classes '
                             'must be a permutation of base + novel')
        preset['ALL'] = tuple(all_classes)
    CLASS_SPLIT_PRESETS[name.lower()] = preset


ClassSpec = Union[str, Sequence[str]]
ClassSplits = Union[Mapping[str, Sequence[str]], str]


def _check_names(names: Sequence[str], what: str) -> Tuple[str, ...]:
    """Return ``names`` as a tuple after checking types and duplicates."""
    if isinstance(names, str):
        raise ValueError(f'{what} must be a sequence of class names, got the '
                         f'string {names!r}; write ({names!r},) for a single '
                         'class')
    names = tuple(names)
    if not names:
        raise ValueError(f'{what} is empty')
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f'{what} must contain class names (str), got '
                             f'{name!r} of type {type(name).__name__}')
    seen = set()
    duplicates = []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise ValueError(f'{what} lists these classes more than once: '
                         f'{duplicates}')
    return names


def _named_sides(class_splits: ClassSplits) -> Dict[str, Any]:
    """``base`` and ``novel`` of a ``class_splits`` dict (keys
    case-insensitive) or preset name, as written (names or a preset name)."""
    if isinstance(class_splits, str):
        class_splits = dict(base=class_splits, novel=class_splits)
    if not isinstance(class_splits, Mapping):
        raise ValueError('class_splits must be a dict(base=[...], '
                         f'novel=[...]) or a preset name, got '
                         f'{type(class_splits).__name__}')
    keys = {str(key).lower(): key for key in class_splits}
    if len(keys) != len(class_splits) or set(keys) != {'base', 'novel'}:
        raise ValueError('class_splits must have exactly the keys '
                         f"'base' and 'novel', got {list(class_splits)}")
    return {side: class_splits[keys[side]] for side in ('base', 'novel')}


def get_class_splits(
        class_splits: Optional[ClassSplits] = None
) -> Dict[str, Tuple[str, ...]]:
    """Return the ``ALL`` / ``BASE`` / ``NOVEL`` class tuples of a dataset.

    Args:
        class_splits (Mapping[str, Sequence[str] | str] | str, optional):
            the base / novel definition, ``dict(base=[...], novel=[...])``
            (keys case-insensitive), or the name of one in
            :data:`CLASS_SPLIT_PRESETS` (``'coco'``, ``'synthetic'``, or one
            added with :func:`register_class_splits`). In the dict, a side
            may be a preset name, taking that preset's side: the base
            configs write ``dict(base='coco', novel='coco')`` so that a
            child config's ``dict(base=[...], novel=[...])`` merges over
            it without ``_delete_``. ``ALL`` is ``base + novel`` in that
            order, or the preset's own order when both sides name the same
            preset (COCO: category id order). ``None`` means COCO
            (:data:`COCO_SPLIT`).

    Returns:
        dict[str, tuple[str, ...]]: keys ``'ALL'``, ``'BASE'``, ``'NOVEL'``.

    Raises:
        ValueError: unknown or missing keys, duplicated names, or a class that
            is both base and novel.
    """
    if class_splits is None:
        return dict(COCO_SPLIT)
    named = _named_sides(class_splits)
    sides = {
        side: _preset(names)[side] if isinstance(names, str) else names
        for side, names in named.items()
    }
    base = _check_names(sides['base'], "class_splits['base']")
    novel = _check_names(sides['novel'], "class_splits['novel']")
    overlap = [name for name in base if name in novel]
    if overlap:
        raise ValueError('classes cannot be both base and novel: '
                         f'{overlap}')
    all_classes = base + novel
    base_name, novel_name = named['base'], named['novel']
    if (isinstance(base_name, str) and isinstance(novel_name, str)
            and base_name.lower() == novel_name.lower()):
        all_classes = _preset(base_name).get('ALL', all_classes)
    return dict(ALL=all_classes, BASE=base, NOVEL=novel)


def _preset(name: str) -> Dict[str, Tuple[str, ...]]:
    """The registered class splits called ``name`` (case-insensitive)."""
    preset = CLASS_SPLIT_PRESETS.get(name.lower())
    if preset is None:
        raise ValueError(
            f'unknown class_splits {name!r}; named splits: '
            f'{sorted(CLASS_SPLIT_PRESETS)} (or give dict(base=[...], '
            'novel=[...]))')
    return preset


def resolve_classes(
        spec: ClassSpec,
        class_splits: Optional[ClassSplits] = None) -> Tuple[str, ...]:
    """Turn a split keyword or a sequence of names into a label space.

    Args:
        spec (str | Sequence[str]): ``'ALL'``, ``'BASE'`` or ``'NOVEL'``
            (case-insensitive), or an explicit sequence of class names whose
            order is kept.
        class_splits (Mapping[str, Sequence[str]], optional): base / novel
            definition for a non-COCO dataset, see :func:`get_class_splits`.
            ``None`` resolves keywords against COCO.

    Returns:
        tuple[str, ...]: the class names; label ``i`` is ``classes[i]``.

    Raises:
        ValueError: an unknown split keyword, an empty sequence, duplicated
            names, or an invalid ``class_splits``.

    Examples:
        >>> resolve_classes('novel')[:3]
        ('person', 'bicycle', 'car')
        >>> resolve_classes('ALL', dict(base=['a', 'b'], novel=['c']))
        ('a', 'b', 'c')
    """
    splits = get_class_splits(class_splits)
    if isinstance(spec, str):
        key = spec.upper()
        if key not in SPLIT_NAMES:
            raise ValueError(
                f'unknown class split {spec!r}: expected one of '
                f"{', '.join(SPLIT_NAMES)} (case-insensitive) or a sequence "
                f'of class names, e.g. ({spec!r},)')
        return splits[key]
    return _check_names(spec, 'classes')

# PASCAL VOC category name -> COCO category name. The 20 VOC classes are
# COCO's novel classes; 7 are spelt differently. For the COCO -> VOC
# protocol (FGN, Fan et al. 2020; MTFA / iMTFA's ``LIKE_FGN_TEST_VOC``): a
# COCO-trained model is evaluated on VOC instance masks given as a
# COCO-format json.
VOC_TO_COCO: Dict[str, str] = {
    'aeroplane': 'airplane',
    'bicycle': 'bicycle',
    'bird': 'bird',
    'boat': 'boat',
    'bottle': 'bottle',
    'bus': 'bus',
    'car': 'car',
    'cat': 'cat',
    'chair': 'chair',
    'cow': 'cow',
    'diningtable': 'dining table',
    'dog': 'dog',
    'horse': 'horse',
    'motorbike': 'motorcycle',
    'person': 'person',
    'pottedplant': 'potted plant',
    'sheep': 'sheep',
    'sofa': 'couch',
    'train': 'train',
    'tvmonitor': 'tv',
}
COCO_TO_VOC: Dict[str, str] = {coco: voc for voc, coco in VOC_TO_COCO.items()}


def coco_name_of_voc_class(name: str, source: str = 'VOC annotations') -> str:
    """The COCO category name of a PASCAL VOC class name.

    A name that is already the COCO spelling of a VOC class is returned as
    is, so a file converted once converts again to itself.

    Args:
        name (str): a VOC (or COCO) category name.
        source (str): where the name comes from, for the error message.

    Raises:
        ValueError: ``name`` is neither a VOC class nor the COCO name of one.
    """
    if name in VOC_TO_COCO:
        return VOC_TO_COCO[name]
    if name in COCO_TO_VOC:
        return name
    raise ValueError(f"VOC class '{name}' of {source} has no COCO name; the "
                     f'VOC classes are {", ".join(sorted(VOC_TO_COCO))}')
