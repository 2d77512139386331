"""RegressionMaskHead, the same-input regression twin of DiffusionMaskHead:
the same network and conditioning, one forward pass, BCE + Dice on the
mask, strict about MaskDiff checkpoints."""
import copy

import pytest
import torch
import torch.nn.functional as F
from _model_helpers import (TRAIN_CFG, M, condition_from_masks,
                            conditions_of_one_step, fixed_masks, make_head,
                            positives, random_condition, randomize_)
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from mmdet.registry import MODELS
from mmdet_maskdiff.models import (MaskCondition, RegressionMaskHead,
                                   condition_spec_of)
from mmdet_maskdiff.testing.small_scale import cpu_scale_options

#: prototypes of 8 dimensions: the cond_vector path
PROTOTYPES = dict(use_prototypes=True, prototype_dim=8)


def make_twin(**kwargs):
    """The twin with 8-dimensional prototypes (the cond_vector path)."""
    return make_head('RegressionMaskHead', **{**PROTOTYPES, **kwargs})


def make_maskdiff(**kwargs):
    """The diffusion head built with the same arguments as
    :func:`make_twin`."""
    return make_head(**{**PROTOTYPES, **kwargs})


def with_prototypes(condition, seed=0):
    """``condition`` with (N, 8) prototypes."""
    g = torch.Generator().manual_seed(seed)
    condition.prototypes = torch.randn(len(condition), 8, generator=g)
    return condition


def by_hand(head, condition):
    """sigmoid of one pass of ``head.denoiser`` at y_t = 0, t = 999: what
    the twin must predict, computed from the network alone."""
    cond = torch.cat([condition.region_image, condition.shots.flatten(1, 2)],
                     dim=1)
    encoding = head.denoiser.encode_condition(cond, condition.prototypes)
    num = len(condition)
    with torch.no_grad():
        logits = head.denoiser(
            torch.zeros(num, 1, M, M), torch.full((num, ), 999), encoding,
            condition.labels)
    return logits, logits.sigmoid()


# --------------------------------------------------------------------- #
# the same network and conditioning as the diffusion head
# --------------------------------------------------------------------- #
def test_same_network_and_conditioning_as_the_diffusion_head():
    twin, maskdiff = make_twin(num_shots=2), make_maskdiff(num_shots=2)
    assert condition_spec_of(twin) == condition_spec_of(maskdiff)
    ours = twin.state_dict()
    theirs = maskdiff.state_dict()
    # every tensor of MaskDiff, same shapes, plus the fixed timestep
    assert set(ours) == set(theirs) | {'fixed_timestep'}
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
    assert ours['fixed_timestep'].item() == 999
    condition = with_prototypes(random_condition(3, num_shots=2))
    for a, b in zip(twin.build_condition(condition),
                    maskdiff.build_condition(condition)):
        assert torch.equal(a, b)


def test_predict_is_the_sigmoid_of_one_pass_from_zero_at_t_999():
    head = randomize_(make_twin()).eval()
    condition = with_prototypes(random_condition(5))
    logits, expected = by_hand(head, condition)
    assert logits.std() > 0.01  # a map that is not constant
    out = head.predict(condition)
    assert out['probs'].shape == (5, 1, M, M)
    assert out['uncertainty'].shape == (5, M, M)
    torch.testing.assert_close(out['probs'], expected)
    torch.testing.assert_close(out['uncertainty'],
                               expected[:, 0] * (1 - expected[:, 0]))
    assert 0 <= out['uncertainty'].min() and out['uncertainty'].max() <= 0.25
    # the diffusion sampler's settings do not apply, noise keys change
    # nothing
    condition.noise_keys = torch.arange(5) * 7
    test_cfg = ConfigDict(
        mask_thr_binary=0.5, diffusion_sampling=dict(steps=8, seed=3))
    assert head.parse_test_cfg(test_cfg) is None
    assert torch.equal(head.predict(condition)['probs'], out['probs'])


def test_one_pass_per_image_gives_each_image_its_masks():
    head = randomize_(make_twin()).eval()
    condition = with_prototypes(random_condition(5))
    whole = head.predict(condition)['probs']
    condition.num_per_image = [2, 0, 3]  # an image without detections
    grouped = head.predict(condition)['probs']
    torch.testing.assert_close(grouped, whole)
    alone = MaskCondition(
        labels=condition.labels[2:],
        region_image=condition.region_image[2:],
        shots=condition.shots[2:],
        prototypes=condition.prototypes[2:])
    # an image's masks do not depend on the images beside it
    assert torch.equal(head.predict(alone)['probs'], grouped[2:])
    empty = head.predict(
        MaskCondition(
            labels=torch.zeros(0, dtype=torch.long),
            region_image=torch.zeros(0, 3, M, M),
            shots=torch.zeros(0, 1, 4, M, M),
            prototypes=torch.zeros(0, 8),
            num_per_image=[0]))
    assert empty['probs'].shape == (0, 1, M, M)
    assert empty['uncertainty'].shape == (0, M, M)


