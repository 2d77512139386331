import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset
from pycocotools import mask as mask_util

from mmdet_maskdiff.datasets import (FewShotCocoDataset, build_support_bank,
                                     make_synthetic_fsis)
from mmdet_maskdiff.datasets import support_bank as support_bank_module
from mmdet_maskdiff.datasets.support_bank import support_bank_metadata
from mmdet_maskdiff.datasets.synthetic_class_splits import \
    SYNTHETIC_CLASS_SPLITS
from mmdet_maskdiff.structures import SupportBank

W, H = 120, 100
BG = (200, 200, 200)
RED = (0, 0, 255)  # BGR
GREEN = (0, 255, 0)
CLASSES = ('square', 'disc', 'empty')
SQUARE = (20, 30, 40)  # x0, y0, side: pixels 20..59 x 30..69


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=list(rle['size']), counts=rle['counts'].decode())


def _square_mask():
    mask = np.zeros((H, W), np.uint8)
    x0, y0, s = SQUARE
    mask[y0:y0 + s, x0:x0 + s] = 1
    return mask


def _disc_mask(cx, cy, r):
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    return mask


def _ann(ann_id, img_id, cat_id, mask, polygon=None):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=cat_id,
        bbox=[x0, y0, int(xs.max()) + 1 - x0,
              int(ys.max()) + 1 - y0],
        area=int(mask.sum()),
        iscrowd=0,
        segmentation=polygon if polygon is not None else _rle(mask))


@pytest.fixture
def drawn(tmp_path):
    """Images 1-4: a red square (class 0) or a green disc (class 1)."""
    images, anns = [], []
    for img_id in range(1, 5):
        img = np.full((H, W, 3), BG, np.uint8)
        if img_id % 2:
            mask = _square_mask()
            img[mask > 0] = RED
            anns.append(_ann(len(anns) + 1, img_id, 1, mask))
        else:
            mask = _disc_mask(60 + img_id, 50, 20)
            img[mask > 0] = GREEN
            anns.append(_ann(len(anns) + 1, img_id, 2, mask))
        # a second disc, as a polygon, in image 4
        if img_id == 4:
            poly = [[90, 10, 110, 10, 110, 30, 90, 30]]
            pmask = mask_util.decode(
                mask_util.merge(mask_util.frPyObjects(poly, H, W)))
            img[pmask > 0] = GREEN
            anns.append(_ann(len(anns) + 1, img_id, 2, pmask, polygon=poly))
        cv2.imwrite(str(tmp_path / f'{img_id}.png'), img)
        images.append(
            dict(id=img_id, file_name=f'{img_id}.png', width=W, height=H))
    data = dict(
        images=images,
        annotations=anns,
        categories=[
            dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)
        ])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    return tmp_path, data


def _dataset(root, ann='ann.json'):
    return FewShotCocoDataset(
        data_root=str(root),
        ann_file=ann,
        data_prefix=dict(img=''),
        classes=CLASSES,
        pipeline=[])


def test_crops_and_masks_of_a_known_shape(drawn, monkeypatch):
    root, data = drawn
    reads = []
    original_get = support_bank_module.get

    def counting_get(path, **kwargs):
        reads.append(path)
        return original_get(path, **kwargs)

    monkeypatch.setattr(support_bank_module, 'get', counting_get)
    bank = build_support_bank(_dataset(root), crop_size=30, context=0.25)
    assert len(reads) == 4 == len(set(reads))  # each image read once
    assert bank.crops.shape == (5, 3, 30, 30)
    assert bank.crops.dtype == torch.uint8
    assert bank.masks.shape == (5, 1, 30, 30)
    assert bank.masks.dtype == torch.uint8
    assert set(bank.masks.unique().tolist()) <= {0, 1}
    assert bank.labels.tolist() == [0, 1, 0, 1, 1]
    assert bank.img_ids.tolist() == [1, 2, 3, 4, 4]
    assert bank.labels.dtype == bank.img_ids.dtype == torch.int64
    assert bank.class_names == CLASSES and bank.num_classes == 3

    # the 40 px square grows by 10 px per side: 60 px -> 30 px, so the
    # square covers crop pixels 5..24 exactly
    expected = np.zeros((30, 30), np.uint8)
    expected[5:25, 5:25] = 1
    for i in (0, 2):
        assert np.array_equal(bank.masks[i, 0].numpy(), expected)
        crop = bank.crops[i].permute(1, 2, 0).numpy()
        assert (crop[6:24, 6:24] == RED).all()
        assert (crop[:4, :] == BG).all() and (crop[:, 26:] == BG).all()
    # discs: round masks (centre in, corners out), green under the mask
    for i in (1, 3, 4):
        mask = bank.masks[i, 0].numpy()
        assert mask[15, 15] == 1 and mask[0, 0] == mask[29, 29] == 0
        crop = bank.crops[i].permute(1, 2, 0).numpy()
        assert (crop[15, 15] == GREEN).all()
    # the polygon disc is a square polygon: its crop mask is a square too
    assert bank.masks[4, 0, 5:25, 5:25].all()
    assert not bank.masks[4, 0, :4].any()


