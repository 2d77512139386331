"""The regression-twin family: coco_{K}shot_twin.py and
coco_novel_{K}shot_twin.py differ from the MaskDiff config of the same
protocol and K only in the mask head's type and its loss (the same network,
conditioning, detector, data and schedule), and drop the sampler hook."""
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'maskdiff')
SHOTS = (1, 2, 3, 5, 10, 30)
HEAD = 'model.roi_head.mask_head.'


def flatten(value, prefix=''):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f'{prefix}{key}.'))
        return out
    return {prefix[:-1]: value}


#: what the twin's head has and MaskDiff's has not, and the reverse
TWIN_ONLY = {
    'type': 'RegressionMaskHead',
    'loss_mask.type': 'CrossEntropyLoss',
    'loss_mask.use_sigmoid': True,
    'loss_mask.loss_weight': 1.0,
    'loss_dice.type': 'DiceLoss',
    'loss_dice.use_sigmoid': True,
    'loss_dice.activate': True,
    'loss_dice.naive_dice': True,
    'loss_dice.eps': 1.0,
    'loss_dice.loss_weight': 1.0,
}
MASKDIFF_ONLY = ('num_timesteps', 'beta_schedule', 'prediction_type',
                 'class_dropout_prob')


@pytest.mark.parametrize('protocol', ['coco_{}shot', 'coco_novel_{}shot'])
@pytest.mark.parametrize('shots', SHOTS)
def test_twin_changes_only_the_head_type_and_loss(protocol, shots):
    name = protocol.format(shots)
    twin = Config.fromfile(osp.join(CONFIG_DIR, f'{name}_twin.py'))
    maskdiff = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    a, b = flatten(twin.to_dict()), flatten(maskdiff.to_dict())
    diff = {
        key: (a.get(key), b.get(key))
        for key in set(a) | set(b) if a.get(key) != b.get(key)
        and not key.startswith('custom_hooks')
    }
    expected = {HEAD + k: (v, None) for k, v in TWIN_ONLY.items()}
    expected[HEAD + 'type'] = ('RegressionMaskHead', 'DiffusionMaskHead')
    for key in MASKDIFF_ONLY:
        expected[HEAD + key] = (None, b[HEAD + key])
    assert diff == expected
    # the support set hook stays; the diffusion sampler's hook goes
    assert twin.custom_hooks == [
        h for h in maskdiff.custom_hooks
        if h['type'] != 'DiffusionSamplerHook'
    ]
    assert [h['type'] for h in twin.custom_hooks] == ['SupportSetHook']


def test_twin_variable_keeps_the_diffusion_heads_conditioning():
    """``regression_mask_head`` of the base model file repeats the
    conditioning keys of ``diffusion_mask_head``: they must stay equal."""
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'models', 'maskdiff_r101_fpn.py'))
    twin, maskdiff = cfg.regression_mask_head, cfg.diffusion_mask_head
    shared = set(twin) & set(maskdiff) - {'type'}
    assert shared == {
        '_delete_', 'num_classes', 'mask_size', 'denoiser', 'region_source',
        'num_shots', 'shot_fusion', 'use_prototypes', 'prototype_dim',
        'max_train_rois'
    }
    for key in shared:
        assert twin[key] == maskdiff[key], key


def test_twin_head_builds_with_the_paper_network():
    import mmdet_maskdiff  # noqa: F401
    from mmdet.registry import MODELS
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'coco_novel_2shot_twin.py'))
    head = MODELS.build(cfg.model.roi_head.mask_head)
    assert type(head).__name__ == 'RegressionMaskHead'
    assert (head.num_classes, head.num_shots, head.mask_size) == (20, 2, 64)
    # 3 image channels + 4 per shot; the paper-size UNet
    assert head.denoiser.cond_channels == 3 + 4 * 2
    params = sum(p.numel() for p in head.denoiser.parameters())
    assert 80e6 < params < 90e6, params  # the diffusion head's 83.7 M
