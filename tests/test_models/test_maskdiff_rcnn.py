"""MaskDiffRCNN from the COCO 5-shot config: loss, predict, stage-2 freezing,
support preprocessing."""
import copy

import pytest
import torch
from mmengine.optim import OptimWrapper

from mmdet.registry import MODELS
from mmdet_maskdiff.apis import get_diffusion_sampling, set_diffusion_sampling
from mmdet_maskdiff.models import support_encoder_of
from mmdet_maskdiff.models.roi_heads.few_shot_roi_head import (
    TRAJECTORY_REQUEST, TRAJECTORY_RESULT)

STAGE2_FROZEN = ('backbone', 'neck', 'rpn_head', 'roi_head.bbox_head')


def inputs(model, batch, training):
    return model.data_preprocessor(copy.deepcopy(batch), training)


def test_config_builds_the_stage2_model(build_model):
    model = build_model()
    assert type(model).__name__ == 'MaskDiffRCNN'
    assert type(model.roi_head).__name__ == 'FewShotRoIHead'
    head = model.roi_head.mask_head
    assert type(head).__name__ == 'DiffusionMaskHead'
    assert model.frozen_modules == STAGE2_FROZEN
    assert (head.num_shots, head.mask_size, head.num_timesteps) == (5, 16, 100)


def test_loss_mode(build_model, support_bank, train_batch):
    model = build_model()
    model.roi_head.support_encoder.use_bank(support_bank)
    model.train()
    losses = model(**inputs(model, train_batch, True), mode='loss')
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                'loss_mask'):
        assert key in losses
    loss_mask = losses['loss_mask']
    assert loss_mask.dim() == 0 and torch.isfinite(loss_mask)
    assert loss_mask.item() > 0 and loss_mask.requires_grad
    # stage 2: the frozen detector's losses carry no gradient
    assert not losses['loss_cls'].requires_grad
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total) and 'loss_mask' in log_vars


def test_predict_mode(build_model, support_bank, test_batch):
    model = build_model().eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    with torch.no_grad():
        samples = model(**inputs(model, test_batch, False), mode='predict')
    assert len(samples) == 1
    pred = samples[0].pred_instances
    h, w = samples[0].metainfo['ori_shape']
    n = len(pred)
    assert 0 < n <= 3  # test_cfg.rcnn.max_per_img
    assert pred.masks.dtype == torch.bool and pred.masks.shape == (n, h, w)
    assert pred.mask_uncertainty.shape == (n, 16, 16)
    assert torch.count_nonzero(pred.mask_uncertainty) == 0  # one sample
    assert pred.labels.max() < 8 and pred.scores.shape == (n, )
    # masks are pasted into their boxes (a pixel of slack at the border)
    for mask, box in zip(pred.masks, pred.bboxes):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        if len(rows):
            assert rows.min() >= box[1].floor() - 1
            assert rows.max() <= box[3].ceil()
            assert cols.min() >= box[0].floor() - 1
            assert cols.max() <= box[2].ceil()


def test_num_samples_reach_the_uncertainty(build_model, support_bank,
                                           test_batch):
    model = build_model().eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    # an untrained x0 network outputs exactly 0 (zero-initialised output
    # layers), whatever the noise; random zero-initialised weights make its
    # samples depend on the noise, as a trained network's do
    torch.manual_seed(0)
    for name, param in model.roi_head.mask_head.denoiser.named_parameters():
        if not param.any():
            torch.nn.init.normal_(param, std=0.2)
    set_diffusion_sampling(model, num_samples=3)
    with torch.no_grad():
        pred = model(
            **inputs(model, test_batch, False),
            mode='predict')[0].pred_instances
    unc = pred.mask_uncertainty
    # p (1 - p) for p in {0, 1/3, 2/3, 1}
    values = unc.unique()
    assert torch.all((values == 0)
                     | torch.isclose(values, torch.tensor(2 / 9)))
    assert (values > 0).any()  # the 3 samples of a RoI do differ


def count_denoiser_calls(model, batch) -> int:
    calls = []
    handle = model.roi_head.mask_head.denoiser.register_forward_hook(
        lambda *args: calls.append(1))
    with torch.no_grad():
        pred = model(**inputs(model, batch, False), mode='predict')
    handle.remove()
    assert sum(len(p.pred_instances) for p in pred) > 0
    return len(calls)


