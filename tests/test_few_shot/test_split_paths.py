"""The seed -> split folder -> split file mapping (TFA's cocosplit layout),
which the generator, the dataset and the check all use."""
import os.path as osp

import pytest

from mmdet_maskdiff.datasets import generate_few_shot_splits
from mmdet_maskdiff.few_shot.split_paths import (few_shot_split_path,
                                                 split_folder)


def test_seed_0_is_the_root_and_seed_n_its_folder():
    assert split_folder('cocosplit', 0) == 'cocosplit'
    assert split_folder('cocosplit', 4) == osp.join('cocosplit', 'seed4')
    assert few_shot_split_path('cocosplit', 'potted plant', 5, 0) == osp.join(
        'cocosplit', 'full_box_5shot_potted plant_trainval.json')
    assert few_shot_split_path('cocosplit', 'cat', 10, 2) == osp.join(
        'cocosplit', 'seed2', 'full_box_10shot_cat_trainval.json')
    with pytest.raises(ValueError, match='seed must be >= 0, got -1'):
        few_shot_split_path('cocosplit', 'cat', 1, -1)


def test_generator_writes_where_the_mapping_says(synthetic_data, tmp_path):
    out = str(tmp_path / 'split')
    written = generate_few_shot_splits(
        synthetic_data['train_ann'], out, shots=(1, ), seeds=(0, 3),
        classes=None)
    assert written and all(osp.isfile(p) for p in written)
    folders = {osp.dirname(p) for p in written}
    assert folders == {split_folder(out, 0), split_folder(out, 3)}
