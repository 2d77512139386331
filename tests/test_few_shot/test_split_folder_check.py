"""The one split-folder check: a seed whose K-shot files are not on disk is
named as a folder, with one message, by every path that checks it (the
config check of the tools and FewShotRunner, the dataset, the support set
of SupportSetHook)."""
import os.path as osp

import pytest
from mmengine.config import Config

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.datasets import FewShotCocoDataset
from mmdet_maskdiff.engine.hooks import SupportSetHook
from mmdet_maskdiff.engine.runner import build_runner
from mmdet_maskdiff.few_shot.sample import apply_few_shot_seed
from mmdet_maskdiff.few_shot.split_folder_check import (check_split_folders,
                                                        split_folder_problem)
from mmdet_maskdiff.testing.small_scale import cpu_scale_options
from mmdet_maskdiff.utils import InputError
from _sample_helpers import REPO, STAGE_2, synthetic_cfg
from _tool_helpers import describe, run_tool_here


def _expected(folder, seed, shots, where='no such folder'):
    return (f'few-shot split folder {folder} (seed={seed}, K={shots}): '
            f'{where}; make it with tools/dataset_converters/'
            f'prepare_few_shot_splits.py --seeds {seed} or copy TFA\'s '
            'cocosplit (docs/data.md)')


def test_split_folder_problem(tmp_path):
    root = str(tmp_path)
    # seed 0 reads the root itself, seed N its seedN folder
    assert split_folder_problem(root, 3, [1]) == _expected(
        osp.join(root, 'seed3'), 3, 1)
    assert split_folder_problem(root, 0, [0, 2, 1]) == _expected(
        root, 0, 1, 'no full_box_1shot_*_trainval.json in it')
    (tmp_path / 'full_box_1shot_cat_trainval.json').write_text('{}')
    assert split_folder_problem(root, 0, [2, 1]) == _expected(
        root, 0, 2, 'no full_box_2shot_*_trainval.json in it')
    assert split_folder_problem(root, 0, [1, 0]) is None
    assert split_folder_problem(root, 0, []) is None  # no shots: nothing
    # a remote root: the dataset reports its missing files
    assert split_folder_problem('s3://bucket/split', 3, [1]) is None


def test_one_message_from_every_path(synthetic_data, tmp_path):
    """Seed 7 has no split files (the synthetic data has seeds 0 and 1)."""
    folder = osp.join(synthetic_data['few_shot_root'], 'seed7')
    message = _expected(folder, 7, 1)
    # the config check (tools/train.py, tools/test.py) and FewShotRunner
    cfg = synthetic_cfg(STAGE_2, synthetic_data, 7, str(tmp_path / 'w'))
    apply_few_shot_seed(cfg)
    with pytest.raises(InputError) as info:
        check_split_folders(cfg)
    assert str(info.value) == message
    with pytest.raises(InputError) as info:
        build_runner(cfg)
    assert str(info.value) == message
    # the dataset
    k_shot = dict(
        type='FewShotCocoDataset',
        data_root=synthetic_data['root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        few_shot_root=synthetic_data['few_shot_root'],
        class_splits='synthetic',
        num_novel_shots=1,
        num_base_shots=1,
        seed=7,
        pipeline=[])
    kwargs = dict(k_shot, lazy_init=True)
    kwargs.pop('type')
    with pytest.raises(FileNotFoundError) as info:
        FewShotCocoDataset(**kwargs).full_init()
    assert str(info.value) == message
    # SupportSetHook's support set
    with pytest.raises(FileNotFoundError) as info:
        SupportSetHook(dataset=k_shot).test_bank()
    assert str(info.value) == message
    # the command line: the message, before any model or dataset is built
    options = ['few_shot.seed=7', 'load_from=None'] + [
        f'{k}={v}' for k, v in cpu_scale_options(
            Config.fromfile(osp.join(REPO, STAGE_2)),
            synthetic_data['root'], load_from=None).items()
        if k.endswith(('few_shot_root', 'data_root'))
    ]
    proc = run_tool_here('train.py',
                         [osp.join(REPO, STAGE_2), '--cfg-options'] + options,
                         cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == f'error: {message}', describe(proc)


def test_seed_without_files_of_its_k(synthetic_data, tmp_path):
    """Seed 1 exists, with no 3-shot files."""
    cfg = synthetic_cfg(STAGE_2, synthetic_data, 1, str(tmp_path))
    apply_few_shot_seed(cfg)
    check_split_folders(cfg)
    cfg.train_dataloader.dataset.datasets[1].num_novel_shots = 3
    folder = osp.join(synthetic_data['few_shot_root'], 'seed1')
    with pytest.raises(InputError) as info:
        check_split_folders(cfg)
    assert str(info.value) == _expected(
        folder, 1, 3, 'no full_box_3shot_*_trainval.json in it')
