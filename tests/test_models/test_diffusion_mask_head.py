"""DiffusionMaskHead: loss, sampler settings, sampling, pasting."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from _model_helpers import (NUM_CLASSES, TINY_DENOISER, TRAIN_CFG, M,
                            condition_from_masks, fixed_masks, make_head,
                            positives, random_condition, randomize_)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet_maskdiff.diffusion.sampler_settings import (SAMPLER_HOME,
                                                       parse_sampler_settings)
from mmdet_maskdiff.models import MaskCondition


def sampler_cfg(**sampler):
    """These sampler settings, parsed as the RoI head parses its
    ``test_cfg.diffusion_sampling`` (for the heads of ``make_head``)."""
    return make_head_settings(sampler)


NUM_TIMESTEPS = 100  # make_head's T


def make_head_settings(sampler: dict):
    return parse_sampler_settings(sampler, NUM_TIMESTEPS, SAMPLER_HOME)
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def to_device(condition, device):
    return MaskCondition(
        labels=condition.labels.to(device),
        region_image=condition.region_image.to(device),
        shots=condition.shots.to(device))


def test_loss_is_a_finite_scalar_with_exact_targets():
    torch.manual_seed(0)
    head = make_head()
    masks = np.zeros((2, M, M), np.uint8)
    masks[0, :, :M // 2] = 1  # left half
    masks[1, M // 2:, :] = 1  # bottom half
    sampling_results, gts = positives(masks)
    targets = torch.from_numpy(masks).float()
    out = head.loss_and_target(
        condition_from_masks(targets, gts[0].labels), sampling_results, gts,
        TRAIN_CFG)
    loss = out['loss_mask']['loss_mask']
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    # targets are FCNMaskHead's: the gt mask cropped to the RoI
    assert torch.equal(out['mask_targets'], targets)
    loss.backward()
    grads = [p.grad for p in head.denoiser.parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_overfits_fixed_masks_and_samples_them_back():
    """Train on 3 fixed masks whose object region shows the mask: the loss
    falls and DDIM with 5 steps, guidance w = 1, reproduces every mask.

    v-prediction: at this size (100 Adam steps) an ε-model does not learn
    the high-noise steps well enough for deterministic few-step DDIM, while
    v (and x0) do; the head's plumbing under test is the same."""
    torch.manual_seed(0)
    head = make_head(prediction_type='v', class_dropout_prob=0.1)
    masks = fixed_masks()
    repeats = 4
    sampling_results, gts = positives(masks, repeats=repeats)
    targets = head.get_targets(sampling_results, gts, TRAIN_CFG)
    assert torch.equal(targets[:3], torch.from_numpy(masks).float())
    labels = gts[0].labels.repeat(repeats)
    condition = condition_from_masks(targets, labels)

    def loss():
        return head.loss_and_target(condition, sampling_results, gts,
                                    TRAIN_CFG)['loss_mask']['loss_mask']

    torch.manual_seed(1)
    loss_before = loss().item()
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(100):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    torch.manual_seed(1)  # same t, noise and dropped classes as before
    loss_after = loss().item()
    assert loss_after < 0.3 * loss_before

    head.eval()
    test_cfg = sampler_cfg(
        type='ddim', steps=5, guidance_weight=1.0, num_samples=1, seed=0)
    probs = head.predict(
        condition_from_masks(targets[:3], labels[:3]), test_cfg)['probs'][:,
                                                                          0]
    pred, truth = probs >= 0.5, torch.from_numpy(masks).bool()
    iou = (pred & truth).sum((1, 2)) / (pred | truth).sum((1, 2))
    assert bool((iou > 0.9).all()), iou


@pytest.mark.parametrize('sampler, match', [
    (dict(stepz=4), r"sampling: unknown key 'stepz'"),
    (dict(type='euler'), r'sampling\.type must be .*euler'),
    (dict(steps=0), r'sampling\.steps must be None or an int in \[1, 100\]'),
    (dict(steps=101), r'sampling\.steps .*\[1, 100\], got 101'),
    (dict(steps=2.5), r'sampling\.steps'),
    (dict(num_samples=0), r'sampling\.num_samples must be an int >= 1'),
    (dict(chunk_size=0), r'sampling\.chunk_size must be None .* got 0'),
    (dict(eta=-1.0), r'sampling\.eta'),
    (dict(guidance_weight=float('inf')), r'sampling\.guidance_weight'),
    (dict(seed='a'), r'sampling\.seed'),
    (dict(amp='fp16'), r'sampling\.amp'),
])
def test_bad_sampler_settings_are_one_line_errors(sampler, match):
    head = make_head()
    with pytest.raises(ValueError, match=match) as info:
        head.predict(random_condition(1), sampler_cfg(**sampler))
    assert '\n' not in str(info.value)
    assert 'model.test_cfg.rcnn.diffusion_sampling' in str(info.value)


