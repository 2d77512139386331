"""What both conditioned mask heads share (ConditionedMaskHead): the
training RoIs, the zero-loss path, the argument and shape checks and strict
loading, for the diffusion head and its regression twin alike."""
import copy

import pytest
import torch
from _model_helpers import (M, TRAIN_CFG, condition_from_masks, fixed_masks,
                            make_head, positives, random_condition)
from mmengine.config import ConfigDict

from mmdet_maskdiff.models import MaskCondition

HEAD_TYPES = ('DiffusionMaskHead', 'RegressionMaskHead')
#: the losses each head reports
LOSS_NAMES = dict(
    DiffusionMaskHead={'loss_mask'},
    RegressionMaskHead={'loss_mask', 'loss_dice'})


@pytest.mark.parametrize('head_type', HEAD_TYPES)
def test_zero_positives_give_zero_losses_with_a_grad_path(head_type):
    head = make_head(head_type)
    sampling_results, gts = positives(fixed_masks(), boxes=torch.zeros(0, 4))
    condition = MaskCondition(
        labels=torch.zeros(0, dtype=torch.long),
        region_image=torch.zeros(0, 3, M, M),
        shots=torch.zeros(0, 1, 4, M, M))
    out = head.loss_and_target(condition, sampling_results, gts, TRAIN_CFG)
    losses = out['loss_mask']
    assert set(losses) == LOSS_NAMES[head_type]
    assert all(v.item() == 0.0 and v.requires_grad for v in losses.values())
    assert out['mask_targets'].shape[0] == 0
    sum(losses.values()).backward()  # every parameter in the graph (DDP)
    for p in head.parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize('head_type', HEAD_TYPES)
def test_max_train_rois_and_train_rois_pick_the_trained_rois(head_type):
    masks = fixed_masks()
    sampling_results, gts = positives(masks, repeats=2)  # 6 positives
    targets = torch.from_numpy(masks).float().repeat(2, 1, 1)
    condition = condition_from_masks(targets, gts[0].labels.repeat(2))
    for max_rois, train_rois, expected in ((4, None, 4), (None, None, 6),
                                           (10, None, 6),
                                           (None, [1, 0, 1, 0, 0, 1], 3)):
        head = make_head(head_type, max_train_rois=max_rois)
        condition.train_rois = (None if train_rois is None else
                                torch.tensor(train_rois, dtype=torch.bool))
        batches = []
        head.denoiser.register_forward_hook(
            lambda module, args, out: batches.append(args[0].shape[0]))
        out = head.loss_and_target(condition, sampling_results, gts, TRAIN_CFG)
        assert batches == [expected]
        assert out['mask_targets'].shape[0] == 6  # targets are not subset


@pytest.mark.parametrize('head_type', HEAD_TYPES)
@pytest.mark.parametrize('value', [0, -3, 2.5, True, '64'])
def test_max_train_rois_must_be_a_positive_int(head_type, value):
    with pytest.raises(
            ValueError,
            match=rf'^{head_type}: max_train_rois must be None or an int >= '
            r'1, got '):
        make_head(head_type, max_train_rois=value)


@pytest.mark.parametrize('head_type', HEAD_TYPES)
def test_mismatched_train_mask_size_raises(head_type):
    sampling_results, gts = positives(fixed_masks())
    with pytest.raises(
            ValueError,
            match=rf'^train_cfg\.mask_size \(28\) must equal {head_type}\.'
            r'mask_size \(16\)$'):
        make_head(head_type).loss_and_target(random_condition(3),
                                             sampling_results, gts,
                                             ConfigDict(mask_size=28))


@pytest.mark.parametrize('head_type', HEAD_TYPES)
def test_wrong_number_of_shots_raises(head_type):
    head = make_head(head_type, num_shots=2)
    with pytest.raises(
            ValueError, match='^expected 2 support shots per RoI, got 3$'):
        head.build_condition(random_condition(2, num_shots=3))


@pytest.mark.parametrize('head_type', HEAD_TYPES)
def test_loading_is_strict_for_the_head_even_when_the_caller_is_not(
        head_type):
    """mmdet loads checkpoints with strict=False; a 5-shot head's weights in
    a 3-shot head (another first convolution) must not load silently."""
    five = make_head(head_type, num_shots=5)
    three = make_head(head_type, num_shots=3)
    with pytest.raises(ValueError,
                       match=rf'^{head_type}: .*in_conv_cond\.weight has '
                       r'shape .* num_shots'):
        three.load_state_dict(five.state_dict(), strict=False)
    partial = dict(three.state_dict())
    partial.pop(sorted(partial)[0])
    with pytest.raises(ValueError, match='is missing from the checkpoint'):
        three.load_state_dict(partial, strict=False)
    extra = dict(three.state_dict(), **{'denoiser.extra': torch.zeros(1)})
    with pytest.raises(
            ValueError,
            match=r'denoiser\.extra is in the checkpoint but not in the '
            'model'):
        three.load_state_dict(extra, strict=False)
    # no tensor of the head at all (stage 1b -> 2: the head is new): fine
    before = copy.deepcopy(three.state_dict())
    three.load_state_dict({}, strict=False)
    assert all(torch.equal(v, three.state_dict()[k]) for k, v in before.items())
    three.load_state_dict(make_head(head_type, num_shots=3).state_dict())
