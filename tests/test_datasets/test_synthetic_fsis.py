import importlib.util
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_util

from mmdet_maskdiff.datasets import synthetic_fsis
from mmdet_maskdiff.datasets.few_shot_splits import load_few_shot_split
from mmdet_maskdiff.datasets.synthetic_fsis import (SYNTHETIC_CLASS_SPLITS,
                                                    SYNTHETIC_CLASSES,
                                                    make_synthetic_fsis)


def _tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def test_classes():
    assert len(SYNTHETIC_CLASS_SPLITS['base']) == 6
    assert len(SYNTHETIC_CLASS_SPLITS['novel']) == 2
    assert SYNTHETIC_CLASSES == (
        SYNTHETIC_CLASS_SPLITS['base'] + SYNTHETIC_CLASS_SPLITS['novel'])
    colours = {synthetic_fsis._STYLE[c][0] for c in SYNTHETIC_CLASSES}
    assert len(colours) == len(SYNTHETIC_CLASSES)


def test_default_size_is_complete(tmp_path):
    paths = make_synthetic_fsis(str(tmp_path / 'syn'))
    with open(paths['train_ann']) as f:
        train = json.load(f)
    with open(paths['test_ann']) as f:
        test = json.load(f)
    assert len(train['images']) == 300 and len(test['images']) == 80
    assert [c['name'] for c in train['categories']] == list(SYNTHETIC_CLASSES)
    counts = np.bincount([a['category_id'] for a in train['annotations']],
                         minlength=9)[1:]
    assert counts.min() >= 10  # enough for K = 10
    assert counts.max() - counts.min() <= 8  # balanced
    per_image = np.bincount([a['image_id'] for a in train['annotations']])[1:]
    assert per_image.min() >= 1 and per_image.max() <= 4
    assert len(os.listdir(paths['train_img_dir'])) == 300
    for seed in (0, 1, 2):
        for name in SYNTHETIC_CLASSES:
            data = load_few_shot_split(paths['few_shot_root'], name, 10, seed)
            assert len(data['annotations']) == 10
    sizes = []
    for ann in train['annotations'][:200]:
        mask = mask_util.decode(ann['segmentation'])
        assert mask.shape == (128, 128)
        ys, xs = np.nonzero(mask)
        x0, y0 = xs.min(), ys.min()
        assert ann['bbox'] == [x0, y0, xs.max() + 1 - x0, ys.max() + 1 - y0]
        assert ann['area'] == mask.sum()
        sizes.append(max(ann['bbox'][2:]))
    assert 14 <= min(sizes) and max(sizes) <= 62


def test_deterministic_and_reused(tmp_path):
    kwargs = dict(
        num_train_images=12, num_test_images=3, shots=(1, 2), seeds=(0, 1))
    a = make_synthetic_fsis(str(tmp_path / 'a'), **kwargs)
    make_synthetic_fsis(str(tmp_path / 'b'), **kwargs)
    first = _tree(tmp_path / 'a')
    assert first == _tree(tmp_path / 'b')
    assert len([k for k in first if k.endswith('.png')]) == 15
    other = make_synthetic_fsis(str(tmp_path / 'c'), seed=1, **kwargs)
    assert _tree(other['root']) != first
    # same arguments: nothing is rewritten
    stamp = os.stat(a['train_ann']).st_mtime_ns
    make_synthetic_fsis(str(tmp_path / 'a'), **kwargs)
    assert os.stat(a['train_ann']).st_mtime_ns == stamp
    # other arguments: refused unless overwrite
    with pytest.raises(FileExistsError, match='overwrite=True'):
        make_synthetic_fsis(
            str(tmp_path / 'a'),
            num_train_images=13,
            num_test_images=3,
            shots=(1, ),
            seeds=(0, ))
    make_synthetic_fsis(
        str(tmp_path / 'a'),
        num_train_images=13,
        num_test_images=3,
        shots=(1, ),
        seeds=(0, ),
        overwrite=True)
    assert len(os.listdir(osp.join(tmp_path, 'a', 'images', 'train'))) == 13
    assert not osp.exists(osp.join(tmp_path, 'a', 'few_shot',
                                   'seed1'))  # stale files removed


def test_masks_are_the_painted_pixels(monkeypatch):
    """With flat colours per class, masks must match the image exactly."""
    monkeypatch.setattr(
        synthetic_fsis, '_texture', lambda name, h, w, rng: np.full(
            (h, w, 3), 10 + 30 * SYNTHETIC_CLASSES.index(name), np.uint8))
    monkeypatch.setattr(synthetic_fsis, '_background',
                        lambda h, w, rng: np.zeros((h, w, 3), np.uint8))
    rng = np.random.default_rng(5)
    stream = synthetic_fsis._ClassStream(len(SYNTHETIC_CLASSES), rng)
    overlaps = 0
    for _ in range(40):
        img, instances = synthetic_fsis._make_image(128, rng, stream)
        covered = np.zeros((128, 128), np.int32)
        for inst in instances:
            value = 10 + 30 * inst['label']
            mask = inst['mask'].astype(bool)
            covered += mask
            assert (img[mask] == value).all()
            overlaps += int(inst['full_area'] > mask.sum())
            assert mask.sum() >= 0.6 * inst['full_area']
        assert covered.max() <= 1  # visible masks do not overlap
        assert np.array_equal(img[..., 0] > 0, covered > 0)
    assert overlaps > 0  # occlusion happens and is handled


def test_cli(tmp_path, capsys, monkeypatch):
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    path = osp.join(root, 'tools', 'dataset_converters',
                    'make_synthetic_fsis.py')
    spec = importlib.util.spec_from_file_location('make_synthetic_cli', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    monkeypatch.setattr(sys, 'argv', [
        path, out, '--num-train', '10', '--num-test', '2', '--shots', '1',
        '--few-shot-seeds', '0'
    ])
    cli.main()
    assert 'crescent*=' in capsys.readouterr().out
    monkeypatch.setattr(sys, 'argv', [path, out, '--num-train', '11'])
    with pytest.raises(SystemExit):
        cli.run_cli(cli.main)
    assert '--overwrite' in capsys.readouterr().err
