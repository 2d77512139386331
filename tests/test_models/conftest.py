"""Fixtures of the model tests: the COCO 5-shot MaskDiff config shrunk to a
tiny CPU model, its K-shot support bank and one query batch per mode."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401  (registers the package's modules)
from mmdet.registry import DATASETS, MODELS
from mmdet_maskdiff.datasets import build_support_bank
from mmdet_maskdiff.testing.small_scale import cpu_scale_options
from mmdet_maskdiff.few_shot.sample import support_set_config

#: shrinks cpu_scale_options' model further, so a forward pass costs ~0.1 s
TINY_OVERRIDES = {
    'model.roi_head.mask_head.mask_size': 16,
    'model.roi_head.mask_head.num_timesteps': 100,
    'model.roi_head.mask_head.denoiser.channel_mults': (1, 2),
    'model.roi_head.mask_head.denoiser.num_res_blocks': 1,
    'model.roi_head.mask_head.denoiser.attention_channels': (32, ),
    'model.train_cfg.rcnn.mask_size': 16,
    'model.train_cfg.rcnn.sampler.num': 32,
    'model.train_cfg.rpn_proposal.nms_pre': 200,
    'model.train_cfg.rpn_proposal.max_per_img': 50,
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 30,
    'model.test_cfg.rcnn.max_per_img': 3,
}
SUPPORT_CROP = 32


@pytest.fixture(autouse=True)
def _single_thread():
    """The test machine has 2 shared cores: one thread is several times
    faster than two for these tiny convolutions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def maskdiff_cfg(synthetic_data):
    """``configs/maskdiff/coco_5shot.py`` at CPU scale on the synthetic data,
    then shrunk further (16x16 masks, T = 100, a 2-level UNet). Stage 2:
    the detector is frozen. Tests must copy it before changing it."""
    init_default_scope('mmdet')
    cfg = Config.fromfile('configs/maskdiff/coco_5shot.py')
    cfg.merge_from_dict(
        cpu_scale_options(cfg, synthetic_data['root'], load_from=None))
    cfg.merge_from_dict(TINY_OVERRIDES)
    return cfg


@pytest.fixture
def build_model(maskdiff_cfg):
    """``build_model(seed=0, **model_keys)``: a fresh MaskDiffRCNN from the
    tiny config; ``model_keys`` are dotted keys below ``model.``."""

    def build(seed: int = 0, **model_keys):
        cfg = copy.deepcopy(maskdiff_cfg)
        cfg.merge_from_dict({f'model.{k}': v for k, v in model_keys.items()})
        torch.manual_seed(seed)
        return MODELS.build(cfg.model)

    return build


@pytest.fixture(scope='session')
def support_bank(maskdiff_cfg):
    """The 5-shot support bank of all 8 classes, built the way
    ``SupportSetHook`` builds its test bank."""
    dataset = DATASETS.build(copy.deepcopy(support_set_config(maskdiff_cfg)))
    return build_support_bank(dataset, crop_size=SUPPORT_CROP, context=0.1)


@pytest.fixture(scope='session')
def train_batch(maskdiff_cfg):
    """One training image (base-class annotations) through the training
    pipeline, collated; feed it to ``model.data_preprocessor(batch, True)``."""
    dataset = DATASETS.build(
        copy.deepcopy(maskdiff_cfg.train_dataloader.dataset.datasets[0]))
    return pseudo_collate([dataset[0]])


@pytest.fixture(scope='session')
def test_batch(maskdiff_cfg):
    """One test image through the test pipeline, collated."""
    dataset = DATASETS.build(
        copy.deepcopy(maskdiff_cfg.val_dataloader.dataset))
    return pseudo_collate([dataset[0]])