def test_context_zero_fills_the_crop(drawn):
    root, _ = drawn
    bank = build_support_bank(_dataset(root), crop_size=16, context=0.0)
    assert bank.masks[0].all()  # the square fills its own box
    assert (bank.crops[0].permute(1, 2, 0) == torch.tensor(RED)).all()


def test_fixed_and_sample(drawn):
    root, _ = drawn
    bank = build_support_bank(_dataset(root), crop_size=8)
    labels = torch.tensor([1, 0, 1])
    fixed = bank.fixed(labels, 4)
    assert fixed.shape == (3, 4) and fixed.dtype == torch.long
    assert fixed[0].tolist() == [1, 3, 4, 1]  # bank order, cyclic
    assert fixed[1].tolist() == [0, 2, 0, 2]
    assert torch.equal(fixed[0], fixed[2])

    gen = torch.Generator().manual_seed(0)
    many = torch.ones(200, dtype=torch.long)
    shots = bank.sample(
        many, 2, exclude_img_ids=torch.tensor([2]), generator=gen)
    assert shots.shape == (200, 2)
    assert (bank.labels[shots] == 1).all()
    assert not (bank.img_ids[shots] == 2).any()  # query image excluded
    assert (shots[:, 0] != shots[:, 1]).all()  # distinct while possible
    assert set(shots.flatten().tolist()) == {3, 4}
    # reproducible with a generator
    again = bank.sample(
        many,
        2,
        exclude_img_ids=[2],
        generator=torch.Generator().manual_seed(0))
    assert torch.equal(shots, again)
    # more shots than instances: all of them, then repeats
    shots = bank.sample(torch.tensor([0]), 5)
    assert sorted(shots[0, :2].tolist()) == [0, 2]
    # every instance of class 0 excluded: no shot (-1), never a query
    # instance; class 1 still gets shots from the other images
    shots = bank.sample(
        torch.tensor([0, 1, 0]), 2, exclude_img_ids=[1, 3])
    assert shots[0].tolist() == shots[2].tolist() == [-1, -1]
    assert (shots[1] >= 0).all()
    assert not torch.isin(bank.img_ids[shots[1]], torch.tensor([1, 3])).any()


def test_sample_large_pool_excludes_query_images():
    num = 5000
    bank = SupportBank(
        crops=torch.zeros((num, 3, 2, 2), dtype=torch.uint8),
        masks=torch.zeros((num, 1, 2, 2), dtype=torch.uint8),
        labels=torch.zeros(num, dtype=torch.long),
        img_ids=torch.arange(num) // 2,
        num_classes=1,
        class_names=('a', ))
    excluded = torch.arange(0, 2000)
    shots = bank.sample(
        torch.zeros(300, dtype=torch.long),
        10,
        exclude_img_ids=excluded,
        generator=torch.Generator().manual_seed(1))
    assert not torch.isin(bank.img_ids[shots], excluded).any()
    assert all(len(set(row)) == 10 for row in shots.tolist())


def test_empty_support_set(drawn):
    root, _ = drawn
    bank = build_support_bank(_dataset(root), crop_size=8)
    with pytest.raises(
            ValueError, match="empty support set for class 'empty'"):
        bank.fixed(torch.tensor([0, 2]), 1)
    with pytest.raises(
            ValueError, match="empty support set for class 'empty'"):
        bank.sample(torch.tensor([2]), 1)
    assert bank.class_indices(2).numel() == 0
    assert bank.class_indices(1).tolist() == [1, 3, 4]


def test_max_per_class_is_seeded(drawn):
    root, _ = drawn
    ds = _dataset(root)
    a = build_support_bank(ds, crop_size=8, max_per_class=2, seed=3)
    b = build_support_bank(ds, crop_size=8, max_per_class=2, seed=3)
    assert a.num_per_class().tolist() == [2, 2, 0]
    assert torch.equal(a.img_ids, b.img_ids) and torch.equal(a.crops, b.crops)
    subsets = {
        tuple(
            build_support_bank(ds, crop_size=8, max_per_class=2,
                               seed=s).img_ids.tolist())
        for s in range(8)
    }
    assert len(subsets) > 1


