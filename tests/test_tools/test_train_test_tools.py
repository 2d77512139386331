"""tools/train.py and tools/test.py end to end (``--launcher none``) on a tiny
mmdet Mask R-CNN and the synthetic dataset: train two iterations, evaluate
the checkpoint (bbox + segm), resume to four iterations."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from _tool_helpers import (TINY_CONFIG, describe, run_tool, scalar_metrics,
                           tool_env)

from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def trained(synthetic_data, tmp_path_factory):
    """Two iterations of tools/train.py; returns (work_dir, env, cwd)."""
    cwd = str(tmp_path_factory.mktemp('train_tools'))
    work_dir = osp.join(cwd, 'work_dir')
    env = tool_env(synthetic_data['root'])
    proc = run_tool(
        'train.py', [TINY_CONFIG, '--work-dir', work_dir], cwd, env=env)
    assert proc.returncode == 0, describe(proc)
    assert 'Iter(train) [2/2]' in proc.stdout + proc.stderr, describe(proc)
    return work_dir, env, cwd


def test_train_writes_checkpoint(trained):
    work_dir, _, _ = trained
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    assert osp.isfile(osp.join(work_dir, 'last_checkpoint'))
    # the config actually used is saved next to the checkpoints
    assert osp.isfile(osp.join(work_dir, 'tiny_mask_rcnn.py'))


def assert_same(loaded, reference, where='checkpoint'):
    """``loaded`` equals ``reference``: containers item by item, tensors and
    arrays exactly, other objects by their attributes."""
    assert type(loaded) is type(reference), where
    if isinstance(reference, dict):
        assert list(loaded) == list(reference), where
        for key in reference:
            assert_same(loaded[key], reference[key], f'{where}[{key!r}]')
    elif isinstance(reference, (list, tuple)):
        assert len(loaded) == len(reference), where
        for i, (a, b) in enumerate(zip(loaded, reference)):
            assert_same(a, b, f'{where}[{i}]')
    elif isinstance(reference, torch.Tensor):
        assert torch.equal(loaded, reference), where
    elif isinstance(reference, np.ndarray):
        assert np.array_equal(loaded, reference), where
    elif hasattr(reference, '__dict__') and not callable(reference):
        assert_same(vars(loaded), vars(reference), where)
    else:
        assert loaded == reference, where


def test_checkpoint_loads_weights_only_with_the_allow_list(trained):
    """A checkpoint of tools/train.py holds, besides tensors, the globals of
    utils/safe_checkpoint.py's allow-list: torch's own weights-only load
    refuses it (mmengine 0.10.7 on torch >= 2.6 without the package), the
    package's loader reads all of it, as a full unpickling does (test.py and
    --resume below go through that loader too)."""
    ckpt = osp.join(trained[0], 'iter_2.pth')
    core = 'numpy._core' if hasattr(np, '_core') else 'numpy.core'
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(
        ckpt)) == [
            'builtins.getattr',
            'mmengine.logging.history_buffer.HistoryBuffer',
            f'{core}.multiarray._reconstruct', f'{core}.multiarray.scalar',
            'numpy.dtype', 'numpy.ndarray'
        ]
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)
    # the file was written by this test run: a full unpickling is the
    # reference
    assert_same(
        load_checkpoint_file(ckpt), torch.load(ckpt, weights_only=False))


def test_test_tool_loads_checkpoint_and_reports_bbox_segm(trained):
    work_dir, env, cwd = trained
    test_dir = osp.join(cwd, 'test_dir')
    proc = run_tool(
        'test.py', [
            TINY_CONFIG,
            osp.join(work_dir, 'iter_2.pth'), '--work-dir', test_dir
        ],
        cwd,
        env=env)
    output = proc.stdout + proc.stderr
    assert 'UnpicklingError' not in output, describe(proc)
    assert proc.returncode == 0, describe(proc)
    assert 'Load checkpoint from' in output, describe(proc)
    metrics = scalar_metrics(test_dir)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
                'coco/segm_mAP_50'):
        assert key in metrics, sorted(metrics)
        assert -1.0 <= metrics[key] <= 1.0


def test_test_tool_with_oracle_boxes(trained):
    """``--cfg-options test_cfg.type=OracleBoxTestLoop`` turns any test run
    into an oracle-box run: the boxes are the ground truth, so box AP is 1
    whatever the (two-iteration) detector would have found."""
    work_dir, env, cwd = trained
    test_dir = osp.join(cwd, 'oracle_dir')
    proc = run_tool(
        'test.py', [
            TINY_CONFIG,
            osp.join(work_dir, 'iter_2.pth'), '--work-dir', test_dir,
            '--cfg-options', 'test_cfg.type=OracleBoxTestLoop'
        ],
        cwd,
        env=env)
    assert proc.returncode == 0, describe(proc)
    metrics = scalar_metrics(test_dir)
    assert metrics['coco/bbox_mAP'] == 1.0
    assert 0 <= metrics['coco/segm_mAP'] < 1.0


def test_resume_continues_from_last_checkpoint(trained):
    work_dir, env, cwd = trained
    proc = run_tool(
        'train.py', [
            TINY_CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options',
            'train_cfg.max_iters=4'
        ],
        cwd,
        env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert 'UnpicklingError' not in output
    assert 'resumed epoch: 0, iter: 2' in output, describe(proc)
    assert 'Iter(train) [3/4]' in output, describe(proc)
    assert 'Iter(train) [1/4]' not in output, describe(proc)
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
