"""tools/train.py and tools/test.py end to end (``--launcher none``) on a tiny
mmdet Mask R-CNN and the synthetic dataset: train two iterations, evaluate
the checkpoint (bbox + segm), resume to four iterations."""
import os.path as osp
import pickle

import pytest
import torch
from _tool_helpers import (TINY_CONFIG, describe, run_tool, scalar_metrics,
                           tool_env)

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


def test_checkpoint_needs_the_weights_only_fix(trained):
    """On torch >= 2.6 a plain ``torch.load`` of an mmengine checkpoint fails;
    this is what mmdet_maskdiff.compat.checkpoint_loading works around, so
    test.py and --resume below do exercise the fix."""
    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    if (major, minor) < (2, 6):
        pytest.skip('torch < 2.6 loads with weights_only=False by default')
    ckpt = osp.join(trained[0], 'iter_2.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)


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
