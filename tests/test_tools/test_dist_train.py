"""tools/dist_train.sh with two processes on the CPU (gloo): the config's
``nccl`` backend and mmengine's CUDA calls are handled by
mmdet_maskdiff.compat.cpu_distributed. (tools/dist_test.sh with two
processes: test_reproducible_runs.py, which also checks that every test
image is predicted once and the ranks' results are gathered.)"""
import json
import os.path as osp
import sys

import pytest
import torch
from _tool_helpers import (TINY_CONFIG, TOOLS, describe, free_port, run,
                           tool_env)

pytestmark = pytest.mark.slow

HERE = osp.dirname(osp.abspath(__file__))


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2,
    reason='two ranks with nccl need two GPUs')
def test_dist_train_two_ranks(synthetic_data, tmp_path):
    # the tiny config + a hook that records each rank's process group
    config = tmp_path / 'tiny_mask_rcnn_rank_probe.py'
    config.write_text(f'_base_ = [{TINY_CONFIG!r}]\n'
                      "custom_imports = dict(imports=['_rank_probe'], "
                      'allow_failed_imports=False)\n'
                      "custom_hooks = [dict(type='RankProbeHook')]\n")
    work_dir = tmp_path / 'work_dir'
    env = tool_env(synthetic_data['root'], pythonpath=[HERE])
    # a native abort then prints each rank's Python stack
    env.update(
        PORT=str(free_port()), PYTHON=sys.executable, PYTHONFAULTHANDLER='1')
    cmd = [
        'bash', osp.join(TOOLS, 'dist_train.sh'), str(config), '2',
        '--work-dir', str(work_dir)
    ]
    proc = run(cmd, str(tmp_path), env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert 'Traceback' not in output, describe(proc)
    assert 'Distributed training: True' in output, describe(proc)
    assert 'GPU number: 2' in output, describe(proc)  # mmengine's world size
    assert (work_dir / 'iter_2.pth').is_file()

    records = {}
    for rank in (0, 1):
        path = work_dir / 'rank_probe' / f'rank{rank}.json'
        assert path.is_file(), f'rank {rank} did not finish training'
        records[rank] = json.loads(path.read_text())
    for rank, record in records.items():
        assert record['rank'] == rank
        assert record['world_size'] == 2
        assert record['backend'] == ('nccl'
                                     if torch.cuda.is_available() else 'gloo')
        assert record['iter'] == 2
    assert records[0]['pid'] != records[1]['pid']
