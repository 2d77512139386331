import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from mmdet_maskdiff.datasets import (FewShotCocoDataset,
                                     generate_few_shot_splits,
                                     make_synthetic_fsis)
from mmdet_maskdiff.datasets.synthetic_class_splits import \
    SYNTHETIC_CLASS_SPLITS
from mmdet_maskdiff.few_shot.split_paths import few_shot_split_path

SPLITS = dict(base=('cat', 'dog'), novel=('bird', 'potted plant'))
ALL = ('cat', 'dog', 'bird', 'potted plant')
# file order and ids deliberately differ from the label order
CATEGORIES = [
    dict(id=7, name='dog'),
    dict(id=3, name='cat'),
    dict(id=11, name='potted plant'),
    dict(id=5, name='bird'),
]
NAME2ID = {c['name']: c['id'] for c in CATEGORIES}
ID2NAME = {c['id']: c['name'] for c in CATEGORIES}
W, H = 64, 48


def _box_ann(ann_id, img_id, name, x, y=4, w=8, h=9, **extra):
    ann = dict(
        id=ann_id,
        image_id=img_id,
        category_id=NAME2ID[name],
        bbox=[x, y, w, h],
        area=w * h,
        iscrowd=0,
        segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]])
    ann.update(extra)
    return ann


def _train_json(num_images=8):
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append(dict(id=i, file_name=f'{i:012d}.jpg', width=W, height=H))
        for c, name in enumerate(ALL):
            for j in range(1 + (i + c) % 2):
                anns.append(
                    _box_ann(
                        len(anns) + 1, i, name, x=2 + 15 * c, y=4 + 20 * j))
    anns.append(_box_ann(1000, 1, 'cat', x=50, iscrowd=1))
    anns.append(_box_ann(1001, 2, 'dog', x=50, area=0))  # skipped in full
    return dict(images=images, annotations=anns, categories=CATEGORIES)


def _write(path, data):
    with open(path, 'w') as f:
        json.dump(data, f)
    return str(path)


def _label_of(data, img_id, bbox_xyxy):
    """Class name of the annotation with this image and box."""
    for ann in data['annotations']:
        x, y, w, h = ann['bbox']
        if ann['image_id'] == img_id and [x, y, x + w, y + h
                                          ] == list(bbox_xyxy):
            return ID2NAME[ann['category_id']]
    raise AssertionError(f'no annotation for {img_id} {bbox_xyxy}')


def _instances(dataset):
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        for inst in info['instances']:
            yield info, inst


@pytest.fixture
def coco(tmp_path):
    train = _train_json()
    train_path = _write(tmp_path / 'train.json', train)
    test = dict(_train_json(3))
    # a test set may not skip more than 1 % (max_invalid_fraction)
    test['annotations'] = [a for a in test['annotations'] if a['area'] > 0]
    test['categories'] = list(reversed(CATEGORIES))
    test_path = _write(tmp_path / 'test.json', test)
    return dict(
        root=tmp_path,
        train=train,
        train_path=train_path,
        test=test,
        test_path=test_path)


def _dataset(**kwargs):
    cfg = dict(
        type='FewShotCocoDataset',
        class_splits=SPLITS,
        data_prefix=dict(img='imgs/'),
        pipeline=[])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_label_space_is_shared_across_stages(coco):
    split_dir = str(coco['root'] / 'split')
    generate_few_shot_splits(coco['train_path'], split_dir, (1, 2), (0, 1))
    base_train = _dataset(ann_file=coco['train_path'], ann_classes='BASE')
    fine_tune = _dataset(
        ann_file=coco['train_path'],
        few_shot_root=split_dir,
        num_base_shots=2,
        num_novel_shots=2,
        seed=1)
    test = _dataset(ann_file=coco['test_path'], test_mode=True)
    for ds, data in ((base_train, coco['train']), (fine_tune, coco['train']),
                     (test, coco['test'])):
        assert ds.metainfo['classes'] == ALL
        assert ds.metainfo['base_classes'] == ('cat', 'dog')
        assert ds.metainfo['novel_classes'] == ('bird', 'potted plant')
        assert ds.cat_ids == [3, 7, 5, 11]
        labels = set()
        for info, inst in _instances(ds):
            name = _label_of(data, info['img_id'], inst['bbox'])
            assert ALL[inst['bbox_label']] == name
            labels.add(inst['bbox_label'])
        assert labels == ({0, 1} if ds is base_train else {0, 1, 2, 3})
    # fine-tune set: exactly K instances per class
    counts = np.bincount(
        [inst['bbox_label'] for _, inst in _instances(fine_tune)], minlength=4)
    assert counts.tolist() == [2, 2, 2, 2]


