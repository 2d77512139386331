"""Reproducible answers however a run is launched (slow: several tool runs).

* ``tools/test.py`` (1 process, 4 images per batch) and
  ``tools/dist_test.sh`` (2 gloo processes, 2 images per batch; every test
  image predicted once, the ranks' results gathered for the metric) give
  identical predictions, masks included: each RoI's sampling noise is keyed
  by (sampler seed, img_id, RoI index), not drawn in batch order. (Batches
  of one image are avoided here: oneDNN may round the detector's
  convolutions differently for them, which moves boxes in the last bit.)
* Training 4 iterations, and training 2 then ``--resume`` to 4, give
  bit-identical weights: ``IterationSeedHook`` seeds every iteration's
  draws from (seed, rank, iteration).
"""
import json
import os.path as osp
import pickle
import shutil
import sys

import pytest
import torch
from _tiny_maskdiff import save_checkpoint, tiny_config
from _tool_helpers import TOOLS, describe, free_port, run, run_tool, tool_env

from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow


def single_thread_env():
    env = tool_env()
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return env


def predictions_by_image(path: str) -> dict:
    with open(path, 'rb') as f:
        return {p['img_id']: p for p in pickle.load(f)}


def test_one_process_and_two_processes_give_identical_masks(
        synthetic_data, tmp_path):
    config = tiny_config(tmp_path, synthetic_data['root'])
    checkpoint = save_checkpoint(
        config, str(tmp_path / 'w.pth'), noise_dependent=True)
    env = single_thread_env()

    # fresh processes on both sides: the answer is bit-exact only with the
    # same thread count (oneDNN), which the test process may not have
    one = tmp_path / 'one.pkl'
    proc = run_tool(
        'test.py', [
            config, checkpoint, '--work-dir',
            str(tmp_path / 'one'), '--out',
            str(one), '--cfg-options', 'test_dataloader.batch_size=4'
        ],
        str(tmp_path),
        env=env,
        timeout=600)
    assert proc.returncode == 0, describe(proc)

    two = tmp_path / 'two.pkl'
    env.update(PORT=str(free_port()), PYTHON=sys.executable)
    proc = run([
        'bash',
        osp.join(TOOLS, 'dist_test.sh'), config, checkpoint, '2', '--work-dir',
        str(tmp_path / 'two'), '--out',
        str(two), '--cfg-options', 'test_dataloader.batch_size=2'
    ],
               str(tmp_path),
               env=env,
               timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert 'GPU number: 2' in output, describe(proc)
    # the ranks' results are gathered for the metric
    assert 'coco/all/segm_mAP' in output, describe(proc)

    a, b = predictions_by_image(str(one)), predictions_by_image(str(two))
    # every test image is predicted once, by each launch
    with open(synthetic_data['test_ann']) as f:
        test_ids = {image['id'] for image in json.load(f)['images']}
    assert sorted(a) == sorted(b) == sorted(test_ids) and len(a) == 8
    num_masks = 0
    for img_id in a:
        pa, pb = a[img_id]['pred_instances'], b[img_id]['pred_instances']
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(pa[key], pb[key]), (img_id, key)
        assert pa['masks'] == pb['masks'], img_id  # RLE: byte-identical
        num_masks += len(pa['masks'])
    assert num_masks > 0


def state(path: str) -> dict:
    return load_checkpoint_file(path, map_location='cpu')


def test_resumed_training_is_bit_identical(synthetic_data, tmp_path):
    config = tiny_config(
        tmp_path, synthetic_data['root'], **{
            'train_cfg.max_iters': 4,
            'train_cfg.val_interval': 100,
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.checkpoint.max_keep_ckpts': 3,
            'train_dataloader.batch_size': 2,
        })
    env = single_thread_env()
    # work dirs named for the K-shot sample: FewShotRunner keeps them
    straight = tmp_path / 'straight' / 'seed0'
    proc = run_tool(
        'train.py', [config, '--work-dir', str(straight)],
        str(tmp_path),
        env=env,
        timeout=600)
    assert proc.returncode == 0, describe(proc)

    # "killed" after iteration 2: only iter_2.pth is there; resume to 4
    resumed = tmp_path / 'resumed' / 'seed0'
    resumed.mkdir(parents=True)
    shutil.copy(straight / 'iter_2.pth', resumed / 'iter_2.pth')
    proc = run_tool(
        'train.py', [
            config, '--work-dir',
            str(resumed), '--resume',
            str(resumed / 'iter_2.pth')
        ],
        str(tmp_path),
        env=env,
        timeout=600)
    assert proc.returncode == 0, describe(proc)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr

    a = state(str(straight / 'iter_4.pth'))
    b = state(str(resumed / 'iter_4.pth'))
    start = state(str(straight / 'iter_2.pth'))['state_dict']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    moved = 0
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
        moved += not torch.equal(value, start[key])
    assert moved > 0  # iterations 3-4 did train
    for group_a, group_b in zip(a['optimizer']['state'].values(),
                                b['optimizer']['state'].values()):
        for key in group_a:
            assert torch.equal(group_a[key], group_b[key]), key
