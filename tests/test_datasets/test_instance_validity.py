"""One instance-validity rule: the split generator draws exactly what
FewShotCocoDataset accepts, in K-shot mode and from the main file."""
import json
import re

import pytest

from mmdet_maskdiff.datasets import (FewShotCocoDataset,
                                     generate_few_shot_splits)
from mmdet_maskdiff.few_shot.split_paths import few_shot_split_path
from mmdet_maskdiff.datasets.instance_validity import (instance_problem,
                                                       is_valid_instance,
                                                       mask_problem)

W, H = 64, 48
SPLITS = dict(base=('dog', ), novel=('cat', ))
CATEGORIES = [dict(id=7, name='dog'), dict(id=3, name='cat')]


def _ann(ann_id=1, img_id=1, cat_id=3, bbox=(2, 4, 8, 9), **change):
    """A box annotation whose polygon follows its box (at least 1 px wide);
    ``change`` replaces fields (``bbox=None`` removes the box)."""
    x, y, w, h = bbox if bbox is not None else (2, 4, 8, 9)
    w = w if w == w else 8  # NaN: any polygon, the box fails first
    right = x + max(w, 1)
    ann = dict(
        id=ann_id,
        image_id=img_id,
        category_id=cat_id,
        bbox=list(bbox) if bbox is not None else None,
        area=max(w * h, 1),
        iscrowd=0,
        segmentation=[[x, y, right, y, right, y + h, x, y + h]])
    ann.update(change)
    return ann