def test_cfg_option_on_test_cfg_reaches_the_sampling(build_model,
                                                     support_bank,
                                                     test_batch):
    """--cfg-options model.test_cfg.rcnn.diffusion_sampling.steps=4: the head runs 4
    denoiser steps (w = 1 is one batched forward per step), not the
    config's 2."""
    for steps in (None, 4):
        keys = {} if steps is None else {'test_cfg.rcnn.diffusion_sampling.steps': steps}
        model = build_model(**keys).eval()
        model.roi_head.support_encoder.use_bank(support_bank)
        assert count_denoiser_calls(model, test_batch) == (steps or 2)
        assert get_diffusion_sampling(model)['steps'] == (steps or 2)
    # and a loaded model takes a new value through set_diffusion_sampling
    set_diffusion_sampling(model, steps=3)
    assert model.roi_head.test_cfg.diffusion_sampling.steps == 3
    assert count_denoiser_calls(model, test_batch) == 3


@pytest.mark.parametrize('key, value, match', [
    ('chunk_size', 0, r'model\.test_cfg\.rcnn\.diffusion_sampling\.'
     r'chunk_size must be None \(all RoIs in one pass\) or an int >= 1, '
     r'got 0'),
    ('steps', 101, r'sampling\.steps must be None or an int in \[1, 100\]'),
    ('num_samples', 0, r'sampling\.num_samples must be an int >= 1'),
    ('stepz', 4, r"sampling: unknown key 'stepz'"),
])
def test_bad_sampler_settings_fail_when_the_model_is_built(
        build_model, key, value, match):
    with pytest.raises(ValueError, match=match) as info:
        build_model(**{f'test_cfg.rcnn.diffusion_sampling.{key}': value})
    assert '\n' not in str(info.value)


def test_fast_path_switch_reaches_the_sampling(build_model, support_bank,
                                              test_batch):
    """--cfg-options ...sampler.fast.enabled=True (and devices, compile)
    turn the config's fast path on: the denoiser sees bucket sizes only."""
    prefix = 'test_cfg.rcnn.diffusion_sampling.fast.'
    model = build_model(
        **{
            prefix + 'enabled': True,
            prefix + 'devices': ('cpu', ),
            prefix + 'compile': False,
            prefix + 'bucket_sizes': (16, ),
        }).eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    batches = []
    model.roi_head.mask_head.denoiser.register_forward_hook(
        lambda module, args, out: batches.append(args[0].shape[0]))
    with torch.no_grad():
        model(**inputs(model, test_batch, False), mode='predict')
    assert batches and set(batches) == {16 * 2}  # guidance doubles
    with pytest.raises(ValueError, match=r'fast\.compile runs on CUDA only'):
        build_model(**{prefix + 'enabled': True, prefix + 'devices': ('cpu', )})


def test_set_diffusion_sampling_checks_before_it_writes(build_model):
    model = build_model()
    before = dict(model.roi_head.test_cfg.diffusion_sampling)
    with pytest.raises(ValueError, match='num_samples'):
        set_diffusion_sampling(model, num_samples=0)
    assert dict(model.roi_head.test_cfg.diffusion_sampling) == before


def snapshot(module):
    return {
        name: tensor.detach().clone()
        for name, tensor in list(module.named_parameters()) +
        list(module.named_buffers())
    }


@pytest.mark.parametrize('optimizer', ['AdamW', 'SGD'])
def test_stage2_keeps_the_detector_bit_identical(build_model, support_bank,
                                                 train_batch, optimizer):
    model = build_model()
    model.roi_head.support_encoder.use_bank(support_bank)
    model.train()
    frozen = {
        name: snapshot(model.get_submodule(name))
        for name in STAGE2_FROZEN
    }
    head_before = snapshot(model.roi_head.mask_head)
    assert any('running_mean' in k for k in frozen['backbone'])
    # as the runner does: every parameter goes to the optimizer
    if optimizer == 'AdamW':
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    optim_wrapper = OptimWrapper(opt, clip_grad=dict(max_norm=1.0))
    for _ in range(2):
        losses = model(**inputs(model, train_batch, True), mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)

    for name, before in frozen.items():
        after = snapshot(model.get_submodule(name))
        for key, value in before.items():
            assert torch.equal(after[key], value), f'{name}.{key} changed'
    head_after = snapshot(model.roi_head.mask_head)
    changed = [
        k for k, v in head_before.items() if not torch.equal(head_after[k], v)
    ]
    assert 'denoiser.out.2.weight' in changed
    assert len(changed) > len(head_before) // 2


