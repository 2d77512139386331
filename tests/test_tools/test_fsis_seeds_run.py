"""``fsis_seeds.py run``: the per-seed protocol (stage 1b, stage 2, test,
collect) through the COCO configs, at CPU scale on the synthetic data."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet.registry import MODELS
from mmdet_maskdiff.testing.small_scale import cpu_scale_options
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file
from _tool_helpers import REPO, TOOLS, describe, free_port, run_tool_here

sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))
import fsis_seeds  # noqa: E402

STAGE_2 = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
STAGE_1B = osp.join(REPO, 'configs', 'maskdiff',
                    'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py')


def test_parse_seeds():
    assert fsis_seeds.parse_seeds(['0-9']) == list(range(10))
    assert fsis_seeds.parse_seeds(['3', '0-1', '1']) == [0, 1, 3]
    for bad in ('a', '3-1', '-1'):
        with pytest.raises(fsis_seeds.InputError, match='--seeds'):
            fsis_seeds.parse_seeds([bad])


def test_stages_follow_the_stage_2_config():
    stages = fsis_seeds.protocol_stages(STAGE_2, with_fcn=True)
    assert stages == dict(
        det=STAGE_1B, mask=STAGE_2,
        fcn=osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_fcn.py'))
    stages = fsis_seeds.protocol_stages(STAGE_2, False, with_twin=True)
    assert stages == dict(
        det=STAGE_1B, mask=STAGE_2,
        twin=osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_twin.py'))
    assert fsis_seeds.METHODS == dict(
        mask='MaskDiff', fcn='FCNMaskHead', twin='regression twin')


def test_run_refuses_a_config_without_a_per_seed_checkpoint(tmp_path):
    # in-process: `fsis_seeds.py run` is run through python below
    proc = run_tool_here('analysis_tools/fsis_seeds.py', ['run', STAGE_1B],
                         cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f'error: {STAGE_1B}: load_from '), describe(proc)


def _novel_init_checkpoint(cwd, data_root):
    """What stage 1b loads (stage 1a + tools/model_converters/
    tfa_novel_init.py, made once for all seeds): here an untrained model of
    the CPU-scale stage-1b config."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(STAGE_1B)
    cfg.merge_from_dict(cpu_scale_options(cfg, data_root))
    path = osp.join(cwd, cfg.load_from)
    os.makedirs(osp.dirname(path))
    torch.manual_seed(0)
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(),
                    meta={}), path)


@pytest.mark.slow  # six tool runs (2 seeds x train 1b, train 2, test), ~1 min
def test_run_two_seeds_resume_dist_launcher_and_collect(synthetic_data,
                                                        tmp_path):
    """Seed 0 with ``--launcher none`` (tools/train.py, tools/test.py);
    then seeds 0 and 1 with ``--launcher pytorch``: seed 0 is finished and
    skipped, seed 1 runs every stage through tools/dist_train.sh /
    dist_test.sh (one gloo process on CPU; on GPUs --gpus 8); both seeds
    are collected; a third run skips everything."""
    cwd = str(tmp_path)
    _novel_init_checkpoint(cwd, synthetic_data['root'])
    common = ['--demo-data', synthetic_data['root'], '--iters', '2']
    # fsis_seeds.py in this process; the stages it starts are tool runs
    proc = run_tool_here('analysis_tools/fsis_seeds.py',
                         ['run', STAGE_2, '--seeds', '0'] + common, cwd=cwd)
    assert proc.returncode == 0, describe(proc)
    assert 'dist_train.sh' not in proc.stdout, describe(proc)
    assert osp.join(TOOLS, 'train.py') in proc.stdout, describe(proc)
    assert osp.join(TOOLS, 'test.py') in proc.stdout, describe(proc)

    dist = ['run', STAGE_2, '--seeds', '0', '1', '--launcher', 'pytorch',
            '--gpus', '1'] + common
    env = dict(os.environ, PORT=str(free_port()))
    proc = run_tool_here('analysis_tools/fsis_seeds.py', dist, cwd=cwd,
                         env=env)
    assert proc.returncode == 0, describe(proc)
    assert 'seed 0: finished, skipped' in proc.stdout, describe(proc)
    assert 'dist_train.sh' in proc.stdout and 'dist_test.sh' in proc.stdout
    assert 'seed 0 stage 1b' not in proc.stdout, describe(proc)
    work = osp.join(cwd, 'work_dirs')
    for seed in (0, 1):
        det = osp.join(work, 'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det',
                       f'seed{seed}')
        mask = osp.join(work, 'coco_1shot', f'seed{seed}')
        assert osp.isfile(osp.join(det, 'iter_2.pth'))
        assert osp.isfile(osp.join(mask, 'iter_2.pth'))
        results = json.loads(open(osp.join(mask, 'results.json')).read())
        assert results['seed'] == seed
        assert set(results['summary']['MaskDiff']) == {'base', 'novel', 'all'}
        assert 'segm_mAP' in results['summary']['MaskDiff']['novel']
        # stage 2 loaded its own seed's stage 1b, and trained on that seed
        saved = Config.fromstring(
            load_checkpoint_file(
                osp.join(mask, 'iter_2.pth'),
                map_location='cpu')['meta']['cfg'], '.py')
        assert saved.load_from == osp.join(
            './work_dirs', 'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det',
            f'seed{seed}', 'iter_2.pth')
        assert saved.train_dataloader.dataset.datasets[1].seed == seed
    # collect: mean ± std per split, n = 2
    for split in ('base', 'novel', 'all'):
        assert any(line.startswith(f'| {split} | ') and '±' in line
                   for line in proc.stdout.splitlines()), describe(proc)
    stats = json.loads(
        open(osp.join(work, 'coco_1shot', 'seeds.json')).read())
    assert stats['MaskDiff']['novel']['segm_mAP']['n'] == 2

    again = run_tool_here('analysis_tools/fsis_seeds.py',
                          ['run', STAGE_2, '--seeds', '0', '1'] + common,
                          cwd=cwd)
    assert again.returncode == 0, describe(again)
    for seed in (0, 1):
        assert f'seed {seed}: finished, skipped' in again.stdout
    assert 'train.py' not in again.stdout and 'test.py' not in again.stdout
    assert '| novel | ' in again.stdout


