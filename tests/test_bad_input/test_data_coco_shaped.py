"""The file rules of :mod:`mmdet_maskdiff.datasets.coco_records` and the
invalid-fraction rule on a COCO-shaped annotation file, not only on the
8-image synthetic set of test_data.py.

The file is :func:`~mmdet_maskdiff.datasets.coco_shaped.coco_shaped_dict`
scaled down to 500 images (3,746 annotations, 80 classes with COCO's
names, ids and long tail; 1 % crowd regions), with tiny instances (3 % of
them 1-3 px on a side, valid) and a few invalid ones (0.2 %: sub-pixel and
zero-area boxes, under the 1 % a test set may skip). That clean file loads,
and one injected fault of each kind is refused in one line naming the file
and the id at fault. No image is read (annotation-only: ``pipeline=[]``).
"""
import copy
import json

import numpy as np
import pytest
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401  (registers components)
from mmdet_maskdiff.datasets import FewShotCocoDataset, few_shot_coco
from mmdet_maskdiff.datasets.coco_shaped import (COCO_CATEGORY_IDS,
                                                 coco_shaped_dict)
from mmdet_maskdiff.evaluation import FewShotCocoMetric

NUM_IMAGES = 500
TINY_SHARE = 0.03
INVALID_SHARE = 0.002
#: a COCO id between the declared ones (COCO 2017 leaves 12 out)
UNDECLARED_ID = 12


def _make_tiny(ann: dict, side: float) -> None:
    x, y = ann['bbox'][:2]
    ann['bbox'] = [x, y, side, side]
    ann['area'] = side * side
    ann['segmentation'] = [[
        x, y, x + side, y, x + side, y + side, x, y + side
    ]]


def _make_invalid(ann: dict, kind: int) -> None:
    if kind % 2:  # a sub-pixel box
        ann['bbox'][2] = 0.5
    else:
        ann['area'] = 0


def coco_shaped_test_file() -> dict:
    """The clean file (as a dict) and, in ``'invalid'``, the ids of its
    invalid annotations."""
    data = coco_shaped_dict(NUM_IMAGES, seed=0)
    anns = data['annotations']
    rng = np.random.default_rng(1)
    order = rng.permutation(len(anns))
    num_tiny = int(TINY_SHARE * len(anns))
    num_invalid = int(INVALID_SHARE * len(anns))
    for i in order[:num_tiny]:
        _make_tiny(anns[i], float(rng.integers(1, 4)))
    invalid = sorted(order[num_tiny:num_tiny + num_invalid].tolist())
    for kind, i in enumerate(invalid):
        _make_invalid(anns[i], kind)
    return dict(data, invalid=[anns[i]['id'] for i in invalid])


@pytest.fixture(scope='module')
def clean():
    return coco_shaped_test_file()


def _write(tmp_path, data: dict) -> str:
    path = str(tmp_path / 'instances_val2017.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({k: v for k, v in data.items() if k != 'invalid'}, f)
    return path


def _dataset(ann_file: str) -> FewShotCocoDataset:
    init_default_scope('mmdet')
    return FewShotCocoDataset(
        ann_file=ann_file,
        data_prefix=dict(img=''),
        classes='ALL',
        test_mode=True,
        pipeline=[])


def test_the_file_has_coco_proportions(clean):
    anns = clean['annotations']
    assert [c['id'] for c in clean['categories']] == list(COCO_CATEGORY_IDS)
    assert UNDECLARED_ID not in COCO_CATEGORY_IDS
    assert 6.5 < len(anns) / NUM_IMAGES < 8.0  # COCO: 7.3
    crowd = sum(a['iscrowd'] for a in anns) / len(anns)
    assert 0.005 < crowd < 0.02  # COCO: ~1 %
    small = sum(a['area'] < 32**2 for a in anns) / len(anns)
    assert small > 0.2  # COCO: 41 % small
    assert len(clean['invalid']) == int(INVALID_SHARE * len(anns))


def test_a_clean_coco_shaped_file_loads_and_names_its_skipped(
        clean, tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(few_shot_coco, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    path = _write(tmp_path, clean)
    dataset = _dataset(path)
    num, invalid = len(clean['annotations']), clean['invalid']
    assert len(dataset) == NUM_IMAGES
    assert sum(
        len(dataset.get_data_info(i)['instances'])
        for i in range(len(dataset))) == num - len(invalid)
    first = next(a for a in clean['annotations'] if a['id'] == min(invalid))
    assert len(logged) == 1, logged
    assert logged[0].startswith(
        f'FewShotCocoDataset: skipped {len(invalid)} of {num} annotations '
        f'({100 * len(invalid) / num:.2f} %) of {path} as invalid (first: '
        f"annotation {first['id']} (image {first['image_id']}) has ")
    metric = FewShotCocoMetric(ann_file=path)
    metric.dataset_meta = dataset.metainfo  # its checks pass


def _repeat_image_id(data: dict) -> str:
    data['images'][400]['id'] = data['images'][200]['id']
    return ('image id 201 appears twice in {path} (images[200] and '
            'images[400])')


def _repeat_file_name(data: dict) -> str:
    data['images'][400]['file_name'] = data['images'][200]['file_name']
    return ("file name '000000000201.jpg' appears twice in {path} (image "
            'ids 201 and 401)')


def _undeclared_category(data: dict) -> str:
    ann = data['annotations'][2000]
    ann['category_id'] = UNDECLARED_ID
    return (f"annotation {ann['id']} of {{path}} has category_id "
            f"{UNDECLARED_ID}, which is not in 'categories'")


def _too_many_invalid(data: dict) -> str:
    """2 % invalid: above the 1 % a test set may skip."""
    anns = data['annotations']
    invalid = set(data['invalid'])
    added = [a for a in anns[::50] if a['id'] not in invalid]
    for kind, ann in enumerate(added):
        _make_invalid(ann, kind)
    num_invalid = len(invalid) + len(added)
    first = min(invalid | {a['id'] for a in added})
    image = next(a['image_id'] for a in anns if a['id'] == first)
    return (f'{num_invalid} of {len(anns)} annotations '
            f'({100 * num_invalid / len(anns):.2f} %) of {{path}} are '
            'invalid, more than max_invalid_fraction=0.01 of a test set '
            f'(first: annotation {first} (image {image}) has ')


FAULTS = {
    'repeated_image_id': _repeat_image_id,
    'repeated_file_name': _repeat_file_name,
    'undeclared_category': _undeclared_category,
    'too_many_invalid': _too_many_invalid,
}


@pytest.mark.parametrize('fault', sorted(FAULTS))
def test_one_fault_in_a_coco_shaped_file_is_named(fault, clean, tmp_path):
    data = copy.deepcopy(clean)
    expected = FAULTS[fault](data)
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as info:
        _dataset(path)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(expected.format(path=path)), message
