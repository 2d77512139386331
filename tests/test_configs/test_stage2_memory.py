"""The default COCO config's stage-2 step fits a 16 GB GPU (issue 11).

The denoiser is built from the real entry config (configs/maskdiff/
coco_1shot.py, whatever its base files say) and measured on the CPU by the
bytes autograd saves for backward (``stage2_activation_memory``: two small
RoI counts, extrapolated linearly to the config's per-GPU
``max_train_rois``), plus one recomputed block when checkpointing is on.
For scale: the same measure predicts 16.2 GiB at 256 RoIs with
checkpointing, and the issue filer measured 17.9 GB (16.7 GiB) on an H200.
"""
import os.path as osp

import torch
from mmengine.config import Config

import mmdet_maskdiff  # noqa: F401  (registers the head and the denoiser)
from mmdet.registry import MODELS
from mmdet_maskdiff.networks import stage2_activation_memory

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
BUDGET = 16 * 2**30  # 16 GiB of activations


def coco_head(**overrides):
    cfg = Config.fromfile(ENTRY)
    cfg.merge_from_dict({
        f'model.roi_head.mask_head.{k}': v
        for k, v in overrides.items()
    })
    head_cfg = cfg.model.roi_head.mask_head
    torch.manual_seed(0)
    return MODELS.build(head_cfg).train(), head_cfg


def test_default_coco_stage2_fits_16_gib():
    head, cfg = coco_head()
    assert cfg.mask_size == 64 and cfg.denoiser.base_channels == 128
    rois = cfg.max_train_rois
    assert isinstance(rois, int), 'the COCO config must bound the RoIs/GPU'
    memory = stage2_activation_memory(head.denoiser, head.diffusion)
    assert memory.recompute_per_roi_bytes > 0, 'checkpointing is off'
    assert memory.peak_bytes(rois) <= BUDGET, (
        f'{memory.peak_bytes(rois) / 2**30:.1f} GiB at {rois} RoIs')


def test_without_checkpointing_the_same_step_does_not_fit():
    """The measure can fail: without checkpointing (~209 MiB per RoI with
    the scale-shift residual blocks; the issue measured 48.7 GiB at 256 RoIs
    with additive ones) the default RoI count is over budget."""
    head, cfg = coco_head(**{'denoiser.with_cp': False})
    memory = stage2_activation_memory(head.denoiser, head.diffusion)
    assert memory.peak_bytes(cfg.max_train_rois) > BUDGET
    assert 48 * 2**30 < memory.saved_bytes(256) < 56 * 2**30
