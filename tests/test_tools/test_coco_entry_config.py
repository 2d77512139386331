"""The COCO entry config ``configs/maskdiff/coco_1shot.py`` itself trains:
through ``tools/dist_train.sh`` with two CPU ranks and ``--cfg-options`` that
point it at the embedded dataset, and as the base of a downstream config
that overrides its data root."""
import os
import os.path as osp
import sys

import pytest
import torch
from _tool_helpers import REPO, TOOLS, describe, free_port, run, run_tool_here
from mmengine.config import Config

from mmdet_maskdiff.testing import cpu_scale_options, to_cfg_options_args

pytestmark = pytest.mark.slow

ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
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
    work_dir = tmp_path / 'work_dir'
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable)
    cmd = [
        'bash', osp.join(TOOLS, 'dist_train.sh'), ENTRY, '2', '--work-dir',
        str(work_dir), '--cfg-options'
    ] + cli_overrides(ENTRY, synthetic_data['root'])
    proc = run(cmd, str(tmp_path), env=env, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert 'GPU number: 2' in output, describe(proc)
    assert 'SupportSetHook: training support pool' in output
    assert 'loss_mask' in output, describe(proc)
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
