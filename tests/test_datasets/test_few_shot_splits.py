import importlib.util
import json
import os
import os.path as osp
import sys

import pytest

from mmdet_maskdiff.datasets.few_shot_splits import (generate_few_shot_splits,
                                                     load_few_shot_split)
from mmdet_maskdiff.few_shot.split_paths import few_shot_split_path

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CATEGORIES = [
    dict(id=3, name='cat', supercategory='animal'),
    dict(id=11, name='potted plant', supercategory='furniture'),
    dict(id=7, name='dog', supercategory='animal'),
]


def _source(num_images=12):
    """Images with 0-3 instances of each class; crowd and zero-area extras."""
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append(
            dict(id=100 + i, file_name=f'{i:04d}.jpg', width=64, height=48))
        for cat in CATEGORIES:
            if cat['name'] == 'dog' and i > 8:
                continue  # dog: the rarest class
            for j in range((i * cat['id'] + j0(cat)) % 4):
                x = 2 + 10 * j
                anns.append(
                    dict(
                        id=len(anns) + 1,
                        image_id=100 + i,
                        category_id=cat['id'],
                        bbox=[x, 4, 8, 9],
                        area=72,
                        iscrowd=0,
                        segmentation=[[x, 4, x + 8, 4, x + 8, 13, x, 13]]))
    # invalid candidates: never sampled
    anns.append(
        dict(
            id=9001,
            image_id=101,
            category_id=3,
            bbox=[0, 0, 40, 40],
            area=1600,
            iscrowd=1,
            segmentation=dict(size=[48, 64], counts='0')))
    anns.append(
        dict(
            id=9002,
            image_id=101,
            category_id=3,
            bbox=[1, 1, 5, 5],
            area=0,
            iscrowd=0,
            segmentation=[[1, 1, 6, 1, 6, 6]]))
    anns.append(
        dict(
            id=9003,
            image_id=102,
            category_id=3,
            bbox=[1, 1, 0, 5],
            area=3,
            iscrowd=0,
            segmentation=[[1, 1, 6, 1, 6, 6]]))
    return dict(
        info=dict(description='tiny'),
        licenses=[dict(id=1, name='test')],
        images=images,
        annotations=anns,
        categories=CATEGORIES)


def j0(cat):
    return {3: 1, 11: 2, 7: 0}[cat['id']]


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(_source()))
    return str(path)


