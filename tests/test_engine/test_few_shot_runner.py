"""FewShotRunner on the synthetic data: it applies ``few_shot.seed`` to
the config it builds, refuses a checkpoint of another K-shot sample, and
two runs of one config give identical weights."""
import os.path as osp
import sys

import pytest
import torch

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.engine.runner import FewShotRunner, build_runner
from mmdet_maskdiff.utils import InputError
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

sys.path.insert(0,
                osp.join(osp.dirname(osp.dirname(__file__)), 'test_few_shot'))
from _sample_helpers import (STAGE_2, checkpoint_trained_on,  # noqa: E402
                             synthetic_cfg)


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
    torch.save(checkpoint_trained_on(0, 1), ckpt)
    with pytest.raises(InputError, match='trained on the K-shot sample '
                       'seed=0, K=1, but this run uses seed=1, K=1'):
        runner.load_checkpoint(ckpt)
    torch.save(checkpoint_trained_on(1, 1), ckpt)
    runner.load_checkpoint(ckpt)
    # the opt-out
    cfg.few_shot.check_checkpoint = False
    torch.save(checkpoint_trained_on(0, 1), ckpt)
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
