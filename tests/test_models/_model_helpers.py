"""Helpers shared by the model tests."""
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet.models.task_modules.assigners import AssignResult
from mmdet.registry import MODELS
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures.mask import BitmapMasks
from mmdet_maskdiff.models import MaskCondition

#: a denoiser small enough for a CPU forward pass in a few milliseconds
TINY_DENOISER = dict(
    type='MaskDenoisingUNet',
    base_channels=16,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attention_channels=(32, ),
    num_head_channels=16)


def conditions_of_one_step(model, data):
    """One training forward pass of ``model`` on ``data``, recording the
    :class:`MaskCondition` the RoI head hands to the mask head.

    Returns:
        tuple: The first recorded condition and the losses.
    """
    seen = []
    original = model.roi_head.mask_head.loss_and_target

    def spy(condition, **kwargs):
        seen.append(condition)
        return original(condition, **kwargs)

    model.roi_head.mask_head.loss_and_target = spy
    model.train()
    losses = model(**data, mode='loss')
    return seen[0], losses


# ---------------------------------------------------------------------- #
# a mask head alone: 16x16 masks, 3 classes
# ---------------------------------------------------------------------- #
M = 16  # mask size
NUM_CLASSES = 3


def make_head(head_type: str = 'DiffusionMaskHead', **kwargs):
    """A conditioned mask head (``DiffusionMaskHead`` with T = 100, or
    ``RegressionMaskHead``) of m = M over NUM_CLASSES classes with the tiny
    denoiser and no prototypes; ``kwargs`` override."""
    args = dict(
        type=head_type,
        num_classes=NUM_CLASSES,
        mask_size=M,
        denoiser=TINY_DENOISER,
        use_prototypes=False)
    if head_type == 'DiffusionMaskHead':
        args['num_timesteps'] = 100
    return MODELS.build(dict(args, **kwargs))


def fixed_masks():
    """Three distinct 16x16 masks: a square, a disc, an L-shape."""
    yy, xx = np.mgrid[:M, :M]
    return np.stack([
        (yy >= 4) & (yy < 12) & (xx >= 4) & (xx < 12),
        (yy - 7.5)**2 + (xx - 7.5)**2 < 30,
        ((yy >= 2) & (yy < 6)) | ((xx >= 10) & (xx < 14)),
    ]).astype(np.uint8)


def positives(masks, repeats=1, labels=None, boxes=None):
    """One image whose gt instances are ``masks`` (on an M x M image) and
    whose positive RoIs are the gt boxes (the whole image) ``repeats``
    times, as a real :class:`SamplingResult`."""
    n = len(masks)
    labels = torch.arange(n) % NUM_CLASSES if labels is None else labels
    gt_boxes = torch.tensor([[0., 0., M, M]] * n)
    gt = InstanceData(
        bboxes=gt_boxes, labels=labels, masks=BitmapMasks(masks, M, M))
    priors = gt_boxes.repeat(repeats, 1) if boxes is None else boxes
    num = len(priors)
    gt_inds = torch.arange(1, n + 1).repeat(repeats)[:num]
    assign = AssignResult(
        n, gt_inds, torch.ones(num), labels=labels[gt_inds - 1])
    result = SamplingResult(
        torch.arange(num), torch.zeros(0, dtype=torch.long), priors, gt_boxes,
        assign, torch.ones(num, dtype=torch.uint8))
    return [result], [gt]


def condition_from_masks(targets, labels):
    """x = the target mask itself as a 3-channel 'image'; k = blank shot."""
    region = (targets[:, None] * 2 - 1).expand(-1, 3, -1, -1)
    shots = torch.zeros(len(targets), 1, 4, M, M)
    return MaskCondition(labels=labels, region_image=region, shots=shots)


def random_condition(num, seed=0, num_shots=1):
    g = torch.Generator().manual_seed(seed)
    return MaskCondition(
        labels=torch.randint(0, NUM_CLASSES, (num, ), generator=g),
        region_image=torch.randn(num, 3, M, M, generator=g),
        shots=torch.randn(num, num_shots, 4, M, M, generator=g))


def randomize_(head, seed=0):
    """Non-zero weights everywhere (the UNet's output layer is zero-init,
    which would make every sample the same)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return head


TRAIN_CFG = ConfigDict(mask_size=M)
