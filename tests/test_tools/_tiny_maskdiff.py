"""A tiny MaskDiff stage-2 config and checkpoints for the tool tests."""
import os.path as osp
from typing import Optional

import torch
from _tool_helpers import REPO
from mmengine.config import Config

from mmdet.registry import MODELS
from mmdet_maskdiff.testing import cpu_scale_options

ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_5shot.py')
#: its regression twin (RegressionMaskHead)
TWIN_ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_5shot_twin.py')
#: a smaller model than the demo's (as tests/test_models/conftest.py)
TINY = {
    'model.roi_head.mask_head.mask_size': 16,
    'model.roi_head.mask_head.num_timesteps': 100,
    'model.roi_head.mask_head.denoiser.channel_mults': (1, 2),
    'model.roi_head.mask_head.denoiser.num_res_blocks': 1,
    'model.train_cfg.rcnn.mask_size': 16,
    'model.train_cfg.rcnn.sampler.num': 32,
    'model.train_cfg.rpn_proposal.max_per_img': 50,
    'model.test_cfg.rpn.max_per_img': 30,
    'model.test_cfg.rcnn.max_per_img': 3,
    'custom_hooks.1.save_trajectory': False,
}
#: the keys of TINY that only the diffusion head and its sampler hook have
DIFFUSION_ONLY = ('model.roi_head.mask_head.num_timesteps',
                  'custom_hooks.1.save_trajectory')


def tiny_config(tmp_path,
                data_root: str,
                name: str = 'tiny_coco_5shot.py',
                entry: str = ENTRY,
                **options) -> str:
    """coco_5shot.py (or ``entry``, e.g. :data:`TWIN_ENTRY`) at tiny CPU
    scale (plus dotted ``options``), written as one config file; returns its
    path."""
    cfg = Config.fromfile(entry)
    cfg.merge_from_dict(cpu_scale_options(cfg, data_root, load_from=None))
    diffusion = cfg.model.roi_head.mask_head.type == 'DiffusionMaskHead'
    cfg.merge_from_dict({
        key: value
        for key, value in TINY.items()
        if diffusion or key not in DIFFUSION_ONLY
    })
    cfg.merge_from_dict(options)
    path = str(tmp_path / name)
    cfg.dump(path)
    return path


def save_checkpoint(config: str,
                    path: str,
                    noise_dependent: bool = False,
                    meta: Optional[dict] = None) -> str:
    """Save the weights of a model built from ``config`` as an mmengine
    checkpoint. ``noise_dependent``: random values for the denoiser's
    zero-initialised output layers too (an untrained x0 network returns 0
    whatever the noise)."""
    cfg = Config.fromfile(config)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if noise_dependent:
        with torch.no_grad():
            for param in model.roi_head.mask_head.denoiser.parameters():
                if not param.any():
                    param.normal_(std=0.2)
    torch.save({'state_dict': model.state_dict(), 'meta': meta or {}}, path)
    return path