def test_sampler_settings_come_from_the_test_cfg():
    head = make_head()
    defaults = head.parse_test_cfg(None)
    assert defaults == head.parse_test_cfg(ConfigDict())
    assert defaults.steps == 2 and defaults.chunk_size is None
    settings = head.parse_test_cfg(
        ConfigDict(diffusion_sampling=dict(steps=7, seed=None)))
    assert settings.steps == 7 and settings.seed is None
    assert settings.guidance_weight == defaults.guidance_weight
    assert head.sampler.sampling_diffusion(7).num_timesteps == 7
    assert head.sampler.sampling_diffusion(None) is head.diffusion
    # the old homes are gone: an unknown argument, not a silent mapping
    with pytest.raises(TypeError, match='test_sampler'):
        make_head(test_sampler=dict(steps=7))


def test_trajectory_is_returned_only_when_asked():
    head = randomize_(make_head()).eval()
    settings = sampler_cfg(steps=3, seed=0)
    plain = head.predict(random_condition(2), settings)
    assert 'trajectory' not in plain
    out = head.predict(random_condition(2), settings, trajectory_every=1)
    assert torch.equal(out['probs'], plain['probs'])
    assert out['trajectory']['x_t'].shape[0] == 2
    assert len(out['trajectory']['steps']) == 3


@pytest.mark.parametrize('device', DEVICES)
def test_several_samples_give_probabilities_and_uncertainty(device):
    head = randomize_(make_head()).eval().to(device)
    condition = to_device(random_condition(3), device)
    out = head.predict(condition,
                       sampler_cfg(num_samples=4, steps=3, seed=0))
    probs, unc = out['probs'], out['uncertainty']
    assert probs.shape == (3, 1, M, M) and unc.shape == (3, M, M)
    assert probs.min() >= 0 and probs.max() <= 1
    # the fraction of 4 binary samples
    assert torch.equal(probs * 4, (probs * 4).round())
    assert torch.allclose(unc, probs[:, 0] * (1 - probs[:, 0]))
    assert ((probs > 0) & (probs < 1)).any()  # the samples do differ

    single = head.predict(condition,
                          sampler_cfg(num_samples=1, steps=3, seed=0))
    assert set(single['probs'].unique().tolist()) <= {0.0, 1.0}
    assert torch.count_nonzero(single['uncertainty']) == 0


@pytest.mark.parametrize('device', DEVICES)
def test_seed_makes_sampling_reproducible(device):
    head = randomize_(make_head()).eval().to(device)
    condition = to_device(random_condition(4), device)
    test_cfg = sampler_cfg(steps=3, eta=1.0, seed=3)
    first = head.predict(condition, test_cfg)['probs']
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(head.predict(condition, test_cfg)['probs'], first)
    test_cfg = sampler_cfg(steps=3, eta=1.0, seed=4)
    assert not torch.equal(head.predict(condition, test_cfg)['probs'], first)


def select_rois(condition, rows):
    return MaskCondition(
        labels=condition.labels[rows],
        region_image=condition.region_image[rows],
        shots=condition.shots[rows],
        noise_keys=condition.noise_keys[rows])