def _read_tree(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def test_split_files_are_exact_and_nested(source_file, tmp_path):
    out = str(tmp_path / 'split')
    shots, seeds = (1, 2, 3, 5), (0, 1, 2)
    paths = generate_few_shot_splits(source_file, out, shots, seeds)
    assert len(paths) == len(shots) * len(seeds) * len(CATEGORIES)
    source = _source()
    by_id = {a['id']: a for a in source['annotations']}
    assert osp.isfile(
        osp.join(out, 'full_box_2shot_potted plant_trainval.json'))
    assert osp.isfile(
        osp.join(out, 'seed2', 'full_box_5shot_dog_trainval.json'))
    assert not osp.exists(osp.join(out, 'seed0'))
    for seed in seeds:
        for cat in CATEGORIES:
            previous = set()
            for k in shots:
                data = load_few_shot_split(out, cat['name'], k, seed)
                anns = data['annotations']
                assert len(anns) == k
                ids = [a['id'] for a in anns]
                assert len(set(ids)) == k
                for ann in anns:
                    assert ann['category_id'] == cat['id']
                    assert not ann['iscrowd'] and ann['area'] > 0
                    assert ann == by_id[ann['id']]  # segmentation kept
                assert {img['id']
                        for img in data['images']
                        } == {a['image_id']
                              for a in anns}
                assert data['categories'] == CATEGORIES
                assert data['info'] == source['info']
                assert data['licenses'] == source['licenses']
                assert previous <= set(ids)
                previous = set(ids)
    # different seeds give different draws
    draws = {
        seed: [
            a['id']
            for a in load_few_shot_split(out, 'cat', 5, seed)['annotations']
        ]
        for seed in seeds
    }
    assert len({tuple(sorted(d)) for d in draws.values()}) > 1


def test_split_files_are_deterministic(source_file, tmp_path):
    generate_few_shot_splits(source_file, str(tmp_path / 'a'), (1, 2, 3),
                             (0, 4))
    generate_few_shot_splits(source_file, str(tmp_path / 'b'), (1, 2, 3),
                             (0, 4))
    first, second = _read_tree(tmp_path / 'a'), _read_tree(tmp_path / 'b')
    assert first and first == second
    # a K-shot set does not depend on the other K values requested
    generate_few_shot_splits(source_file, str(tmp_path / 'c'), (2, ), (4, ))
    name = osp.join('seed4', 'full_box_2shot_dog_trainval.json')
    assert _read_tree(tmp_path / 'c')[name] == first[name]


def test_too_few_instances(source_file, tmp_path):
    out = tmp_path / 'split'
    valid = [
        a for a in _source()['annotations']
        if a['category_id'] == 7 and a['id'] < 9000
    ]
    k = len(valid) + 1
    with pytest.raises(
            ValueError, match=f"class 'dog' has {len(valid)} valid .*K={k}"):
        generate_few_shot_splits(source_file, str(out), (1, k), (0, ))
    assert not out.exists()  # nothing written
    with pytest.raises(ValueError, match="class 'horse' is not a category"):
        generate_few_shot_splits(
            source_file, str(out), (1, ), (0, ), classes=['horse'])


def test_load_errors(source_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='full_box_3shot_cat'):
        load_few_shot_split(str(tmp_path), 'cat', 3, 0)
    with pytest.raises(FileNotFoundError, match='seed5'):
        load_few_shot_split(str(tmp_path), 'cat', 3, 5)
    bad = few_shot_split_path(str(tmp_path), 'cat', 1, 0)
    with open(bad, 'w') as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match='full_box_1shot_cat.*not valid json'):
        load_few_shot_split(str(tmp_path), 'cat', 1, 0)
    with open(bad, 'w') as f:
        json.dump(dict(images=[], categories=[]), f)
    with pytest.raises(ValueError, match="full_box_1shot_cat.*'annotations'"):
        load_few_shot_split(str(tmp_path), 'cat', 1, 0)


def test_reads_tfa_cocosplit_names(tmp_path):
    """TFA: seed 0 at the root, seedN/ below, class names with spaces."""
    root = tmp_path / 'cocosplit'
    (root / 'seed1').mkdir(parents=True)
    for folder, ann_id in ((root, 5), (root / 'seed1', 6)):
        data = dict(
            info={},
            licenses=[],
            images=[
                dict(
                    id=42,
                    file_name='COCO_train2014_000000000042.jpg',
                    width=64,
                    height=48)
            ],
            annotations=[
                dict(
                    id=ann_id,
                    image_id=42,
                    category_id=11,
                    bbox=[1, 1, 9, 9],
                    area=81,
                    iscrowd=0,
                    segmentation=[[1, 1, 10, 1, 10, 10]])
            ],
            categories=CATEGORIES)
        (folder / 'full_box_1shot_potted plant_trainval.json').write_text(
            json.dumps(data))
    assert load_few_shot_split(str(root), 'potted plant', 1,
                               0)['annotations'][0]['id'] == 5
    assert load_few_shot_split(str(root), 'potted plant', 1,
                               1)['annotations'][0]['id'] == 6


def test_cli(source_file, tmp_path, monkeypatch, capsys):
    path = osp.join(ROOT, 'tools', 'dataset_converters',
                    'prepare_few_shot_splits.py')
    spec = importlib.util.spec_from_file_location('prepare_splits_cli', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.parse_seeds(['0-2', '5']) == [0, 1, 2, 5]
    out = str(tmp_path / 'cli')
    monkeypatch.setattr(sys, 'argv', [
        path, source_file, out, '--shots', '1', '2', '--seeds', '0-1',
        '--classes', 'potted plant'
    ])
    cli.main()
    assert 'wrote 4 split files' in capsys.readouterr().out
    assert osp.isfile(
        osp.join(out, 'seed1', 'full_box_2shot_potted plant_trainval.json'))
    monkeypatch.setattr(sys, 'argv', [path, source_file, out, '--shots', '99'])
    with pytest.raises(SystemExit):
        cli.run_cli(cli.main)
    assert 'fewer than K=99' in capsys.readouterr().err
