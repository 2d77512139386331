import hashlib
import importlib.util
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_util

import cv2

from mmdet_maskdiff.datasets import synthetic_easy, synthetic_hard
from mmdet_maskdiff.datasets.class_splits import get_class_splits
from mmdet_maskdiff.datasets.few_shot_splits import load_few_shot_split
from mmdet_maskdiff.datasets.synthetic_class_splits import (
    SYNTHETIC_CLASS_SPLITS, SYNTHETIC_CLASSES, SYNTHETIC_HARD_CLASS_SPLITS,
    SYNTHETIC_HARD_CLASSES, ClassStream)
from mmdet_maskdiff.datasets.synthetic_easy import EASY_STYLE, make_easy_image
from mmdet_maskdiff.datasets.synthetic_fsis import make_synthetic_fsis
from mmdet_maskdiff.datasets.synthetic_hard import make_hard_image
from mmdet_maskdiff.datasets.synthetic_shapes import draw_shape

#: digest (:func:`_digest`) of ``make_synthetic_fsis(root)`` with the default
#: arguments, recorded before the hard mode was added: the easy set must not
#: change (demo numbers and K-shot files are tied to it)
EASY_DEFAULT_DIGEST = (
    '0f4de14cedf2901ca15adc2e9cb3e5f7d8ec51b4d030f4b64364dea466193525')


def _tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _digest(root):
    """sha256 of every file under ``root`` by relative path: decoded pixels
    for PNGs (independent of the PNG encoder's settings), bytes otherwise."""
    digest = hashlib.sha256()
    for dirpath, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(names):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            if name.endswith('.png'):
                img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
                digest.update(str(img.shape).encode())
                digest.update(img.tobytes())
            else:
                with open(path, 'rb') as f:
                    digest.update(f.read())
    return digest.hexdigest()


def test_classes():
    assert len(SYNTHETIC_CLASS_SPLITS['base']) == 6
    assert len(SYNTHETIC_CLASS_SPLITS['novel']) == 2
    assert SYNTHETIC_CLASSES == (
        SYNTHETIC_CLASS_SPLITS['base'] + SYNTHETIC_CLASS_SPLITS['novel'])
    colours = {EASY_STYLE[c][0] for c in SYNTHETIC_CLASSES}
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
    assert _digest(paths['root']) == EASY_DEFAULT_DIGEST


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
        synthetic_easy, '_texture', lambda name, h, w, rng: np.full(
            (h, w, 3), 10 + 30 * SYNTHETIC_CLASSES.index(name), np.uint8))
    monkeypatch.setattr(synthetic_easy, 'blotchy_background',
                        lambda h, w, rng: np.zeros((h, w, 3), np.uint8))
    rng = np.random.default_rng(5)
    stream = ClassStream(len(SYNTHETIC_CLASSES), rng)
    overlaps = 0
    for _ in range(40):
        img, instances = make_easy_image(128, rng, stream)
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


# --------------------------------------------------------------------- #
# difficulty='hard'
# --------------------------------------------------------------------- #
def _check_annotations(data, image_size):
    """Every annotation is a valid, non-empty instance with a tight box."""
    num_classes = len(data['categories'])
    for ann in data['annotations']:
        assert 1 <= ann['category_id'] <= num_classes
        assert ann['iscrowd'] == 0
        mask = mask_util.decode(ann['segmentation'])
        assert mask.shape == (image_size, image_size)
        ys, xs = np.nonzero(mask)
        x0, y0 = xs.min(), ys.min()
        assert ann['bbox'] == [x0, y0, xs.max() + 1 - x0, ys.max() + 1 - y0]
        assert ann['area'] == mask.sum() >= 16


def test_hard_classes():
    assert len(SYNTHETIC_HARD_CLASS_SPLITS['base']) == 9
    assert len(SYNTHETIC_HARD_CLASS_SPLITS['novel']) == 3
    # the easy classes keep their split, so both sets share names
    assert set(SYNTHETIC_CLASS_SPLITS['novel']) < set(
        SYNTHETIC_HARD_CLASS_SPLITS['novel'])
    splits = get_class_splits('synthetic_hard')
    assert splits['ALL'] == SYNTHETIC_HARD_CLASSES
    assert splits['NOVEL'] == ('crescent', 'heart', 'arrow')
    for name in SYNTHETIC_HARD_CLASSES:  # every class can be drawn
        mask = draw_shape(name, 64, 64, np.array([32., 32.]), 20., 0.3)
        assert 100 < mask.sum() < 64 * 64
    with pytest.raises(ValueError, match="difficulty must be one of"):
        make_synthetic_fsis('unused', difficulty='medium')