@pytest.mark.parametrize('sampler', [
    dict(type='ddim', steps=3),
    dict(type='ddim', steps=3, eta=1.0, num_samples=3),
    dict(type='ddpm', steps=4, num_samples=2),
])
def test_roi_noise_follows_its_key_not_its_batch(sampler):
    """x_T, every per-step z and every sample of a RoI come from (seed, key,
    sample): the RoI gets the same mask alone, in another order, in another
    chunking; another key or seed changes it."""
    head = randomize_(make_head()).eval()
    test_cfg = sampler_cfg(seed=5, **sampler)
    condition = random_condition(6)
    condition.noise_keys = torch.tensor([101, 7, 3, 2**32 - 1, 0, 55])
    full = head.predict(condition, test_cfg)['probs']
    rows = [4, 1, 3]
    test_cfg = dataclasses.replace(test_cfg, chunk_size=2)
    assert torch.equal(
        head.predict(select_rois(condition, rows), test_cfg)['probs'],
        full[rows])
    test_cfg = dataclasses.replace(test_cfg, chunk_size=1)
    for row in range(6):
        alone = head.predict(select_rois(condition, [row]), test_cfg)['probs']
        assert torch.equal(alone, full[row:row + 1])
    test_cfg = dataclasses.replace(test_cfg, chunk_size=None)
    # the key matters: row 0 with row 1's key is sampled from other noise
    moved = select_rois(condition, [0, 0])
    moved.noise_keys = condition.noise_keys[[0, 1]]
    probs = head.predict(moved, test_cfg)['probs']
    assert torch.equal(probs[0], full[0]) and not torch.equal(probs[1], full[0])
    test_cfg = dataclasses.replace(test_cfg, seed=6)
    assert not torch.equal(head.predict(condition, test_cfg)['probs'], full)


def _amp_loss(head, amp, seed=0):
    """``diffusion_loss`` of 6 RoIs under CPU bfloat16 autocast or not;
    records the dtype the denoiser is fed and its first conv computes in."""
    seen = {}

    def record_input(module, args):
        seen['y_t'] = args[0].dtype

    def record_output(module, args, out):
        seen['conv'] = out.dtype

    hooks = [
        head.denoiser.register_forward_pre_hook(record_input),
        head.denoiser.in_conv_mask.register_forward_hook(record_output),
    ]
    condition = random_condition(6, seed=seed)
    cond, _ = head.build_condition(condition)
    x0 = (torch.rand(
        6, 1, M, M, generator=torch.Generator().manual_seed(seed))
          > 0.5).float() * 2 - 1
    torch.manual_seed(seed)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        loss = head.diffusion_loss(cond, None, condition.labels, x0)
    for hook in hooks:
        hook.remove()
    return loss, seen


def test_bf16_autocast_runs_the_denoiser_in_bf16_and_the_loss_in_fp32():
    head = randomize_(make_head())
    loss32, seen32 = _amp_loss(head, amp=False)
    loss16, seen16 = _amp_loss(head, amp=True)
    assert seen32 == dict(y_t=torch.float32, conv=torch.float32)
    # the UNet computes in bf16; y_t (forward process) stays fp32
    assert seen16 == dict(y_t=torch.float32, conv=torch.bfloat16)
    assert loss16.dtype == torch.float32 and loss16.shape == (6, )
    # same timesteps and noise: only the network's precision differs
    torch.testing.assert_close(loss16, loss32, rtol=0.05, atol=1e-3)
    loss16.mean().backward()
    grads = [p.grad for p in head.denoiser.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_checkpointed_denoiser_gives_the_same_loss_and_gradients():
    """The head's whole training path (class dropout, random t, noise,
    dropout in the UNet) with ``denoiser.with_cp`` on and off."""
    masks = fixed_masks()
    sampling_results, gts = positives(masks, repeats=2)
    targets = torch.from_numpy(masks).float().repeat(2, 1, 1)
    condition = condition_from_masks(targets, gts[0].labels.repeat(2))
    results = []
    for with_cp in (False, True):
        head = randomize_(
            make_head(denoiser={
                **TINY_DENOISER, 'dropout': 0.2,
                'with_cp': with_cp
            }))
        torch.manual_seed(3)
        loss = head.loss_and_target(condition, sampling_results, gts,
                                    TRAIN_CFG)['loss_mask']['loss_mask']
        loss.backward()
        results.append((loss.detach(), [p.grad for p in head.parameters()]))
    (loss, grads), (loss_cp, grads_cp) = results
    assert loss > 0 and torch.equal(loss, loss_cp)
    assert all(torch.equal(g, g_cp) for g, g_cp in zip(grads, grads_cp))


# ---------------------------------------------------------------------- #
# predict_by_feat: pasting identical to FCNMaskHead
# ---------------------------------------------------------------------- #
IMG_META = dict(img_shape=(60, 80), ori_shape=(30, 40), scale_factor=(2., 2.))
TEST_CFG = ConfigDict(mask_thr_binary=0.5)


def detections(boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    return InstanceData(
        bboxes=boxes,
        labels=torch.zeros(len(boxes), dtype=torch.long),
        scores=torch.ones(len(boxes)))


def fcn_reference(probs, results, meta, rescale):
    """mmdet's FCNMaskHead on the logits of the same probabilities."""
    fcn = FCNMaskHead(
        num_convs=0,
        in_channels=4,
        num_classes=NUM_CLASSES,
        class_agnostic=True)
    logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6))
    return fcn.predict_by_feat((logits, ), [results], [meta],
                               TEST_CFG,
                               rescale=rescale)[0]