def test_frozen_modules_stay_in_eval_mode(build_model):
    model = build_model()
    for _ in range(2):
        model.train()
        for name in STAGE2_FROZEN:
            module = model.get_submodule(name)
            assert not any(m.training for m in module.modules()), name
            assert not any(p.requires_grad for p in module.parameters())
        head = model.roi_head.mask_head
        assert all(m.training for m in head.modules())
        assert all(p.requires_grad for p in head.parameters())
        assert model.training and model.roi_head.training
    model.eval()
    assert not any(m.training for m in model.modules())


def test_tfa_freezing_leaves_the_last_box_layers_trainable(build_model):
    model = build_model(
        frozen_modules=('backbone', 'neck', 'rpn_head',
                        'roi_head.bbox_head.shared_fcs'))
    bbox_head = model.roi_head.bbox_head
    assert all(p.requires_grad for p in bbox_head.fc_cls.parameters())
    assert all(p.requires_grad for p in bbox_head.fc_reg.parameters())
    assert not any(p.requires_grad for p in bbox_head.shared_fcs.parameters())


def test_unknown_frozen_module_raises(build_model):
    with pytest.raises(ValueError, match=r"'roi_head\.nope'"):
        build_model(frozen_modules=('backbone', 'roi_head.nope'))


def test_normalize_support_matches_the_data_preprocessor(build_model):
    model = build_model()
    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (2, 3, 8, 8), generator=g, dtype=torch.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    expected = (crops.flip(1).float() - mean) / std  # BGR -> RGB
    assert torch.allclose(model.normalize_support(crops), expected, atol=1e-5)


def test_support_set_needs_a_few_shot_roi_head(maskdiff_cfg):
    cfg = copy.deepcopy(maskdiff_cfg.model)
    cfg.roi_head.type = 'StandardRoIHead'
    cfg.roi_head.mask_head = None
    model = MODELS.build(cfg)
    with pytest.raises(TypeError,
                       match='needs model.roi_head to be a FewShotRoIHead, '
                       'got StandardRoIHead'):
        support_encoder_of(model)


def test_trajectory_request_travels_with_the_batch(build_model, support_bank,
                                                   test_batch):
    """A data-sample meta key asks for the reverse chain; it comes back in
    the first image's pred_instances.metainfo, and only for that batch: the
    model keeps no state between batches."""
    model = build_model().eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    asked = inputs(model, test_batch, False)
    for sample in asked['data_samples']:
        sample.set_metainfo({TRAJECTORY_REQUEST: 1})
    with torch.no_grad():
        with_chain = model(**asked, mode='predict')
        plain = model(**inputs(model, test_batch, False), mode='predict')
    trajectory = with_chain[0].pred_instances.metainfo[TRAJECTORY_RESULT]
    num = sum(len(p.pred_instances) for p in with_chain)
    assert trajectory['steps'] == [99, 0]  # T = 100, the config's 2 steps
    assert trajectory['x_t'].shape[:2] == (num, 2)
    assert all(TRAJECTORY_RESULT not in p.pred_instances.metainfo
               for p in plain)
    for a, b in zip(with_chain, plain):  # asking changes no mask
        assert torch.equal(a.pred_instances.masks, b.pred_instances.masks)


def test_update_diffusion_sampling_needs_a_sampling_head(build_model):
    model = build_model()
    assert model.roi_head.update_diffusion_sampling(steps=3).steps == 3
    assert model.roi_head.diffusion_sampling.steps == 3
    model.roi_head.diffusion_sampling = None  # as for the twin / FCN
    with pytest.raises(ValueError, match='DiffusionMaskHead'):
        set_diffusion_sampling(model, steps=3)