def _args(**kwargs):
    import argparse
    defaults = dict(launcher='none', gpus=8, demo_data=None, iters=None,
                    scale_schedule=False, cfg_options=[])
    return argparse.Namespace(**dict(defaults, **kwargs))


def test_one_gpu_schedule_is_8_times_longer_at_an_eighth_of_the_lr():
    args = _args(scale_schedule=True)
    assert fsis_seeds.schedule_factor(args) == 8
    assert fsis_seeds.schedule_factor(
        _args(launcher='pytorch', gpus=4)) == 2
    options = fsis_seeds.stage_options(STAGE_1B, 3, args, [])
    cfg = fsis_seeds.resolve(STAGE_1B, options)
    assert cfg.train_cfg.max_iters == 8 * 16000
    assert cfg.param_scheduler[1].milestones == [8 * 14400]
    assert cfg.param_scheduler[1].end == 8 * 16000
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(0.001 / 8)
    assert cfg.default_hooks.checkpoint.interval == 8 * 4000
    assert cfg.train_dataloader.dataset.seed == 3
    assert cfg.work_dir.endswith(
        osp.join('maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det', 'seed3'))


def test_user_options_go_to_the_stages_that_have_their_keys():
    stages = fsis_seeds.protocol_stages(STAGE_2, with_fcn=True)
    args = _args(cfg_options=[
        'custom_hooks.0.crop_size=32', 'optim_wrapper.optimizer.lr=0.01',
        '+note=1'
    ])
    assert fsis_seeds.user_options(args, stages) == {
        STAGE_1B: ['optim_wrapper.optimizer.lr=0.01', '+note=1'],
        STAGE_2: args.cfg_options,
        stages['fcn']: ['optim_wrapper.optimizer.lr=0.01', '+note=1'],
    }
    options = fsis_seeds.stage_options(STAGE_2, 1, args,
                                       args.cfg_options)
    assert options == args.cfg_options + ['few_shot.seed=1']
    assert fsis_seeds.resolve(STAGE_2, options).custom_hooks[0].crop_size == 32


def test_commands_of_both_launchers():
    cmd = fsis_seeds._command(_args(), 'train', 'c.py', [], ['--x'])
    assert cmd == [sys.executable, osp.join(TOOLS, 'train.py'), 'c.py', '--x']
    dist = _args(launcher='pytorch', gpus=8)
    assert fsis_seeds._command(dist, 'train', 'c.py', [], ['--x']) == [
        'bash', osp.join(TOOLS, 'dist_train.sh'), 'c.py', '8', '--x']
    assert fsis_seeds._command(dist, 'test', 'c.py', ['w.pth'], ['--x']) == [
        'bash', osp.join(TOOLS, 'dist_test.sh'), 'c.py', 'w.pth', '8', '--x']


@pytest.mark.slow  # seven tool runs, 2-5 min on 2 shared cores
def test_novel_only_protocol_with_fcn_at_cpu_scale(synthetic_data, tmp_path):
    """coco_novel_1shot.py end to end: the 2-class novel stage 1b starts from
    a stage-1a checkpoint of the full label space (its box predictor is
    skipped as a size mismatch), the three mask heads (MaskDiff, FCN, the
    regression twin) train and report novel AP only."""
    cwd = str(tmp_path)
    init_default_scope('mmdet')
    base = Config.fromfile(osp.join(REPO, 'configs', 'maskdiff',
                                    'maskdiff_r101_fpn_8xb2-110k_coco-base'
                                    '-det.py'))
    base.merge_from_dict(cpu_scale_options(base, synthetic_data['root']))
    stage_1a = osp.join(cwd, 'work_dirs',
                        'maskdiff_r101_fpn_8xb2-110k_coco-base-det',
                        'iter_110000.pth')
    os.makedirs(osp.dirname(stage_1a))
    torch.save(dict(state_dict=MODELS.build(base.model).state_dict(),
                    meta={}), stage_1a)
    config = osp.join(REPO, 'configs', 'maskdiff', 'coco_novel_1shot.py')
    proc = run_tool_here('analysis_tools/fsis_seeds.py', [
        'run', config, '--seeds', '0', '--with-fcn', '--with-twin',
        '--demo-data', synthetic_data['root'], '--iters', '2'
    ], cwd=cwd)
    assert proc.returncode == 0, describe(proc)
    assert 'size mismatch for roi_head.bbox_head.fc_cls.weight' in (
        proc.stdout + proc.stderr)
    results = json.loads(open(osp.join(
        cwd, 'work_dirs', 'coco_novel_1shot', 'seed0',
        'results.json')).read())
    for method in ('MaskDiff', 'FCNMaskHead', 'regression twin'):
        summary = results['summary'][method]
        assert 'segm_mAP' in summary['novel'] and not summary['base']
        assert set(results['metrics'][method]) >= {
            'coco/novel/segm_mAP', 'coco/novel/bbox_mAP'}
    assert '| novel | ' in proc.stdout and '| base | ' not in proc.stdout
