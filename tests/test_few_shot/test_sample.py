"""One K-shot sample per run, named once (``few_shot.seed``): the real
configs, where the one key moves, and its one-line errors."""
import os.path as osp

import pytest

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.demo.pipeline import seed_options
from mmdet_maskdiff.few_shot.sample import (apply_few_shot_seed,
                                            support_set_config)
from mmdet_maskdiff.utils import InputError
from _sample_helpers import STAGE_1B, STAGE_2, cli_config


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