def test_zero_area_mask_raises(drawn):
    root, data = drawn
    data['annotations'][1]['segmentation'] = _rle(np.zeros((H, W), np.uint8))
    (root / 'zero.json').write_text(json.dumps(data))
    # FewShotCocoDataset applies the same rule when loading: never reaches
    # the bank
    dataset = _dataset(root, 'zero.json')
    assert dataset._num_invalid == 1
    assert build_support_bank(dataset).img_ids.tolist() == [1, 3, 4, 4]
    # a dataset that does not check masks (mmdet's CocoDataset)
    coco = CocoDataset(
        data_root=str(root),
        ann_file='zero.json',
        data_prefix=dict(img=''),
        metainfo=dict(classes=CLASSES),
        pipeline=[])
    with pytest.raises(
            ValueError,
            match=r'instance 0 of image .*2\.png has a zero-area '
            'mask'):
        build_support_bank(coco)
    bank = build_support_bank(coco, on_invalid='skip')
    assert bank.img_ids.tolist() == [1, 3, 4, 4]
    del data['annotations'][1]['segmentation']
    (root / 'nomask.json').write_text(json.dumps(data))
    assert _dataset(root, 'nomask.json')._num_invalid == 1  # skipped too
    with pytest.raises(
            ValueError, match=r'instance 0 of image .*2\.png has '
            'no mask'):
        build_support_bank(
            CocoDataset(
                data_root=str(root),
                ann_file='nomask.json',
                data_prefix=dict(img=''),
                metainfo=dict(classes=CLASSES),
                pipeline=[]))


def test_bank_validation_and_to():
    with pytest.raises(ValueError, match='masks must have shape'):
        SupportBank(
            crops=torch.zeros((2, 3, 4, 4), dtype=torch.uint8),
            masks=torch.zeros((2, 1, 5, 5), dtype=torch.uint8),
            labels=torch.zeros(2, dtype=torch.long),
            img_ids=torch.zeros(2, dtype=torch.long),
            num_classes=1,
            class_names=('a', ))
    bank = SupportBank(
        crops=torch.zeros((0, 3, 4, 4), dtype=torch.uint8),
        masks=torch.zeros((0, 1, 4, 4), dtype=torch.uint8),
        labels=torch.zeros(0, dtype=torch.long),
        img_ids=torch.zeros(0, dtype=torch.long),
        num_classes=1,
        class_names=('a', ))
    moved = bank.to('cpu')
    assert len(moved) == 0 and moved.crop_size == 4
    with pytest.raises(ValueError, match="empty support set for class 'a'"):
        moved.fixed(torch.tensor([0]), 1)


def test_bank_of_a_k_shot_synthetic_set(tmp_path):
    paths = make_synthetic_fsis(
        str(tmp_path / 'syn'),
        num_train_images=24,
        num_test_images=2,
        shots=(2, ),
        seeds=(0, ))
    ds = FewShotCocoDataset(
        data_root=paths['root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        class_splits=SYNTHETIC_CLASS_SPLITS,
        few_shot_root='few_shot',
        num_base_shots=2,
        num_novel_shots=2,
        pipeline=[])
    bank = build_support_bank(ds, crop_size=32)
    assert len(bank) == 16
    assert bank.num_per_class().tolist() == [2] * 8
    assert (bank.masks.flatten(1).sum(1) > 20).all()
    # fixed() returns the K-shot set of each class
    fixed = bank.fixed(torch.arange(8), 2)
    assert (bank.labels[fixed] == torch.arange(8)[:, None]).all()
    assert osp.isfile(paths['train_ann'])


def test_metadata_bank_selects_what_the_real_bank_crops(drawn):
    """support_bank_metadata (no pixels, used by check_fsis_data) and
    build_support_bank hold the same instances in the same order."""
    root, _ = drawn
    for cap in (None, 1):
        real = build_support_bank(
            _dataset(root), crop_size=8, max_per_class=cap, seed=3)
        meta = support_bank_metadata(_dataset(root), max_per_class=cap, seed=3)
        assert torch.equal(real.labels, meta.labels)
        assert torch.equal(real.img_ids, meta.img_ids)
        assert meta.crops.shape[1:] == (3, 1, 1)


def test_progress_bar_counts_the_images(synthetic_data, capsys):
    """``progress=True``: one mmengine progress bar over the images read."""
    from mmdet_maskdiff.datasets import FewShotCocoDataset
    dataset = FewShotCocoDataset(
        data_root=synthetic_data['root'],
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/test/'),
        class_splits='synthetic',
        pipeline=[])
    dataset.full_init()
    num_images = len({
        i
        for i in range(len(dataset)) if dataset.get_data_info(i)['instances']
    })
    capsys.readouterr()
    build_support_bank(dataset, crop_size=8, progress=True)
    out = capsys.readouterr().out
    assert f'{num_images}/{num_images}' in out
    build_support_bank(dataset, crop_size=8)
    assert 'elapsed' not in capsys.readouterr().out  # off by default
