"""Loading a stage-1 detector into a model with a mask head: the mask
head's missing weights are one line, any other mismatch is still mmengine's
full report."""
import torch
from mmengine.runner.checkpoint import load_state_dict
from torch import nn

from mmdet_maskdiff.demo.mask_head_load import (expect_missing_mask_head,
                                                mask_head_keys)


class RoIHead(nn.Module):

    def __init__(self):
        super().__init__()
        self.bbox_head = nn.Linear(4, 3)
        self.mask_head = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))


class Detector(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.roi_head = RoIHead()


def detector_weights(model: nn.Module, drop=()) -> dict:
    """The model's state without its mask head (and without ``drop``)."""
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if not k.startswith('roi_head.mask_head.') and k not in drop
    }


def test_mask_head_keys_are_the_mask_heads_state():
    keys = mask_head_keys(Detector())
    assert keys == {
        'roi_head.mask_head.0.weight', 'roi_head.mask_head.0.bias',
        'roi_head.mask_head.1.weight', 'roi_head.mask_head.1.bias',
        'roi_head.mask_head.1.running_mean',
        'roi_head.mask_head.1.running_var',
        'roi_head.mask_head.1.num_batches_tracked',
        'roi_head.mask_head.2.weight', 'roi_head.mask_head.2.bias'
    }
    assert mask_head_keys(nn.Linear(2, 2)) == set()


def test_expected_missing_mask_head_is_one_line(capsys):
    model = Detector()
    weights = detector_weights(Detector())
    expect_missing_mask_head(model, 'untrained diffusion head')
    load_state_dict(model, weights)
    out = capsys.readouterr().out
    # the 9 keys less num_batches_tracked (torch does not require it)
    assert out == ('[demo] untrained diffusion head: 8 mask-head weights '
                   'not in the checkpoint, as expected (they keep their '
                   'initialisation)\n')
    assert torch.equal(model.backbone.weight, weights['backbone.weight'])


def test_other_missing_and_unexpected_keys_are_still_reported(capsys):
    model = Detector()
    weights = detector_weights(
        Detector(), drop=('roi_head.bbox_head.bias', ))
    weights['roi_head.extra'] = torch.zeros(1)
    expect_missing_mask_head(model, 'MaskDiff before training')
    load_state_dict(model, weights)
    out = capsys.readouterr().out
    assert '[demo] MaskDiff before training: 8 mask-head weights' in out
    assert ('missing keys in source state_dict: roi_head.bbox_head.bias\n'
            in out)
    assert 'unexpected key in source state_dict: roi_head.extra' in out
    assert 'roi_head.mask_head.' not in out


def test_a_complete_checkpoint_prints_nothing(capsys):
    model = Detector()
    expect_missing_mask_head(model, 'MaskDiff')
    load_state_dict(model, Detector().state_dict())
    assert capsys.readouterr().out == ''
