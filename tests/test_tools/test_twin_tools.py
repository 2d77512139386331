"""The regression twin (coco_5shot_twin.py, tiny) through tools/train.py and
tools/test.py: it trains with its support set, saves the set and its fixed
timestep with the weights, tests to bbox + segm AP, and the test tool
refuses a MaskDiff checkpoint for it (and the reverse) in one line;
tools/image_demo.py predicts with it."""
import json
from pathlib import Path

import pytest
import torch
from _tiny_maskdiff import TWIN_ENTRY, save_checkpoint, tiny_config
from _tool_helpers import describe, run_tool_here, scalar_metrics, tool_env

from mmdet_maskdiff.utils.cli_checks import DEBUG_ENV

pytestmark = pytest.mark.slow  # ~1 min: a training, three test runs, a demo


@pytest.fixture(scope='module')
def trained(synthetic_data, tmp_path_factory):
    """Two iterations of tools/train.py on the tiny twin config; returns
    (config, checkpoint, cwd, env)."""
    cwd = tmp_path_factory.mktemp('twin_tools')
    config = tiny_config(
        cwd,
        synthetic_data['root'],
        name='tiny_twin.py',
        entry=TWIN_ENTRY,
        **{
            'train_cfg.max_iters': 2,
            'train_cfg.val_interval': 100,
            'default_hooks.checkpoint.interval': 2,
            'train_dataloader.batch_size': 2,
            'default_hooks.logger.interval': 1,
        })
    env = tool_env(synthetic_data['root'])
    env.update(OMP_NUM_THREADS='1')
    env.pop(DEBUG_ENV, None)
    # work dirs named for the K-shot sample: FewShotRunner keeps them
    work_dir = cwd / 'twin' / 'seed0'
    proc = run_tool_here(
        'train.py', [config, '--work-dir', str(work_dir)], str(cwd), env=env)
    assert proc.returncode == 0, describe(proc)
    assert 'loss_dice' in proc.stdout + proc.stderr, describe(proc)
    return config, str(work_dir / 'iter_2.pth'), cwd, env


def test_checkpoint_keeps_the_fixed_timestep_and_the_support_set(trained):
    _, checkpoint, _, _ = trained
    state = torch.load(
        checkpoint, map_location='cpu', weights_only=False)['state_dict']
    assert state['roi_head.mask_head.fixed_timestep'].item() == 999
    assert any(key.startswith('roi_head.support_encoder.support_set.') for key in state)


def test_test_tool_reports_bbox_and_segm(trained):
    config, checkpoint, cwd, env = trained
    work_dir = cwd / 'test' / 'seed0'
    proc = run_tool_here(
        'test.py', [config, checkpoint, '--work-dir',
                    str(work_dir)],
        str(cwd),
        env=env)
    assert proc.returncode == 0, describe(proc)
    metrics = scalar_metrics(str(work_dir))
    for split in ('base', 'novel', 'all'):
        for kind in ('bbox', 'segm'):
            assert 0.0 <= metrics[f'coco/{split}/{kind}_mAP'] <= 1.0


def _one_line_error(proc):
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stdout + proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    return lines[0]


def test_test_tool_refuses_a_maskdiff_checkpoint_for_the_twin(
        trained, synthetic_data):
    config, _, cwd, env = trained
    maskdiff = save_checkpoint(
        tiny_config(cwd, synthetic_data['root']), str(cwd / 'maskdiff.pth'))
    line = _one_line_error(
        run_tool_here(
            'test.py',
            [config, maskdiff, '--work-dir',
             str(cwd / 'refused')], str(cwd),
            env=env))
    assert line == (
        f'error: checkpoint {maskdiff} does not fit the model of the config: '
        'roi_head.mask_head.fixed_timestep is missing from the checkpoint; '
        'the checkpoint holds a MaskDiff DiffusionMaskHead, not the '
        'regression twin (RegressionMaskHead): load it with the MaskDiff '
        'config (coco_*shot.py), or train the twin')


def test_test_tool_refuses_the_twin_checkpoint_for_maskdiff(
        trained, synthetic_data):
    _, checkpoint, cwd, env = trained
    maskdiff_config = tiny_config(cwd, synthetic_data['root'])
    line = _one_line_error(
        run_tool_here(
            'test.py', [
                maskdiff_config, checkpoint, '--work-dir',
                str(cwd / 'refused_maskdiff')
            ],
            str(cwd),
            env=env))
    assert 'roi_head.mask_head.fixed_timestep is in the checkpoint but not ' \
        'in the model; the checkpoint holds the regression twin' in line, line


def test_image_demo_predicts_with_the_checkpoints_support_set(
        trained, synthetic_data):
    """No dataset needed: the twin's checkpoint carries its K-shot set; the
    sampler flags, which do not apply to it, are refused in one line."""
    config, checkpoint, cwd, env = trained
    image = sorted(
        (Path(synthetic_data['root']) / 'images' / 'test').glob('*'))[0]
    out_dir = cwd / 'demo_out'
    args = [str(image), config, '--weights', checkpoint, '--device', 'cpu',
            '--pred-score-thr', '0', '--out-dir', str(out_dir)]
    proc = run_tool_here('image_demo.py', args, str(cwd), env=env)
    assert proc.returncode == 0, describe(proc)
    pred = json.loads((out_dir / 'preds' / f'{image.stem}.json').read_text())
    assert len(pred['masks']) == len(pred['labels']) > 0
    line = _one_line_error(
        run_tool_here('image_demo.py', args + ['--steps', '2'], str(cwd),
                      env=env))
    assert line == ('error: --steps/--guidance-weight/--num-samples/'
                    f'--save-trajectory need a MaskDiff config; {config} '
                    'has no DiffusionMaskHead')
