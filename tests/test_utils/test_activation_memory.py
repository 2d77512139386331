"""SavedTensorCounter and the stage-2 activation model on small networks."""
import os.path as osp
import sys

import pytest
import torch
from torch import nn

from mmdet_maskdiff.models import DiffusionMaskHead
from mmdet_maskdiff.utils import SavedTensorCounter, stage2_activation_memory

sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                'test_models'))
from _model_helpers import TINY_DENOISER  # noqa: E402

TINY_HEAD = dict(
    num_classes=3,
    mask_size=16,
    denoiser=TINY_DENOISER,
    use_prototypes=True,
    prototype_dim=8,
    num_timesteps=100)


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
    torch.manual_seed(0)
    head = DiffusionMaskHead(**TINY_HEAD).train()
    memory = stage2_activation_memory(head, num_rois=2)
    assert memory.per_roi_bytes > 0 and memory.recompute_per_roi_bytes == 0
    # an independent measurement at 7 RoIs lands on the line
    measured = memory_at(head, 7)
    assert abs(memory.saved_bytes(7) - measured) <= 0.01 * measured
    assert memory.parameter_bytes == 4 * sum(
        p.numel() for p in head.denoiser.parameters())


def memory_at(head, num_rois):
    from mmdet_maskdiff.utils.activation_memory import _count
    return _count(head, num_rois, None, seed=3).activation_bytes


def test_checkpointing_model_adds_the_largest_block_back():
    torch.manual_seed(0)
    plain = stage2_activation_memory(DiffusionMaskHead(**TINY_HEAD).train())
    head = DiffusionMaskHead(**{
        **TINY_HEAD, 'denoiser': {
            **TINY_HEAD['denoiser'], 'with_cp': True
        }
    }).train()
    cp = stage2_activation_memory(head)
    assert head.denoiser.with_cp  # restored after the per-block count
    assert 0 < cp.recompute_per_roi_bytes < plain.per_roi_bytes
    assert cp.per_roi_bytes < plain.per_roi_bytes
    assert cp.peak_bytes(10) < plain.peak_bytes(10)


@pytest.mark.parametrize('value', [0, -1, 1.5])
def test_bad_roi_count(value):
    head = DiffusionMaskHead(**TINY_HEAD)
    with pytest.raises(ValueError, match='num_rois must be an int >= 1'):
        stage2_activation_memory(head, num_rois=value)
