import pytest

from mmdet_maskdiff.datasets.class_splits import (COCO_ALL_CLASSES,
                                                  COCO_BASE_CLASSES,
                                                  COCO_NOVEL_CLASSES,
                                                  COCO_SPLIT, get_class_splits,
                                                  resolve_classes)

VOC = {
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'boat', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'bottle', 'chair',
    'couch', 'potted plant', 'dining table', 'tv'
}


def test_coco_split_sizes_and_order():
    from mmdet.datasets import CocoDataset
    assert COCO_ALL_CLASSES == tuple(CocoDataset.METAINFO['classes'])
    assert len(COCO_ALL_CLASSES) == 80
    assert set(COCO_NOVEL_CLASSES) == VOC and len(COCO_NOVEL_CLASSES) == 20
    assert len(COCO_BASE_CLASSES) == 60
    assert not set(COCO_BASE_CLASSES) & set(COCO_NOVEL_CLASSES)
    assert set(COCO_BASE_CLASSES) | VOC == set(COCO_ALL_CLASSES)
    # base classes keep the ALL order
    positions = [COCO_ALL_CLASSES.index(c) for c in COCO_BASE_CLASSES]
    assert positions == sorted(positions)
    assert COCO_SPLIT['BASE'] is COCO_BASE_CLASSES


def test_resolve_keywords_and_sequences():
    assert resolve_classes('novel') == COCO_NOVEL_CLASSES
    assert resolve_classes('Base') == COCO_BASE_CLASSES
    assert resolve_classes('ALL') == COCO_ALL_CLASSES
    assert resolve_classes(['dog', 'cat']) == ('dog', 'cat')
    splits = dict(base=['b1', 'b2'], novel=('n1', ))
    assert resolve_classes('all', splits) == ('b1', 'b2', 'n1')
    assert resolve_classes('NOVEL', splits) == ('n1', )
    assert get_class_splits(dict(BASE=['x'], Novel=['y']))['ALL'] == ('x', 'y')


@pytest.mark.parametrize('spec, match', [
    ('nove', "unknown class split 'nove'"),
    ('person', r"unknown class split 'person'.*\('person',\)"),
    (['cat', 'dog', 'cat'], r"more than once: \['cat'\]"),
    ([], 'classes is empty'),
    (['cat', 3], 'class names'),
])
def test_resolve_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_classes(spec)


@pytest.mark.parametrize('splits, match', [
    (dict(base=['a', 'b'], novel=['b']), r"both base and novel: \['b'\]"),
    (dict(base=['a'], rare=['b']), "exactly the keys 'base' and 'novel'"),
    (dict(base=['a', 'a'], novel=['b']), 'more than once'),
    # a string side names a preset
    (dict(base='a', novel=['b']), "unknown class_splits 'a'"),
    (dict(base=('a', ), novel=[3]), 'must contain class names'),
    (['a', 'b'], 'must be a dict'),
])
def test_class_splits_errors(splits, match):
    with pytest.raises(ValueError, match=match):
        resolve_classes('ALL', splits)


def test_named_class_splits():
    from mmdet_maskdiff.datasets import (CLASS_SPLIT_PRESETS,
                                         register_class_splits)
    from mmdet_maskdiff.datasets.synthetic_class_splits import \
        SYNTHETIC_CLASS_SPLITS
    coco = get_class_splits('COCO')
    assert coco['NOVEL'] == COCO_NOVEL_CLASSES
    assert coco['BASE'] == COCO_BASE_CLASSES
    synthetic = get_class_splits('synthetic')
    assert synthetic['NOVEL'] == SYNTHETIC_CLASS_SPLITS['novel']
    assert resolve_classes('NOVEL', 'synthetic') == ('crescent', 'heart')
    register_class_splits('mine_for_test', base=['a', 'b'], novel=['c'])
    try:
        assert get_class_splits('mine_for_test')['ALL'] == ('a', 'b', 'c')
    finally:
        CLASS_SPLIT_PRESETS.pop('mine_for_test')
    with pytest.raises(ValueError, match="unknown class_splits 'nope'"):
        get_class_splits('nope')


def test_class_splits_sides_name_presets():
    """The base configs write dict(base='coco', novel='coco'): COCO's label
    order, as None; a child's lists replace both sides."""
    assert get_class_splits(dict(base='coco', novel='COCO')) == COCO_SPLIT
    assert get_class_splits('coco') == COCO_SPLIT  # category id order
    assert get_class_splits(None) == COCO_SPLIT
    mixed = get_class_splits(dict(base=['a'], novel='synthetic'))
    assert mixed == dict(ALL=('a', 'crescent', 'heart'), BASE=('a', ),
                         NOVEL=('crescent', 'heart'))
    # two presets: base + novel order
    assert get_class_splits(dict(base='synthetic', novel='coco'))['ALL'] == (
        get_class_splits('synthetic')['BASE'] + COCO_NOVEL_CLASSES)


def test_register_class_splits_label_order():
    from mmdet_maskdiff.datasets import (CLASS_SPLIT_PRESETS,
                                         register_class_splits)
    register_class_splits(
        'ordered_for_test', base=['a', 'c'], novel=['b'],
        all_classes=['a', 'b', 'c'])
    try:
        assert get_class_splits('ordered_for_test')['ALL'] == ('a', 'b', 'c')
    finally:
        CLASS_SPLIT_PRESETS.pop('ordered_for_test')
    with pytest.raises(ValueError, match='permutation of base [+] novel'):
        register_class_splits('bad', base=['a'], novel=['b'],
                              all_classes=['a'])
