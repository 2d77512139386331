"""The lite family (issue 11): coco_{K}shot_lite.py differs from
coco_{K}shot.py only in the mask head's size and the test-time sampler."""
import os.path as osp

import pytest
from _config_helpers import differences
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHOTS = (1, 2, 3, 5, 10, 30)


LITE_KEYS = {
    'model.roi_head.mask_head.mask_size': (28, 64),
    'model.train_cfg.rcnn.mask_size': (28, 64),
    'model.roi_head.mask_head.denoiser.base_channels': (32, 128),
    'model.roi_head.mask_head.denoiser.channel_mults': ((1, 2, 2),
                                                        (1, 2, 3, 4)),
    'model.roi_head.mask_head.denoiser.attention_channels': ((64, ),
                                                             (384, )),
    'model.roi_head.mask_head.denoiser.num_head_channels': (32, 64),
    'model.roi_head.mask_head.denoiser.with_cp': (False, True),
    # the full configs leave both at the SamplerSettings defaults (2, 1.0)
    'model.test_cfg.rcnn.diffusion_sampling.steps': (1, None),
    'model.test_cfg.rcnn.diffusion_sampling.guidance_weight': (0.0, None),
}


@pytest.mark.parametrize('protocol', ['coco_{}shot', 'coco_novel_{}shot'])
@pytest.mark.parametrize('shots', SHOTS)
def test_lite_changes_only_the_mask_head_size_and_sampler(protocol, shots):
    name = protocol.format(shots)
    config_dir = osp.join(REPO, 'configs', 'maskdiff')
    diff = differences(
        osp.join(config_dir, f'{name}_lite.py'),
        osp.join(config_dir, f'{name}.py'))
    # the lite_* variables of the base file travel with every config
    diff = {k: v for k, v in diff.items() if not k.startswith('lite_')}
    assert diff == LITE_KEYS


def test_lite_head_is_compact_and_samples_in_one_pass():
    import mmdet_maskdiff  # noqa: F401
    from mmdet.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_lite.py'))
    head = MODELS.build(cfg.model.roi_head.mask_head)
    params = sum(p.numel() for p in head.denoiser.parameters())
    assert 1.5e6 < params < 2.5e6, params  # paper-size: 83.7 M
    assert head.denoiser.mask_size == 28
    settings = head.parse_test_cfg(cfg.model.test_cfg.rcnn)
    # one step without guidance: one denoiser forward per RoI
    assert settings.steps == 1 and settings.guidance_weight == 0.0