def test_full_mode_skips_invalid_and_keeps_crowd(coco):
    ds = _dataset(ann_file=coco['train_path'])
    assert len(ds) == 8
    info = ds.get_data_info(0)
    assert info['img_path'] == osp.join('imgs', '000000000001.jpg')
    assert (info['height'], info['width']) == (H, W)
    crowd = [i for i in info['instances'] if i['ignore_flag']]
    assert len(crowd) == 1
    assert all('mask' in i for i in info['instances'])
    # the zero-area dog of image 2 is skipped, its other dogs are kept
    info2 = ds.get_data_info(1)
    assert all(inst['bbox'][0] != 50 for inst in info2['instances'])
    assert ds._num_invalid == 1


def test_full_mode_equals_mmdet_coco_dataset(coco):
    """With the label space in the file's category order (mmdet's label
    order) and only annotations both accept, the data list is mmdet's, field for field:
    paths (image and seg map), sizes, boxes, labels, crowd flags, masks."""
    in_file_order = tuple(c['name'] for c in CATEGORIES)
    common = dict(
        ann_file=coco['train_path'],
        data_prefix=dict(img='imgs/', seg='segs/'),
        pipeline=[])
    ours = FewShotCocoDataset(
        classes=in_file_order, class_splits=SPLITS, **common)
    mmdet = CocoDataset(metainfo=dict(classes=in_file_order), **common)
    assert ours.cat_ids == mmdet.cat_ids
    assert len(ours) == len(mmdet) == 8
    for i in range(len(ours)):
        assert ours.get_data_info(i) == mmdet.get_data_info(i)
    # the zero-area dog, which both drop, is counted here
    assert ours._num_invalid == 1


def test_filter_cfg_uses_kept_classes(coco):
    train = coco['train']
    # image 8 only has novel instances
    train['annotations'] = [
        a for a in train['annotations'] if not (
            a['image_id'] == 8 and ID2NAME[a['category_id']] in SPLITS['base'])
    ]
    path = _write(coco['root'] / 'train_f.json', train)
    ds = _dataset(
        ann_file=path,
        ann_classes='BASE',
        filter_cfg=dict(filter_empty_gt=True))
    assert 8 not in [ds.get_data_info(i)['img_id'] for i in range(len(ds))]
    assert len(ds) == 7
    ds = _dataset(
        ann_file=path,
        ann_classes='BASE',
        filter_cfg=dict(filter_empty_gt=False, min_size=50))
    assert len(ds) == 0  # every image is 48 px high


def _split_file(root, name, shots, anns, images=None, categories=None, seed=0):
    img_ids = sorted({a['image_id'] for a in anns})
    data = dict(
        info={},
        licenses=[],
        images=images or [
            dict(
                id=i,
                file_name=f'COCO_train2014_{i:012d}.jpg',
                width=W,
                height=H) for i in img_ids
        ],
        annotations=anns,
        categories=categories or CATEGORIES)
    path = few_shot_split_path(str(root), name, shots, seed)
    os.makedirs(osp.dirname(path), exist_ok=True)
    return _write(path, data)


def test_images_of_several_class_files_are_merged(coco, tmp_path):
    root = tmp_path / 'cocosplit'
    a = _box_ann(1, 1, 'cat', x=2)
    b = _box_ann(2, 2, 'cat', x=2)
    c = _box_ann(3, 1, 'bird', x=30)
    d = _box_ann(4, 3, 'bird', x=30)
    _split_file(root, 'cat', 2, [a, b, a])  # a duplicated
    _split_file(root, 'bird', 2, [c, d])
    ds = _dataset(
        ann_file=coco['train_path'],
        classes=('cat', 'bird'),
        few_shot_root=str(root),
        num_base_shots=2,
        num_novel_shots=2)
    assert len(ds) == 3
    items = {
        ds.get_data_info(i)['img_id']: ds.get_data_info(i)
        for i in range(len(ds))
    }
    assert sorted(items) == [1, 2, 3]
    assert sorted(i['bbox_label'] for i in items[1]['instances']) == [0, 1]
    assert len(items[2]['instances']) == 1
    # TFA 2014 file names resolve through the main file's image records
    assert items[1]['img_path'].endswith('000000000001.jpg')
    assert 'COCO_train2014' not in items[1]['img_path']
    # without the main file the split file's records are used
    ds = _dataset(
        ann_file='',
        classes=('cat', 'bird'),
        few_shot_root=str(root),
        num_base_shots=2,
        num_novel_shots=0)
    assert len(ds) == 2
    assert 'COCO_train2014_000000000001' in ds.get_data_info(0)['img_path']