# --------------------------------------------------------------------- #
# training
# --------------------------------------------------------------------- #
def test_loss_is_bce_plus_dice_of_the_logits():
    head = randomize_(make_twin())
    masks = fixed_masks()
    sampling_results, gts = positives(masks)
    targets = torch.from_numpy(masks).float()
    condition = with_prototypes(condition_from_masks(targets, gts[0].labels))
    seen = []
    head.denoiser.register_forward_hook(
        lambda module, args, out: seen.append(args))
    out = head.loss_and_target(condition, sampling_results, gts, TRAIN_CFG)
    assert torch.equal(out['mask_targets'], targets)
    # no class dropout: the denoiser saw every RoI's own class
    assert torch.equal(seen[0][3], gts[0].labels)
    logits, probs = by_hand(head, condition)
    logits, probs = logits[:, 0], probs[:, 0]
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    dice = 1 - (2 * (probs * targets).sum((1, 2)) + 1) / (
        probs.sum((1, 2)) + targets.sum((1, 2)) + 1)
    losses = out['loss_mask']
    assert set(losses) == {'loss_mask', 'loss_dice'}
    torch.testing.assert_close(losses['loss_mask'], bce)
    torch.testing.assert_close(losses['loss_dice'], dice.mean())

    # the weights are config keys; Dice can be switched off
    weighted = make_twin(
        loss_mask=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.5),
        loss_dice=None)
    weighted.load_state_dict(head.state_dict())
    losses = weighted.loss_and_target(condition, sampling_results, gts,
                                      TRAIN_CFG)['loss_mask']
    assert set(losses) == {'loss_mask'}
    torch.testing.assert_close(losses['loss_mask'], 2.5 * bce)


def test_loss_falls_and_the_masks_come_back():
    """A few dozen Adam steps on 3 fixed masks whose object region shows
    the mask: the loss falls and one forward pass reproduces every mask."""
    torch.manual_seed(0)
    head = make_twin(use_prototypes=False)
    masks = fixed_masks()
    sampling_results, gts = positives(masks, repeats=2)
    targets = head.get_targets(sampling_results, gts, TRAIN_CFG)
    labels = gts[0].labels.repeat(2)
    condition = condition_from_masks(targets, labels)

    def loss():
        losses = head.loss_and_target(condition, sampling_results, gts,
                                      TRAIN_CFG)['loss_mask']
        return losses['loss_mask'] + losses['loss_dice']

    loss_before = loss().item()
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.3 * loss_before
    probs = head.eval().predict(condition_from_masks(
        targets[:3], labels[:3]))['probs'][:, 0]
    pred, truth = probs >= 0.5, torch.from_numpy(masks).bool()
    iou = (pred & truth).sum((1, 2)) / (pred | truth).sum((1, 2))
    assert bool((iou > 0.9).all()), iou


def test_bf16_autocast_runs_the_network_in_bf16_and_the_loss_in_fp32():
    head = randomize_(make_twin())
    sampling_results, gts = positives(fixed_masks())
    condition = with_prototypes(random_condition(3))
    dtypes = []
    head.denoiser.in_conv_mask.register_forward_hook(
        lambda module, args, out: dtypes.append(out.dtype))
    losses = {}
    for amp in (False, True):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            losses[amp] = head.loss_and_target(condition, sampling_results,
                                               gts, TRAIN_CFG)['loss_mask']
    assert dtypes == [torch.float32, torch.bfloat16]
    for key, value in losses[True].items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, losses[False][key], rtol=0.05,
                                   atol=1e-3)


# --------------------------------------------------------------------- #
# checkpoints
# --------------------------------------------------------------------- #
def test_checkpoint_round_trip(tmp_path):
    head = randomize_(make_twin()).eval()
    path = tmp_path / 'twin.pth'
    torch.save(head.state_dict(), path)
    loaded = randomize_(make_twin(), seed=1).eval()
    condition = with_prototypes(random_condition(4))
    assert not torch.equal(
        loaded.predict(condition)['probs'], head.predict(condition)['probs'])
    loaded.load_state_dict(torch.load(path), strict=False)
    for key in ('probs', 'uncertainty'):
        assert torch.equal(
            loaded.predict(condition)[key],
            head.predict(condition)[key])


