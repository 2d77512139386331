"""The novel-only FSIS protocol configs (iMTFA's ``*_novel_*shot``, DCFS's
FSIS table): 20-class label space in training and test, a 20-class box
predictor and mask head, metrics for the novel split."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet.registry import DATASETS, METRICS, MODELS
from mmdet_maskdiff.datasets.class_splits import COCO_NOVEL_CLASSES
from mmdet_maskdiff.few_shot.sample import (apply_few_shot_seed,
                                            support_set_config)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'maskdiff')
NOVEL = sorted(
    glob.glob(osp.join(CONFIG_DIR, 'coco_novel_*.py')) +
    glob.glob(osp.join(CONFIG_DIR, '*tfa_coco-novel-*shot-det.py')))
IDS = [osp.basename(p) for p in NOVEL]
SHOTS = (1, 2, 3, 5, 10, 30)


def test_every_k_has_three_configs():
    names = set(IDS)
    for k in SHOTS:
        assert {f'coco_novel_{k}shot.py', f'coco_novel_{k}shot_fcn.py',
                f'maskdiff_r101_fpn_8xb2-tfa_coco-novel-{k}shot-det.py'
                } <= names, k


def _k_shot_member(cfg):
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'FewShotCocoDataset'  # no base training set
    return dataset


@pytest.mark.parametrize('path', NOVEL, ids=IDS)
def test_novel_label_space_in_training_and_test(path):
    k = int(re.search(r'(\d+)shot', osp.basename(path))[1])
    cfg = Config.fromfile(path)
    assert apply_few_shot_seed(cfg) == 0
    train = _k_shot_member(cfg)
    assert train.classes == 'NOVEL' and train.num_novel_shots == k
    assert not train.num_base_shots
    assert cfg.test_dataloader.dataset.classes == 'NOVEL'
    assert cfg.model.roi_head.bbox_head.num_classes == 20
    mask_head = cfg.model.roi_head.get('mask_head')
    if mask_head is not None:  # stage 2
        assert mask_head.num_classes == 20
        assert cfg.load_from.endswith(
            f'tfa_coco-novel-{k}shot-det/seed0/iter_2500.pth')
        if mask_head.type == 'DiffusionMaskHead':
            assert mask_head.num_shots == k
            support = support_set_config(cfg)
            assert (support['classes'], support['num_novel_shots'],
                    support['seed']) == ('NOVEL', k, 0)
    # the label space the dataset builds (no file is read)
    init_default_scope('mmdet')
    dataset = DATASETS.build(dict(train, lazy_init=True))
    assert dataset.metainfo['classes'] == COCO_NOVEL_CLASSES
    assert dataset.metainfo['base_classes'] == ()


@pytest.mark.parametrize('name', ['coco_novel_1shot.py',
                                  'coco_novel_1shot_fcn.py'])
def test_builds_a_20_class_model_and_reports_novel_ap(name):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    bbox_head = model.roi_head.bbox_head
    assert bbox_head.fc_cls.out_features == 20 + 1  # + background
    assert bbox_head.fc_reg.out_features == 4 * 20
    assert model.roi_head.mask_head.num_classes == 20
    # the metric's splits on the novel test set: all = novel = 20 classes
    metric = METRICS.build(dict(cfg.test_evaluator, ann_file=None))
    meta = DATASETS.build(
        dict(cfg.test_dataloader.dataset, lazy_init=True)).metainfo
    splits = metric.resolve_splits(meta)
    assert splits == {'all': COCO_NOVEL_CLASSES, 'novel': COCO_NOVEL_CLASSES}