@pytest.mark.parametrize('rescale', [True, False])
def test_predict_by_feat_pastes_like_fcn_mask_head(rescale):
    head = make_head()
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 1, M, M, generator=g)
    boxes = [[3, 4, 40, 30], [0, 0, 80, 60], [50.5, 10.2, 79, 59],
             [10, 20, 12, 21]]
    ours = head.predict_by_feat((probs.clone(), ), [detections(boxes)],
                                [IMG_META],
                                TEST_CFG,
                                rescale=rescale)[0]
    ref = fcn_reference(probs.clone(), detections(boxes), IMG_META, rescale)
    shape = IMG_META['ori_shape'] if rescale else IMG_META['img_shape']
    assert ours.masks.dtype == torch.bool
    assert ours.masks.shape == (4, ) + shape
    assert torch.equal(ours.masks, ref.masks)
    assert ours.masks.any()
    if rescale:  # boxes are returned in the original image, as FCN does
        assert torch.allclose(ours.bboxes, torch.tensor(boxes) / 2)


def test_predict_by_feat_rescale_places_the_mask():
    """A full-foreground RoI (8, 8, 40, 24) in the resized image covers
    (4, 4, 20, 12) of the original image, which is half the size."""
    head = make_head()
    probs = torch.ones(1, 1, M, M)
    full = head.predict_by_feat((probs, ), [detections([8, 8, 40, 24])],
                                [IMG_META],
                                TEST_CFG,
                                rescale=True)[0].masks
    rows, cols = torch.nonzero(full[0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 11, 4, 19)
    assert full[0].sum() == 8 * 16
    resized = head.predict_by_feat((probs, ), [detections([8, 8, 40, 24])],
                                   [IMG_META],
                                   TEST_CFG,
                                   rescale=False)[0].masks
    assert resized.shape == (1, 60, 80) and resized[0].sum() == 16 * 32


@pytest.mark.parametrize('rescale', [True, False])
def test_predict_by_feat_without_detections(rescale):
    head = make_head()
    empty = head.predict_by_feat((torch.zeros(0, 1, M, M), ), [detections([])],
                                 [IMG_META],
                                 TEST_CFG,
                                 rescale=rescale)[0]
    ref = fcn_reference(
        torch.zeros(0, 1, M, M), detections([]), IMG_META, rescale)
    assert empty.masks.dtype == torch.bool
    assert empty.masks.shape == ref.masks.shape
    if rescale:
        assert empty.masks.shape == (0, 30, 40)


def test_predict_by_feat_mixed_batch():
    """An image without detections next to one with detections."""
    head = make_head()
    probs = torch.ones(1, 1, M, M)
    metas = [IMG_META, dict(IMG_META)]
    results = head.predict_by_feat(
        (probs, torch.zeros(0, 1, M, M)),
        [detections([8, 8, 40, 24]),
         detections([])],
        copy.deepcopy(metas),
        TEST_CFG,
        rescale=True)
    assert results[0].masks.shape == (1, 30, 40)
    assert results[1].masks.shape == (0, 30, 40)


def test_checkpoint_with_additive_blocks_is_named_as_such():
    """A stage-2 checkpoint of the additive residual blocks (``time_proj``
    with C rows, before the scale-shift fix) is refused with its cause."""
    head = make_head()
    old = {
        key: (value[:value.shape[0] // 2] if '.time_proj.' in key else value)
        for key, value in head.state_dict().items()
    }
    with pytest.raises(ValueError,
                       match=r'time_proj\.weight has shape .*additive residual '
                       r'blocks .*retrain stage 2'):
        make_head().load_state_dict(old, strict=False)
