"""The regression-twin family: coco_{K}shot_twin.py and
coco_novel_{K}shot_twin.py differ from the MaskDiff config of the same
protocol and K only in the mask head's type and its loss (the same network,
conditioning, detector, data and schedule), and drop the sampler hook."""
import os.path as osp

import pytest
from _config_helpers import differences
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'maskdiff')
SHOTS = (1, 2, 3, 5, 10, 30)
HEAD = 'model.roi_head.mask_head.'


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
    diff = differences(
        osp.join(CONFIG_DIR, f'{name}_twin.py'),
        osp.join(CONFIG_DIR, f'{name}.py'))
    # the support set hook stays; the diffusion sampler's hook goes
    twin_hooks, maskdiff_hooks = diff.pop('custom_hooks')
    assert [h['type'] for h in twin_hooks] == ['SupportSetHook']
    assert twin_hooks == [
        h for h in maskdiff_hooks if h['type'] != 'DiffusionSamplerHook'
    ]
    for key in MASKDIFF_ONLY:
        twin_value, maskdiff_value = diff.pop(HEAD + key)
        assert twin_value is None and maskdiff_value is not None, key
    expected = {HEAD + k: (v, None) for k, v in TWIN_ONLY.items()}
    expected[HEAD + 'type'] = ('RegressionMaskHead', 'DiffusionMaskHead')
    assert diff == expected


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
