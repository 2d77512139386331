"""One K-shot sample per run, named once (``few_shot.seed``): the real
configs, FewShotRunner on the synthetic data, and the one-line errors."""
import argparse
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.demo.pipeline import seed_options
from mmdet_maskdiff.engine.runner import FewShotRunner
from mmdet_maskdiff.testing.small_scale import cpu_scale_options
from mmdet_maskdiff.utils import InputError, build_runner
from mmdet_maskdiff.utils.few_shot_sample import (apply_few_shot_seed,
                                                  check_checkpoint_sample,
                                                  check_split_folders,
                                                  checkpoint_sample,
                                                  support_set_config)
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from _tool_helpers import REPO, describe, run_tool_here  # noqa: E402

STAGE_1B = 'configs/maskdiff/maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py'
STAGE_2 = 'configs/maskdiff/coco_1shot.py'


def cli_config(path, *options, work_dir=None):
    """``path`` as tools/train.py reads it: ``--cfg-options`` through
    mmengine's DictAction, then the default work dir."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(['--cfg-options', *options] if options else [])
    cfg = Config.fromfile(osp.join(REPO, path))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def test_one_key_moves_all_five_places_of_stage_2():
    cfg = cli_config(STAGE_2, 'few_shot.seed=3')
    assert apply_few_shot_seed(cfg) == 3
    base_set, novel_set = cfg.train_dataloader.dataset.datasets
    assert novel_set.seed == 3  # stage 2's novel training set
    assert 'seed' not in base_set  # the full base set has no K-shot sample
    support = support_set_config(cfg, cfg.custom_hooks[0].get('dataset'))
    assert support['seed'] == 3  # the support set
    assert (support['num_base_shots'], support['num_novel_shots']) == (1, 1)
    assert cfg.load_from == ('work_dirs/maskdiff_r101_fpn_8xb2-tfa_coco-1shot'
                             '-det/seed3/iter_16000.pth')  # stage 1b, seed 3
    assert cfg.work_dir == osp.join('./work_dirs', 'coco_1shot', 'seed3')
    # applying again (tools/train.py, then FewShotRunner) changes nothing
    before = cfg.to_dict()
    apply_few_shot_seed(cfg)
    assert cfg.to_dict() == before


def test_one_key_moves_stage_1b_and_its_work_dir():
    cfg = cli_config(STAGE_1B, 'few_shot.seed=7')
    assert cfg.runner_type == 'FewShotRunner'
    apply_few_shot_seed(cfg)
    assert cfg.train_dataloader.dataset.seed == 7  # the fine-tuning set
    assert cfg.work_dir.endswith(
        osp.join('maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det', 'seed7'))
    # one TFA novel-row initialisation serves every seed
    assert '{seed}' not in cfg.load_from and 'seed7' not in cfg.load_from


def test_default_seed_is_0_and_stage_1a_has_none():
    cfg = cli_config(STAGE_2)
    assert apply_few_shot_seed(cfg) == 0
    assert cfg.work_dir.endswith(osp.join('coco_1shot', 'seed0'))
    base = cli_config(
        'configs/maskdiff/maskdiff_r101_fpn_8xb2-110k_coco-base-det.py')
    assert apply_few_shot_seed(base) is None
    assert base.work_dir.endswith('coco-base-det')


def test_seed_set_by_hand_in_one_place_is_an_error():
    cfg = cli_config(STAGE_2, 'train_dataloader.dataset.datasets.1.seed=2')
    with pytest.raises(InputError) as info:
        apply_few_shot_seed(cfg)
    assert str(info.value) == (
        'train_dataloader.dataset.datasets.1.seed=2 but few_shot.seed=0: the '
        'config names the K-shot sample twice (a seed written into a dataset '
        "by hand, or the config the Runner saved beside a checkpoint, which "
        "has its run's seed resolved into every dataset); take the config "
        'from configs/, whose datasets leave seed unset, and choose the '
        'sample only with --cfg-options few_shot.seed=N')


@pytest.mark.parametrize('value', [-1, 'a', 1.5])
def test_bad_seed_value(value):
    cfg = cli_config(STAGE_2)
    cfg.few_shot.seed = value
    with pytest.raises(InputError, match=r'^few_shot.seed must be an int'):
        apply_few_shot_seed(cfg)


def test_demo_seed_options_are_the_one_key():
    assert seed_options(cli_config(STAGE_2), 4) == {'few_shot.seed': 4}
    assert seed_options(
        cli_config('configs/maskdiff/maskdiff_r101_fpn_8xb2-110k_coco-base-'
                   'det.py'), 4) == {}


# --------------------------------------------------------------------------
# on the synthetic data (K-shot files for seeds 0 and 1)
# --------------------------------------------------------------------------
def synthetic_cfg(path, paths, seed, work_dir, **options):
    init_default_scope('mmdet')
    cfg = cli_config(path, f'few_shot.seed={seed}', work_dir=work_dir)
    cfg.merge_from_dict(
        cpu_scale_options(cfg, paths['root'], max_iters=2, load_from=None,
                          batch_size=2))
    cfg.merge_from_dict(options)
    return cfg


def test_missing_split_folder_is_one_line(synthetic_data, tmp_path):
    cfg = synthetic_cfg(STAGE_2, synthetic_data, 7, str(tmp_path))
    apply_few_shot_seed(cfg)
    folder = osp.join(synthetic_data['few_shot_root'], 'seed7')
    with pytest.raises(InputError) as info:
        check_split_folders(cfg)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(
        'K-shot sample seed=7 (K=1, train_dataloader.dataset.datasets.1): '
        f'split folder {folder}: no such folder;')
    # seed 1 exists; K = 3 does not for it
    cfg = synthetic_cfg(STAGE_2, synthetic_data, 1, str(tmp_path))
    apply_few_shot_seed(cfg)
    check_split_folders(cfg)
    cfg.train_dataloader.dataset.datasets[1].num_novel_shots = 3
    with pytest.raises(InputError, match='K=3.*no full_box_3shot_'):
        check_split_folders(cfg)


def test_train_tool_stops_on_a_missing_seed(synthetic_data, tmp_path):
    """The error comes before any model or dataset is built."""
    options = ['few_shot.seed=5', 'load_from=None'] + [
        f'{k}={v}' for k, v in cpu_scale_options(
            Config.fromfile(osp.join(REPO, STAGE_1B)),
            synthetic_data['root'], load_from=None).items()
        if k.endswith(('few_shot_root', 'data_root'))
    ]
    proc = run_tool_here('train.py',
                         [osp.join(REPO, STAGE_1B), '--cfg-options'] + options,
                         cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    folder = osp.join(synthetic_data['few_shot_root'], 'seed5')
    assert proc.stderr.strip().startswith(
        'error: K-shot sample seed=5 (K=1, train_dataloader.dataset): split '
        f'folder {folder}: no such folder;'), describe(proc)
    assert len(proc.stderr.strip().splitlines()) == 1


def _checkpoint_trained_on(seed, shots):
    text = ('train_dataloader = dict(dataset=dict(type='
            "'FewShotCocoDataset', few_shot_root='few_shot/', "
            f'seed={seed}, num_novel_shots={shots}))')
    return dict(meta=dict(cfg=text), state_dict={})


def test_checkpoint_sample_is_read_from_its_meta_cfg():
    assert checkpoint_sample(_checkpoint_trained_on(4, 10)) == dict(
        seed=4, num_novel_shots=10)
    assert checkpoint_sample(dict(meta=dict(), state_dict={})) is None
    base = dict(meta=dict(cfg="train_dataloader = dict(dataset=dict("
                          "type='FewShotCocoDataset', ann_file='a.json'))"))
    assert checkpoint_sample(base) is None  # base training: nothing to check


@pytest.mark.parametrize('seed,shots,says', [
    (1, 1, 'seed=1, K=1'),
    (0, 5, 'seed=0, K=5'),
])
def test_checkpoint_of_another_seed_or_k_is_one_line(seed, shots, says):
    cfg = cli_config(STAGE_2)
    apply_few_shot_seed(cfg)
    check_checkpoint_sample(cfg, _checkpoint_trained_on(0, 1), 'same.pth')
    with pytest.raises(InputError) as info:
        check_checkpoint_sample(cfg, _checkpoint_trained_on(seed, shots),
                                'w/iter_16000.pth')
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(
        f'checkpoint w/iter_16000.pth was trained on the K-shot sample {says}'
        ', but this run uses seed=0, K=1;')


def test_few_shot_runner_applies_the_seed_and_checks_checkpoints(
        synthetic_data, tmp_path):
    cfg = synthetic_cfg(STAGE_2, synthetic_data, 1, str(tmp_path / 'c1'))
    runner = build_runner(cfg)
    assert type(runner) is FewShotRunner
    assert runner.work_dir == osp.join(str(tmp_path / 'c1'), 'seed1')
    assert runner.cfg.train_dataloader.dataset.datasets[1].seed == 1
    assert cfg.train_dataloader.dataset.datasets[1].get('seed') is None, (
        'from_cfg must not change the caller\'s config')
    ckpt = str(tmp_path / 'other_seed.pth')
    torch.save(_checkpoint_trained_on(0, 1), ckpt)
    with pytest.raises(InputError, match='trained on the K-shot sample '
                       'seed=0, K=1, but this run uses seed=1, K=1'):
        runner.load_checkpoint(ckpt)
    torch.save(_checkpoint_trained_on(1, 1), ckpt)
    runner.load_checkpoint(ckpt)
    # the opt-out
    cfg.few_shot.check_checkpoint = False
    torch.save(_checkpoint_trained_on(0, 1), ckpt)
    build_runner(cfg).load_checkpoint(ckpt)


@pytest.mark.slow  # three tiny training runs, 20-50 s on 2 shared cores
def test_two_runs_of_one_config_give_identical_weights(synthetic_data,
                                                       tmp_path):
    """``randomness`` of the configs (seeded, diff_rank_seed): stage 2 with
    the diffusion head, 2 iterations, twice -> bit-identical weights; a
    different randomness seed gives different ones (the test can fail)."""

    def train(name, seed=0):
        cfg = synthetic_cfg(STAGE_2, synthetic_data, 1, str(tmp_path / name),
                            **{'randomness.seed': seed})
        assert cfg.randomness == dict(seed=seed, diff_rank_seed=True)
        cfg.experiment_name = name
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        runner = build_runner(cfg)
        runner.train()
        path = osp.join(runner.work_dir, 'iter_2.pth')
        return load_checkpoint_file(path, map_location='cpu')['state_dict']

    first, second, other = train('a'), train('b'), train('c', seed=1)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[k], other[k]) for k in first)