# (change, the phrase of the problem or None when valid)
CASES = {
    'plain': (dict(), None),
    'half_pixel_wide': (dict(bbox=(2, 4, 0.5, 9)), 'degenerate bbox'),
    'half_pixel_high': (dict(bbox=(2, 4, 8, 0.5)), 'degenerate bbox'),
    'one_pixel_wide': (dict(bbox=(2, 4, 1, 9)), None),
    'zero_width': (dict(bbox=(2, 4, 0, 9)), 'degenerate bbox'),
    'overhang_within_tolerance': (dict(bbox=(-1, 4, 8, 9)), None),
    'right_edge_within_tolerance': (dict(bbox=(57, 4, 8, 9)), None),
    'outside': (dict(bbox=(60, 4, 8, 9)), 'outside the 64x48 image'),
    # within the tolerance but not overlapping the image (mmdet drops it)
    'left_of_the_image': (dict(bbox=(-1, 4, 1, 9)), 'outside the 64x48'),
    'right_of_the_image': (dict(bbox=(64, 4, 1, 9)), 'outside the 64x48'),
    'zero_area': (dict(area=0), 'zero area'),
    'missing_area': (dict(area=None), 'zero area'),
    'non_finite': (dict(bbox=(2, 4, float('nan'), 9)), 'non-finite'),
    'no_bbox': (dict(bbox=None), 'no valid bbox'),
    'zero_area_mask':
    (dict(segmentation=[[5, 5, 5, 5, 5, 5]]), 'zero-area mask'),
    'polygon_outside':
    (dict(segmentation=[[2, 4, 90, 4, 90, 13]]), 'polygon outside'),
    'rle_other_size':
    (dict(segmentation=dict(size=[10, 10], counts='0')), 'RLE of size'),
    # every stage loads masks, and a shot needs one (issue 20)
    'empty_mask': (dict(segmentation=[]), r'an empty segmentation \(\[\]\)'),
    'no_mask': (dict(segmentation=None), 'has no segmentation'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_rule(case):
    change, phrase = CASES[case]
    ann = _ann(**change)
    problem = instance_problem(ann, W, H)
    if phrase is None:
        assert problem is None
        assert is_valid_instance(ann, W, H)
    else:
        assert re.search(phrase, problem), problem
        assert not is_valid_instance(ann, W, H)


def test_crowd_and_mask_switch():
    crowd = _ann(iscrowd=1)
    assert instance_problem(crowd, W, H) is None  # kept as an ignored region
    assert not is_valid_instance(crowd, W, H)  # never a shot
    bad_mask = _ann(segmentation=[[5, 5, 5, 5, 5, 5]])
    assert instance_problem(bad_mask, W, H, check_mask=False) is None
    box_only = _ann(segmentation=[])  # for a caller that loads no masks
    assert instance_problem(box_only, W, H, check_mask=False) is None
    assert mask_problem([[5, 5, 5, 5, 5, 5]], W, H) == 'has a zero-area mask'
    assert mask_problem(dict(size=[H, W], counts=[0, H * W]), W, H) is None


def _source(tmp_path, anns):
    images = [
        dict(id=i, file_name=f'{i}.jpg', width=W, height=H)
        for i in range(1, 4)
    ]
    data = dict(images=images, annotations=anns, categories=CATEGORIES)
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(data))
    return str(path)


def _dataset(ann_file, **kwargs):
    return FewShotCocoDataset(
        ann_file=ann_file,
        classes='ALL',
        class_splits=SPLITS,
        data_prefix=dict(img=''),
        pipeline=[],
        **kwargs)


def _widths(dataset):
    return [
        inst['bbox'][2] - inst['bbox'][0] for i in range(len(dataset))
        for inst in dataset.get_data_info(i)['instances']
    ]


def test_generated_splits_always_load(tmp_path):
    """3 cat instances, one 0.5 px wide: every generated split of seeds 0-9
    loads, and the thin box is never drawn."""
    anns = [
        _ann(1, 1, 3, (2, 4, 8, 9)),
        _ann(2, 2, 3, (10, 4, 0.5, 9)),
        _ann(3, 3, 3, (20, 4, 8, 9)),
        _ann(4, 1, 7, (30, 4, 8, 9)),
        _ann(5, 2, 7, (30, 4, 8, 9)),
    ]
    source = _source(tmp_path, anns)
    root = str(tmp_path / 'split')
    generate_few_shot_splits(source, root, shots=(1, 2), seeds=range(10))
    for seed in range(10):
        for k in (1, 2):
            path = few_shot_split_path(root, 'cat', k, seed)
            with open(path) as f:
                assert 2 not in [a['id'] for a in json.load(f)['annotations']]
            dataset = _dataset(
                source,
                few_shot_root=root,
                num_base_shots=k,
                num_novel_shots=k,
                seed=seed)
            assert len(_widths(dataset)) == 2 * k
            assert min(_widths(dataset)) >= 1
    # the main-file loader skips the same annotation
    full = _dataset(source)
    assert full._num_invalid == 1 and sorted(_widths(full)) == [8] * 4


@pytest.mark.parametrize('case', sorted(CASES))
def test_generator_and_loaders_agree(case, tmp_path):
    """For each edge case: the generator draws it, the K-shot loader accepts
    it and the main-file loader keeps it — all or none."""
    change, phrase = CASES[case]
    candidate = _ann(1, 1, 3, **change)
    source = _source(tmp_path, [candidate, _ann(2, 2, 7, (30, 4, 8, 9))])
    root = str(tmp_path / 'split')
    full = _dataset(source)
    assert full._num_invalid == (phrase is not None)
    if phrase is not None:
        with pytest.raises(ValueError, match="class 'cat' has 0 valid"):
            generate_few_shot_splits(source, root, shots=(1, ), seeds=(0, ))
        # a K-shot file holding it anyway (e.g. hand-made) is refused
        path = few_shot_split_path(root, 'cat', 1, 0)
        generate_few_shot_splits(
            source, root, shots=(1, ), seeds=(0, ), classes=['dog'])
        with open(path, 'w') as f:
            json.dump(
                dict(
                    images=[dict(id=1, file_name='1.jpg', width=W, height=H)],
                    annotations=[candidate],
                    categories=CATEGORIES), f)
        with pytest.raises(ValueError, match=phrase):
            _dataset(
                source,
                few_shot_root=root,
                num_base_shots=1,
                num_novel_shots=1)
    else:
        generate_few_shot_splits(source, root, shots=(1, ), seeds=(0, ))
        dataset = _dataset(
            source, few_shot_root=root, num_base_shots=1, num_novel_shots=1)
        assert len(_widths(dataset)) == 2
