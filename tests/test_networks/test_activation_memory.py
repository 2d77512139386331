"""SavedTensorCounter and the stage-2 activation model on small networks
(torch only)."""
import os.path as osp
import sys

import pytest
import torch
from torch import nn

from mmdet_maskdiff.diffusion import GaussianDiffusion, get_beta_schedule
from mmdet_maskdiff.networks import (MaskDenoisingUNet, SavedTensorCounter,
                                     stage2_activation_memory)

sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                'test_models'))
from _model_helpers import TINY_DENOISER  # noqa: E402

DIFFUSION = GaussianDiffusion(get_beta_schedule('linear', 100))


def tiny_denoiser(with_cp=False):
    """The model tests' tiny denoiser as a mask head of 3 classes builds it
    (16x16 masks, condition [x, k] of one shot, 8-d prototypes)."""
    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY_DENOISER.items() if k != 'type'}
    return MaskDenoisingUNet(
        **cfg,
        cond_channels=7,
        num_classes=3,
        mask_size=16,
        cond_vector_dim=8,
        with_cp=with_cp).train()


def test_counts_saved_storages_once_and_leaves_out_excluded_ones():
    a = torch.randn(10, 20, requires_grad=True)  # 800 bytes
    b = torch.randn(10, 20, requires_grad=True)
    weight = nn.Parameter(torch.randn(5, 5))  # 100 bytes
    with SavedTensorCounter(exclude=[weight]) as counter:
        ab = a * b  # saves a and b
        aba = ab * a  # saves ab and a again
        v = aba[:, :5] * b[:, :5]  # saves views of aba and b
        out = v @ weight  # saves v (10x5) and the weight
    assert counter.excluded_bytes == 100
    # a, b, ab, aba at 800 bytes, v at 200; views and re-saves once
    assert counter.activation_bytes == 4 * 800 + 200
    out.sum().backward()  # the graph still works after the context


def test_attributes_bytes_to_the_innermost_block():
    inner = nn.Linear(4, 4)
    outer = nn.Sequential(nn.Linear(4, 4), inner)
    x = torch.randn(3, 4)
    with SavedTensorCounter(
            exclude=outer.parameters(), blocks=dict(outer=outer,
                                                    inner=inner)) as counter:
        outer(x).sum()
    # each Linear saves its 3x4 input (48 bytes); the first one's is x
    assert counter.per_block == dict(outer=48, inner=48)
    assert counter.activation_bytes == 96


def test_stage2_model_is_linear_in_the_roi_count():
    denoiser = tiny_denoiser()
    memory = stage2_activation_memory(denoiser, DIFFUSION, num_rois=2)
    assert memory.per_roi_bytes > 0 and memory.recompute_per_roi_bytes == 0
    # an independent measurement at 7 RoIs lands on the line
    measured = memory_at(denoiser, 7)
    assert abs(memory.saved_bytes(7) - measured) <= 0.01 * measured
    assert memory.parameter_bytes == 4 * sum(
        p.numel() for p in denoiser.parameters())


def memory_at(denoiser, num_rois):
    from mmdet_maskdiff.networks.activation_memory import _count
    return _count(denoiser, DIFFUSION, num_rois, None, seed=3).activation_bytes


def test_checkpointing_model_adds_the_largest_block_back():
    plain = stage2_activation_memory(tiny_denoiser(), DIFFUSION)
    denoiser = tiny_denoiser(with_cp=True)
    cp = stage2_activation_memory(denoiser, DIFFUSION)
    assert denoiser.with_cp  # restored after the per-block count
    assert 0 < cp.recompute_per_roi_bytes < plain.per_roi_bytes
    assert cp.per_roi_bytes < plain.per_roi_bytes
    assert cp.peak_bytes(10) < plain.peak_bytes(10)


@pytest.mark.parametrize('value', [0, -1, 1.5])
def test_bad_roi_count(value):
    with pytest.raises(ValueError, match='num_rois must be an int >= 1'):
        stage2_activation_memory(tiny_denoiser(), DIFFUSION, num_rois=value)
