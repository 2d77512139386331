"""The COCO entry config ``configs/maskdiff/coco_1shot.py`` itself trains:
through ``tools/dist_train.sh`` with two CPU ranks (gloo: the config's
``nccl`` backend and mmengine's CUDA calls are handled by
``mmdet_maskdiff.compat.cpu_distributed``) and ``--cfg-options`` that point
it at the embedded dataset, and as the base of a downstream config that
overrides its data root. (tools/dist_test.sh with two processes:
test_reproducible_runs.py.)"""
import json
import os.path as osp
import sys

import pytest
import torch
from _tool_helpers import (REPO, TOOLS, describe, free_port, run,
                           run_tool_here, tool_env)
from mmengine.config import Config

from mmdet_maskdiff.testing import cpu_scale_options, to_cfg_options_args

pytestmark = pytest.mark.slow

ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
HERE = osp.dirname(osp.abspath(__file__))
ITERS = 2


def cli_overrides(config: str, data_root: str) -> list:
    """``--cfg-options`` that run ``config`` at CPU scale on ``data_root``
    for ITERS iterations, with no previous-stage checkpoint."""
    options = cpu_scale_options(
        Config.fromfile(config), data_root, max_iters=ITERS, load_from=None)
    options['train_dataloader.batch_size'] = 2
    return to_cfg_options_args(options)


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2,
    reason='two ranks with nccl need two GPUs')
def test_dist_train_coco_1shot_two_ranks(synthetic_data, tmp_path):
    # the entry config and a hook that records each rank's process group
    config = tmp_path / 'coco_1shot_rank_probe.py'
    config.write_text(
        f'_base_ = [{ENTRY!r}]\n'
        "custom_imports = dict(imports=['mmdet_maskdiff', '_rank_probe'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [{{_base_.support_set_hook}}, "
        "{{_base_.sampler_hook}}, dict(type='RankProbeHook')]\n")
    work_dir = tmp_path / 'work_dir'
    env = tool_env(pythonpath=[HERE])
    # a native abort then prints each rank's Python stack
    env.update(
        PORT=str(free_port()), PYTHON=sys.executable, PYTHONFAULTHANDLER='1')
    cmd = [
        'bash', osp.join(TOOLS, 'dist_train.sh'), str(config), '2',
        '--work-dir', str(work_dir), '--cfg-options'
    ] + cli_overrides(ENTRY, synthetic_data['root'])
    proc = run(cmd, str(tmp_path), env=env, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert 'Traceback' not in output, describe(proc)
    assert 'Distributed training: True' in output, describe(proc)
    assert 'GPU number: 2' in output, describe(proc)  # mmengine's world size
    assert 'SupportSetHook: training support pool' in output
    assert 'loss_mask' in output, describe(proc)
    records = {}
    for rank in (0, 1):
        path = work_dir / 'seed0' / 'rank_probe' / f'rank{rank}.json'
        assert path.is_file(), f'rank {rank} did not finish training'
        records[rank] = json.loads(path.read_text())
    for rank, record in records.items():
        assert record['rank'] == rank
        assert record['world_size'] == 2
        assert record['backend'] == ('nccl'
                                     if torch.cuda.is_available() else 'gloo')
        assert record['iter'] == ITERS
    assert records[0]['pid'] != records[1]['pid']
    # FewShotRunner: the run of K-shot sample 0 is in <work-dir>/seed0/
    assert (work_dir / 'seed0' / f'iter_{ITERS}.pth').is_file()


def test_downstream_config_overriding_data_root_trains(synthetic_data,
                                                       tmp_path):
    root = synthetic_data['root']
    project = tmp_path / 'my_project' / 'configs'
    project.mkdir(parents=True)
    rel_entry = osp.relpath(ENTRY, project)
    # the downstream config: inherit by path, override the test data root
    (project / 'my_fsis_1shot.py').write_text(
        f"_base_ = [{rel_entry!r}]\n"
        f"val_dataloader = dict(dataset=dict(data_root={root + '/'!r}))\n"
        'test_dataloader = val_dataloader\n')
    config = str(project / 'my_fsis_1shot.py')
    cfg = Config.fromfile(config)
    assert cfg.val_dataloader.dataset.data_root == root + '/'
    assert cfg.model.roi_head.mask_head.type == 'DiffusionMaskHead'

    work_dir = tmp_path / 'work_dir'
    proc = run_tool_here(
        'train.py',
        [config, '--work-dir', str(work_dir), '--cfg-options'] +
        cli_overrides(config, root),
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    assert 'loss_mask' in proc.stdout + proc.stderr, describe(proc)
    # FewShotRunner: the run of K-shot sample 0 is in <work-dir>/seed0/
    assert (work_dir / 'seed0' / f'iter_{ITERS}.pth').is_file()