def test_pipeline_on_synthetic_data(tmp_path):
    paths = make_synthetic_fsis(
        str(tmp_path / 'syn'),
        num_train_images=24,
        num_test_images=4,
        shots=(1, 3),
        seeds=(0, ))
    # mmdet's transforms as a config names them, whatever scope an earlier
    # test left as the default
    init_default_scope('mmdet')
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs')
    ]
    ds = FewShotCocoDataset(
        data_root=paths['root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        class_splits=SYNTHETIC_CLASS_SPLITS,
        few_shot_root='few_shot',
        num_base_shots=3,
        num_novel_shots=3,
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=pipeline)
    with open(paths['train_ann']) as f:
        train = json.load(f)
    areas = {
        (a['image_id'], tuple(a['bbox'])): a['area']
        for a in train['annotations']
    }
    total = 0
    for i in range(len(ds)):
        sample = ds[i]
        gt = sample['data_samples'].gt_instances
        img_id = sample['data_samples'].img_id
        assert sample['inputs'].shape == (3, 128, 128)
        for box, mask in zip(gt.bboxes.tensor.tolist(), gt.masks.masks):
            x1, y1, x2, y2 = box
            key = (img_id, (x1, y1, x2 - x1, y2 - y1))
            assert mask.sum() == areas[key]  # exact RLE decode
        total += len(gt)
    assert total == 3 * 8


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(ann_file='nope.json'), FileNotFoundError,
     'annotation file not found: .*nope.json'),
    (dict(classes=('cat', 'zebra')), ValueError,
     r"class 'zebra' is not a category of .*train\.json"),
    (dict(ann_classes=('zebra', )), ValueError, 'not in the label space'),
    (dict(metainfo=dict(classes=('cat', ))), ValueError,
     'metainfo.classes differs'),
    (dict(few_shot_root='split'), ValueError, 'no class has shots'),
    (dict(few_shot_root='.', num_novel_shots=4), FileNotFoundError,
     r'few-shot split folder .* \(seed=0, K=4\): no '
     r'full_box_4shot_\*_trainval\.json in it'),
    (dict(few_shot_root='split', num_novel_shots=4), FileNotFoundError,
     r'few-shot split folder .*split \(seed=0, K=4\): no such folder'),
    (dict(num_base_shots=-1), ValueError, 'num_base_shots'),
    (dict(on_invalid_few_shot='warn'), ValueError, 'on_invalid_few_shot'),
])
def test_argument_errors(coco, kwargs, error, match):
    cfg = dict(ann_file=coco['train_path'], data_root=str(coco['root']))
    cfg.update(kwargs)
    with pytest.raises(error, match=match):
        _dataset(**cfg)


def test_missing_split_file_of_one_class_is_named(coco):
    """The folder holds K-shot files, but not the one of this class."""
    split_dir = str(coco['root'] / 'split')
    generate_few_shot_splits(coco['train_path'], split_dir, (1, ), (0, ))
    os.remove(few_shot_split_path(split_dir, 'bird', 1, 0))
    with pytest.raises(
            FileNotFoundError,
            match=r'few-shot split file not found: .*full_box_1shot_bird_'
            r"trainval\.json \(class 'bird', K=1, seed=0\)"):
        _dataset(
            ann_file=coco['train_path'],
            data_root=str(coco['root']),
            few_shot_root='split',
            num_novel_shots=1)