def test_refuses_a_maskdiff_checkpoint_in_one_line():
    """The two heads' network tensors are the same; mmdet loads with
    strict=False, so without the check the twin would run MaskDiff's
    weights as a regressor."""
    maskdiff = make_maskdiff().state_dict()
    with pytest.raises(ValueError) as info:
        make_twin().load_state_dict(maskdiff, strict=False)
    assert str(info.value) == (
        'RegressionMaskHead: fixed_timestep is missing from the checkpoint; '
        'the checkpoint holds a MaskDiff DiffusionMaskHead, not the '
        'regression twin (RegressionMaskHead): load it with the MaskDiff '
        'config (coco_*shot.py), or train the twin')


def test_maskdiff_head_refuses_a_twin_checkpoint_in_one_line():
    with pytest.raises(ValueError) as info:
        make_maskdiff().load_state_dict(make_twin().state_dict(),
                                        strict=False)
    assert str(info.value) == (
        'DiffusionMaskHead: fixed_timestep is in the checkpoint but not in '
        'the model; the checkpoint holds the regression twin '
        '(RegressionMaskHead), not a DiffusionMaskHead: load it with its '
        'config (configs/maskdiff/coco_*shot_twin.py)')


# --------------------------------------------------------------------- #
# in the detector: coco_5shot_twin.py at CPU scale
# --------------------------------------------------------------------- #
@pytest.fixture(scope='module')
def twin_cfg(synthetic_data, maskdiff_cfg):
    """configs/maskdiff/coco_5shot_twin.py at CPU scale, shrunk like the
    tiny MaskDiff config of conftest.py (its mask-head keys that the twin
    also has)."""
    init_default_scope('mmdet')
    cfg = Config.fromfile('configs/maskdiff/coco_5shot_twin.py')
    cfg.merge_from_dict(
        cpu_scale_options(cfg, synthetic_data['root'], load_from=None))
    head = maskdiff_cfg.model.roi_head.mask_head
    cfg.model.roi_head.mask_head.mask_size = head.mask_size
    cfg.model.roi_head.mask_head.denoiser = copy.deepcopy(head.denoiser)
    cfg.model.train_cfg = copy.deepcopy(maskdiff_cfg.model.train_cfg)
    cfg.model.test_cfg = copy.deepcopy(maskdiff_cfg.model.test_cfg)
    return cfg


def test_detector_trains_and_predicts_with_the_twin(twin_cfg, maskdiff_cfg,
                                                    support_bank,
                                                    train_batch, test_batch):
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(twin_cfg.model))
    maskdiff = MODELS.build(copy.deepcopy(maskdiff_cfg.model))
    head = model.roi_head.mask_head
    assert type(head) is RegressionMaskHead and model.roi_head.needs_condition
    assert model.roi_head.condition_spec == maskdiff.roi_head.condition_spec
    assert set(head.state_dict()) == set(
        maskdiff.roi_head.mask_head.state_dict()) | {'fixed_timestep'}

    model.roi_head.support_encoder.use_bank(support_bank)
    data = model.data_preprocessor(copy.deepcopy(train_batch), True)
    condition, losses = conditions_of_one_step(model, data)
    # the condition the diffusion head would get: region crop, 5 shots,
    # prototypes
    assert condition.region_image.shape[1:] == (3, 16, 16)
    assert condition.shots.shape[1:] == (5, 4, 16, 16)
    assert condition.prototypes.shape[1] == 64
    for key in ('loss_mask', 'loss_dice'):
        assert torch.isfinite(losses[key]) and losses[key].requires_grad
        assert losses[key].item() > 0

    model.eval()
    seen = []
    model.roi_head.mask_head.predict = _recording(head.predict, seen)
    with torch.no_grad():
        sample = model(
            **model.data_preprocessor(copy.deepcopy(test_batch), False),
            mode='predict')[0]
    pred = sample.pred_instances
    n = len(pred)
    assert n > 0 and pred.masks.shape == (n, ) + sample.metainfo['ori_shape']
    # p(1 - p) of the pasted probabilities, computed on no noise keys
    probs = seen[0]['probs'][:, 0]
    assert torch.equal(pred.mask_uncertainty, probs * (1 - probs))
    assert seen[0]['condition'].noise_keys is None


def _recording(predict, seen):
    def wrapper(condition):
        out = predict(condition)
        seen.append(dict(out, condition=condition))
        return out

    return wrapper