def test_hard_set_ci_size(tmp_path):
    """Generated at CI size: valid annotations, 12 classes, 2-6 instances per
    image, objects from under 16 to over 48 px, K-shot files."""
    paths = make_synthetic_fsis(
        str(tmp_path / 'hard'),
        num_train_images=40,
        num_test_images=8,
        shots=(1, 2),
        seeds=(0, ),
        difficulty='hard')
    with open(paths['train_ann']) as f:
        train = json.load(f)
    with open(paths['test_ann']) as f:
        test = json.load(f)
    with open(paths['manifest']) as f:
        assert json.load(f)['difficulty'] == 'hard'
    assert [c['name']
            for c in train['categories']] == list(SYNTHETIC_HARD_CLASSES)
    assert len(train['images']) == 40 and len(test['images']) == 8
    _check_annotations(train, 128)
    _check_annotations(test, 128)
    per_image = np.bincount([a['image_id'] for a in train['annotations']])[1:]
    assert per_image.min() >= 1 and per_image.max() <= 6
    assert per_image.mean() >= 3
    counts = np.bincount([a['category_id'] for a in train['annotations']],
                         minlength=13)[1:]
    assert counts.min() >= 2  # enough for K = 2, balanced by the stream
    sizes = [max(a['bbox'][2:]) for a in train['annotations']]
    assert min(sizes) < 16 and max(sizes) > 48  # scale variation
    for name in SYNTHETIC_HARD_CLASSES:
        data = load_few_shot_split(paths['few_shot_root'], name, 2, 0)
        assert len(data['annotations']) == 2


def _hidden_fractions(make_image, num_classes):
    """Render 40 images; the hidden fraction of every instance's shape."""
    rng = np.random.default_rng(3)
    stream = ClassStream(num_classes, rng)
    hidden = []
    for _ in range(40):
        _, instances = make_image(128, rng, stream)
        hidden += [1 - i['mask'].sum() / i['full_area'] for i in instances]
    return np.array(hidden)


def test_hard_masks_are_the_visible_painted_pixels(monkeypatch):
    """With a flat colour per class and black stuff (background, clutter,
    occluding bars) and no blur, every mask must be exactly the pixels of its
    colour: occluded parts (by later instances or by bars) are removed."""
    monkeypatch.setattr(
        synthetic_hard, '_hard_instance_texture', lambda label, h, w, rng: np.
        full((h, w, 3), 10 + 20 * label, np.uint8))
    monkeypatch.setattr(synthetic_hard, '_stuff_texture',
                        lambda h, w, rng: np.zeros((h, w, 3), np.uint8))
    monkeypatch.setattr(synthetic_hard, 'blotchy_background',
                        lambda h, w, rng: np.zeros((h, w, 3), np.uint8))
    monkeypatch.setattr(synthetic_hard, '_hard_finish', lambda img, rng: img)
    rng = np.random.default_rng(5)
    stream = ClassStream(len(SYNTHETIC_HARD_CLASSES), rng)
    visible_fractions = []
    for _ in range(40):
        img, instances = make_hard_image(128, rng, stream)
        covered = np.zeros((128, 128), np.int32)
        for inst in instances:
            mask = inst['mask'].astype(bool)
            covered += mask
            assert (img[mask] == 10 + 20 * inst['label']).all()
            assert mask.sum() >= max(0.35 * inst['full_area'], 16)
            visible_fractions.append(mask.sum() / inst['full_area'])
        assert covered.max() <= 1  # visible masks do not overlap
        assert np.array_equal(img[..., 0] > 0, covered > 0)
    visible_fractions = np.array(visible_fractions)
    # occlusion is common and strong: visible masks smaller than the shapes
    assert (visible_fractions < 1).mean() > 0.3
    assert visible_fractions.min() < 0.6


def test_hard_occludes_more_than_easy():
    easy = _hidden_fractions(make_easy_image, len(SYNTHETIC_CLASSES))
    hard = _hidden_fractions(make_hard_image, len(SYNTHETIC_HARD_CLASSES))
    assert len(hard) > len(easy)  # more instances per image
    assert (hard > 0).mean() > 1.5 * (easy > 0).mean()  # more often
    assert hard.mean() > 2 * easy.mean()  # and more of each shape
    assert hard.max() > 0.6 >= easy.max()


def test_hard_deterministic(tmp_path):
    kwargs = dict(
        num_train_images=12, num_test_images=3, shots=(1, ), seeds=(0, ))
    a = make_synthetic_fsis(str(tmp_path / 'a'), difficulty='hard', **kwargs)
    make_synthetic_fsis(str(tmp_path / 'b'), difficulty='hard', **kwargs)
    assert _tree(tmp_path / 'a') == _tree(tmp_path / 'b')
    easy = make_synthetic_fsis(str(tmp_path / 'c'), **kwargs)
    with open(easy['manifest']) as f:
        assert 'difficulty' not in json.load(f)
    assert _tree(tmp_path / 'c') != _tree(tmp_path / 'a')
    # the same folder with the other difficulty is another dataset
    with pytest.raises(FileExistsError, match='overwrite=True'):
        make_synthetic_fsis(a['root'], **kwargs)


def test_cli_hard(tmp_path, capsys, monkeypatch):
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    path = osp.join(root, 'tools', 'dataset_converters',
                    'make_synthetic_fsis.py')
    spec = importlib.util.spec_from_file_location('make_synthetic_cli', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setattr(sys, 'argv', [
        path,
        str(tmp_path / 'cli'), '--num-train', '12', '--num-test', '2',
        '--shots', '1', '--few-shot-seeds', '0', '--difficulty', 'hard'
    ])
    cli.main()
    out = capsys.readouterr().out
    assert '(hard)' in out and 'arrow*=' in out and 'bolt=' in out