def test_malformed_annotation_files(tmp_path):
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r'broken\.json is not valid json'):
        _dataset(ann_file=str(broken))
    no_cats = _write(tmp_path / 'nocats.json', dict(images=[], annotations=[]))
    with pytest.raises(ValueError, match=r"nocats\.json has no 'categories'"):
        _dataset(ann_file=no_cats)
    bad_entry = _write(
        tmp_path / 'badentry.json',
        dict(
            images=[dict(file_name='x.jpg')],
            annotations=[],
            categories=CATEGORIES))
    with pytest.raises(ValueError, match=r"entry 0 of 'images' .*badentry"):
        _dataset(ann_file=bad_entry)


def _few_shot(coco, root, **kwargs):
    cfg = dict(
        ann_file=coco['train_path'],
        classes=('cat', 'bird'),
        few_shot_root=str(root),
        num_base_shots=1,
        num_novel_shots=None)
    cfg.update(kwargs)
    return _dataset(**cfg)


def test_too_few_instances_in_split_file(coco, tmp_path):
    root = tmp_path / 'split'
    _split_file(root, 'cat', 3,
                [_box_ann(1, 1, 'cat', x=2),
                 _box_ann(2, 2, 'cat', x=2)])
    with pytest.raises(
            ValueError,
            match=r"full_box_3shot_cat_trainval\.json has 2 instances of "
            r"class 'cat', fewer than K=3"):
        _few_shot(coco, root, num_base_shots=3)


def test_class_absent_from_split_file(coco, tmp_path):
    root = tmp_path / 'split'
    cats = [c for c in CATEGORIES if c['name'] != 'bird']
    _split_file(root, 'cat', 1, [_box_ann(1, 1, 'cat', x=2)], categories=cats)
    # without the main file the first split file defines the categories
    with pytest.raises(
            ValueError,
            match=r"class 'bird' is not a category of .*full_box_"
            r'1shot_cat_trainval\.json'):
        _few_shot(coco, root, ann_file='')
    cats = [c for c in CATEGORIES if c['name'] != 'cat']
    _split_file(root, 'cat', 1, [_box_ann(1, 1, 'bird', x=2)], categories=cats)
    with pytest.raises(
            ValueError,
            match="class 'cat' is not a category of few-shot file"):
        _few_shot(coco, root)


def test_mismatched_category_ids(coco, tmp_path):
    root = tmp_path / 'split'
    cats = [dict(c, id=99) if c['name'] == 'cat' else c for c in CATEGORIES]
    ann = dict(_box_ann(1, 1, 'cat', x=2), category_id=99)
    _split_file(root, 'cat', 1, [ann], categories=cats)
    with pytest.raises(
            ValueError,
            match=r"category id of class 'cat' is 99 in .*1shot_cat"
            r".* but 3 in .*train\.json"):
        _few_shot(coco, root)


def test_unknown_image_in_split_file(coco, tmp_path):
    root = tmp_path / 'split'
    _split_file(root, 'cat', 1, [_box_ann(1, 77, 'cat', x=2)])
    with pytest.raises(ValueError, match=r'image 77 of few-shot file .*cat'):
        _few_shot(coco, root)


@pytest.mark.parametrize('change, match', [
    (dict(area=0), 'zero area'),
    (dict(bbox=[2, 4, 0.5, 9]), 'degenerate bbox'),
    (dict(bbox=[60, 4, 8, 9]), 'bbox .* outside the 64x48 image'),
    (dict(segmentation=[[5, 5, 5, 5, 5, 5]]), 'zero-area mask'),
    (dict(segmentation=[[2, 4, 90, 4, 90, 13]]), 'polygon outside'),
    (dict(segmentation=[[2, 4, 10]]), 'at least 3'),
    (dict(segmentation=dict(size=[10, 10], counts='0')), 'RLE of size'),
    (dict(segmentation=dict(size=[H, W], counts=[H * W])), 'zero-area mask'),
])
def test_invalid_few_shot_annotations(coco, tmp_path, change, match):
    root = tmp_path / 'split'
    bad = dict(_box_ann(5, 1, 'cat', x=2), **change)
    _split_file(root, 'cat', 1, [bad])
    with pytest.raises(
            ValueError,
            match=rf"annotation 5 \(class 'cat', image 1\) of few-shot file "
            rf'.*full_box_1shot_cat_trainval\.json has .*{match}'):
        _few_shot(coco, root)
    # 'skip' drops it (the K check counts the file's instances)
    ds = _few_shot(coco, root, on_invalid_few_shot='skip')
    assert len(ds) == 0 and ds._num_invalid == 1
