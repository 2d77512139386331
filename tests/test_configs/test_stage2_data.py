"""The stage-2 training data of every coco_{K}shot*.py / coco_novel_{K}shot*.py
config: all-class, the base training set plus the novel shots of the K-shot
set with K of the file name; novel-only, the K-shot novel set alone; the
support set is the K-shot set of the same K and seed; the FCN, twin and lite
variants train on their diffusion config's data."""
import glob
import os.path as osp
import re
from functools import lru_cache

import pytest
from mmengine.config import Config

from mmdet_maskdiff.few_shot.sample import support_set_config

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'maskdiff')
STAGE2 = re.compile(r'coco_(?P<novel>novel_)?(?P<k>\d+)shot(?P<variant>_\w+)?'
                    r'\.py')
CONFIGS = sorted(p for p in glob.glob(osp.join(CONFIG_DIR, 'coco_*.py'))
                 if STAGE2.fullmatch(osp.basename(p)))
IDS = [osp.basename(p) for p in CONFIGS]


@lru_cache(maxsize=None)
def parsed(path: str) -> Config:
    return Config.fromfile(path)


def name_parts(path: str):
    match = STAGE2.fullmatch(osp.basename(path))
    return bool(match['novel']), int(match['k']), match['variant']


def test_every_k_and_protocol_is_found():
    found = {name_parts(p)[:2] for p in CONFIGS}
    assert found == {(novel, k)
                     for novel in (False, True)
                     for k in (1, 2, 3, 5, 10, 30)}


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_training_data_has_the_k_of_the_file_name(path):
    novel, k, _ = name_parts(path)
    dataset = parsed(path).train_dataloader.dataset
    if novel:
        assert dataset.type == 'FewShotCocoDataset'
        assert dataset.classes == 'NOVEL'
        assert (dataset.num_base_shots, dataset.num_novel_shots) == (0, k)
        return
    assert dataset.type == 'ConcatDataset'
    base_set, k_shot_set = dataset.datasets
    assert base_set.type == k_shot_set.type == 'FewShotCocoDataset'
    assert base_set.ann_classes == 'BASE'
    assert 'num_novel_shots' not in base_set
    assert (k_shot_set.num_base_shots, k_shot_set.num_novel_shots) == (0, k)


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_support_set_is_the_k_shot_set(path):
    novel, k, _ = name_parts(path)
    support = support_set_config(parsed(path))
    assert support['num_novel_shots'] == k
    if not novel:  # a novel-only set has no base classes to sample
        assert support['num_base_shots'] == k


VARIANTS = [p for p in CONFIGS if name_parts(p)[2]]


@pytest.mark.parametrize(
    'path', VARIANTS, ids=[osp.basename(p) for p in VARIANTS])
def test_variants_train_on_their_diffusion_configs_data(path):
    variant = name_parts(path)[2]
    reference = path.replace(f'{variant}.py', '.py')
    if variant == '_voc-test':
        reference = reference.replace('_voc-test', '')
    assert parsed(path).train_dataloader.to_dict() == parsed(
        reference).train_dataloader.to_dict()
