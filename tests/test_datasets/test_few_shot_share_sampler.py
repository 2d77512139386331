"""FewShotShareSampler: the K-shot member's share of sampled instances."""
import itertools

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import ConcatDataset
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet.registry import DATASETS
from mmdet_maskdiff.datasets import FewShotShareSampler
from mmdet_maskdiff.datasets import few_shot_share_sampler as sampler_module
from mmdet_maskdiff.datasets.few_shot_share_sampler import (
    count_instances, k_shot_image_probability)
from mmdet_maskdiff.few_shot.data_check import point_data_root


@pytest.mark.parametrize('share, mean_k, mean_rest',
                         [(0.25, 1.0, 7.3), (0.5, 2.0, 2.0), (0.05, 3.0, 1.5)])
def test_image_probability_gives_the_instance_share(share, mean_k,
                                                    mean_rest):
    p = k_shot_image_probability(share, mean_k, mean_rest)
    assert 0 < p < 1
    expected = p * mean_k / (p * mean_k + (1 - p) * mean_rest)
    assert expected == pytest.approx(share)


@pytest.fixture(scope='module')
def stage2_set(coco_shaped_data):
    """The stage-2 training set of the real coco_1shot.py on the
    COCO-shaped annotations."""
    init_default_scope('mmdet')
    cfg = Config.fromfile('configs/maskdiff/coco_1shot.py')
    point_data_root(cfg, coco_shaped_data)
    return DATASETS.build(cfg.train_dataloader.dataset)


def test_share_of_sampled_instances_matches_the_setting(stage2_set):
    sampler = FewShotShareSampler(stage2_set, few_shot_share=0.3, seed=0)
    members = stage2_set.datasets
    counts = np.concatenate([count_instances(m) for m in members])
    first_k_shot = len(members[0])
    draws = np.fromiter(itertools.islice(iter(sampler), 20000), np.int64)
    from_k_shot = draws >= first_k_shot
    share = counts[draws][from_k_shot].sum() / counts[draws].sum()
    assert share == pytest.approx(0.3, abs=0.02)
    # within a source, every image comes before any repeats
    k_shot_draws = draws[from_k_shot][:len(members[1])]
    assert len(set(k_shot_draws.tolist())) == len(members[1])
    # seeded: the same stream twice
    again = FewShotShareSampler(stage2_set, few_shot_share=0.3, seed=0)
    assert list(itertools.islice(iter(again), 500)) == draws[:500].tolist()


def test_ranks_split_one_stream(stage2_set, monkeypatch):
    streams = []
    for rank in (0, 1):
        monkeypatch.setattr(sampler_module, 'get_dist_info',
                            lambda rank=rank: (rank, 2))
        sampler = FewShotShareSampler(stage2_set, seed=5)
        streams.append(list(itertools.islice(iter(sampler), 300)))
    monkeypatch.setattr(sampler_module, 'get_dist_info', lambda: (0, 1))
    whole = list(itertools.islice(iter(FewShotShareSampler(stage2_set,
                                                           seed=5)), 600))
    assert streams[0] == whole[0::2] and streams[1] == whole[1::2]


def test_bad_settings_are_one_line_errors(stage2_set):
    for share in (0, 1.0, -0.1, 'a'):
        with pytest.raises(ValueError, match='few_shot_share must be in'):
            FewShotShareSampler(stage2_set, few_shot_share=share)
    with pytest.raises(ValueError, match='needs a ConcatDataset'):
        FewShotShareSampler(stage2_set.datasets[0])
    two = ConcatDataset([stage2_set.datasets[1], stage2_set.datasets[1]])
    with pytest.raises(ValueError, match='exactly one member'):
        FewShotShareSampler(two)
