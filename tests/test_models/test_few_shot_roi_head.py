"""FewShotRoIHead: the K-shot information k, its cache, and the edge paths
(zero detections, zero positives, classes without support)."""
import copy

import pytest
import torch
from _model_helpers import conditions_of_one_step
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

from mmdet_maskdiff.datasets.synthetic_class_splits import SYNTHETIC_CLASSES
from mmdet_maskdiff.models import QueryContext
from mmdet_maskdiff.structures import SupportBank

S = 32  # support crop side
MEAN = torch.tensor([123.675, 116.28, 103.53])  # RGB, of the config
STD = torch.tensor([58.395, 57.12, 57.375])
RED, BLUE = (0, 0, 200), (200, 0, 0)  # BGR


def coloured_bank(entries):
    """A hand-made bank: ``entries`` = [(label, img_id, bgr), ...]; every
    crop is one flat colour, every mask the left half of the crop."""
    num = len(entries)
    crops = torch.zeros(num, 3, S, S, dtype=torch.uint8)
    for i, (_, _, bgr) in enumerate(entries):
        crops[i] = torch.tensor(bgr, dtype=torch.uint8)[:, None, None]
    masks = torch.zeros(num, 1, S, S, dtype=torch.uint8)
    masks[..., :S // 2] = 1
    return SupportBank(
        crops=crops,
        masks=masks,
        labels=torch.tensor([e[0] for e in entries]),
        img_ids=torch.tensor([e[1] for e in entries]),
        num_classes=len(SYNTHETIC_CLASSES),
        class_names=SYNTHETIC_CLASSES)


def normalised(bgr):
    """A flat BGR colour through the config's preprocessing: (3, )."""
    rgb = torch.tensor(bgr, dtype=torch.float32).flip(0)
    return (rgb - MEAN) / STD


def inputs(model, batch, training):
    return model.data_preprocessor(copy.deepcopy(batch), training)


def predict(model, data):
    with torch.no_grad():
        return model(**data, mode='predict')


def test_test_shots_are_the_first_k_crops_and_masks(build_model, test_batch):
    """k of a class at test time: its first K bank instances in bank order
    (cycled), each the normalised crop and the mask in [-1, 1]."""
    model = build_model().eval()
    entries = []
    for label in range(len(SYNTHETIC_CLASSES)):
        entries += [(label, 100 + label, RED), (label, 200 + label, BLUE)]
    model.roi_head.support_encoder.use_bank(coloured_bank(entries))
    predict(model, inputs(model, test_batch, False))

    lookup, support = model.roi_head.support_encoder._test_cache
    assert support.shots.shape == (8, 5, 4, 16, 16)  # (classes, K, 4, m, m)
    assert torch.equal(lookup, torch.arange(8))
    colour = support.shots[:, :, :3, 0, 0]  # every pixel is the same
    assert torch.allclose(support.shots[:, :, :3],
                          colour[..., None, None].expand(-1, -1, -1, 16, 16))
    for shot, bgr in enumerate([RED, BLUE, RED, BLUE, RED]):  # cycled
        assert torch.allclose(colour[:, shot], normalised(bgr), atol=1e-5)
    mask = support.shots[:, :, 3]
    assert torch.all(mask[..., :8] == 1) and torch.all(mask[..., 8:] == -1)
    assert support.prototypes.shape == (8, 64)


def test_training_shots_come_from_other_images(build_model, train_batch):
    """The query's own instances are never its shots (while another image
    holds one of the class)."""
    model = build_model()
    data = inputs(model, train_batch, True)
    query_id = data['data_samples'][0].metainfo['img_id']
    entries = []
    for label in range(len(SYNTHETIC_CLASSES)):
        entries += [(label, query_id, RED), (label, query_id + 1000, BLUE)]
    model.roi_head.support_encoder.use_bank(coloured_bank(entries))
    condition, _ = conditions_of_one_step(model, data)
    num = len(condition)
    assert num > 0
    gt_labels = data['data_samples'][0].gt_instances.labels
    assert set(condition.labels.tolist()) <= set(gt_labels.tolist())
    blue = normalised(BLUE)[None, None, :, None, None]
    assert torch.allclose(
        condition.shots[:, :, :3], blue.expand(num, 5, 3, 16, 16), atol=1e-5)
    assert condition.region_image.shape == (num, 3, 16, 16)
    assert condition.prototypes.shape == (num, 64)


def test_test_support_cache_is_reused_then_refreshed_after_a_step(
        build_model, support_bank, train_batch, test_batch):
    # the backbone trains too; keep detections whatever the step does
    model = build_model(frozen_modules=(), **{'test_cfg.rcnn.score_thr': 0.})
    model.roi_head.support_encoder.use_bank(support_bank)
    encodes = []
    encoder = model.roi_head.support_encoder
    original = encoder._encode

    def counting(indices, *args):
        encodes.append(indices.shape)
        return original(indices, *args)

    encoder._encode = counting
    query = inputs(model, test_batch, False)

    model.eval()
    predict(model, query)
    cached = encoder._test_cache
    assert cached is not None and len(encodes) == 1
    predict(model, query)
    assert encoder._test_cache is cached and len(encodes) == 1
    old_lookup, old = cached

    # train() alone drops the cache, but the weights are unchanged
    model.train()
    assert encoder._test_cache is None
    model.eval()
    predict(model, query)
    assert torch.allclose(encoder._test_cache[1].prototypes,
                          old.prototypes)

    # one optimizer step changes the encoder: new prototypes, same crops
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    losses = model(**inputs(model, train_batch, True), mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    optim.update_params(loss)
    model.train()
    assert encoder._test_cache is None
    model.eval()
    encodes.clear()
    predict(model, query)
    lookup, new = encoder._test_cache
    assert encodes == [(8, 5)]  # all 8 classes, K = 5, encoded once
    assert torch.equal(lookup, old_lookup)
    assert not torch.allclose(new.prototypes, old.prototypes)
    assert torch.equal(new.shots, old.shots)

    # a new bank drops the cache too
    encoder.use_bank(support_bank)
    assert encoder._test_cache is None


def query_context(model, data):
    return model.roi_head.query_context(
        QueryContext(
            images=data['inputs'],
            img_ids=[-1],
            normalize=model.normalize_support,
            extract_feat=model.extract_feat))


def test_class_without_support_raises_naming_it(build_model, test_batch):
    model = build_model().eval()
    # no instance of 'heart' (label 7)
    model.roi_head.support_encoder.use_bank(
        coloured_bank([(label, label, RED) for label in range(7)]))
    data = inputs(model, test_batch, False)
    detections = InstanceData(
        bboxes=torch.tensor([[10., 10., 60., 60.], [0., 0., 30., 40.]]),
        labels=torch.tensor([2, 7]),
        scores=torch.tensor([0.9, 0.8]))
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad(), query_context(model, data):
        x = model.extract_feat(data['inputs'])
        with pytest.raises(ValueError, match="heart"):
            model.roi_head.predict_mask(x, metas, [detections])
        # a detection of a class with support is fine
        ok = model.roi_head.predict_mask(x, metas, [detections[:1]])
    assert ok[0].masks.shape == (1, ) + metas[0]['img_shape']


def test_mask_branch_needs_context_and_bank(build_model, support_bank,
                                            test_batch):
    model = build_model().eval()
    data = inputs(model, test_batch, False)
    metas = [s.metainfo for s in data['data_samples']]
    detections = InstanceData(
        bboxes=torch.tensor([[10., 10., 60., 60.]]),
        labels=torch.tensor([0]),
        scores=torch.tensor([0.9]))
    with torch.no_grad():
        x = model.extract_feat(data['inputs'])
        with pytest.raises(RuntimeError, match='MaskDiffRCNN'):
            model.roi_head.predict_mask(x, metas, [detections])
        with query_context(model, data), pytest.raises(
                RuntimeError, match='SupportSetHook'):
            model.roi_head.predict_mask(x, metas, [detections])


def test_zero_detections_give_empty_masks(build_model, support_bank,
                                          test_batch):
    model = build_model(**{'test_cfg.rcnn.score_thr': 1.1}).eval()
    model.roi_head.support_encoder.use_bank(support_bank)
    sample = predict(model, inputs(model, test_batch, False))[0]
    pred = sample.pred_instances
    h, w = sample.metainfo['ori_shape']
    assert len(pred) == 0
    assert pred.masks.dtype == torch.bool and pred.masks.shape == (0, h, w)
    assert pred.mask_uncertainty.shape == (0, 16, 16)


def test_zero_positive_rois_give_a_zero_mask_loss(build_model, support_bank,
                                                  train_batch):
    model = build_model(
        **{
            'train_cfg.rcnn.assigner.pos_iou_thr': 1.1,
            'train_cfg.rcnn.assigner.min_pos_iou': 1.1,
            'train_cfg.rcnn.sampler.add_gt_as_proposals': False,
        })
    model.roi_head.support_encoder.use_bank(support_bank)
    model.train()
    losses = model(**inputs(model, train_batch, True), mode='loss')
    loss_mask = losses['loss_mask']
    assert loss_mask.item() == 0.0 and loss_mask.requires_grad
    loss_mask.backward()
    for p in model.roi_head.mask_head.parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


def test_class_only_in_the_query_gets_null_shots_not_itself(
        build_model, train_batch):
    """K = 1 novel case: the only support instance of a class lies in the
    query image. The RoI must not see it (that would be its own object);
    it gets null shots, other classes still get real ones."""
    model = build_model()
    data = inputs(model, train_batch, True)
    query_id = data['data_samples'][0].metainfo['img_id']
    gt_labels = data['data_samples'][0].gt_instances.labels.unique().tolist()
    lonely = gt_labels[0]
    entries = [(lonely, query_id, RED)]
    for label in range(len(SYNTHETIC_CLASSES)):
        if label != lonely:
            entries += [(label, query_id, RED), (label, query_id + 1000, BLUE)]
    model.roi_head.support_encoder.use_bank(coloured_bank(entries))
    condition, _ = conditions_of_one_step(model, data)
    is_lonely = condition.labels == lonely
    assert is_lonely.any()
    null = condition.shots[is_lonely]
    assert torch.equal(null[:, :, :3], torch.zeros_like(null[:, :, :3]))
    assert torch.equal(null[:, :, 3], -torch.ones_like(null[:, :, 3]))
    assert torch.equal(condition.prototypes[is_lonely],
                       torch.zeros_like(condition.prototypes[is_lonely]))
    assert condition.train_rois is None  # 'null': every RoI trains
    if (~is_lonely).any():
        blue = normalised(BLUE)[None, None, :, None, None]
        others = condition.shots[~is_lonely][:, :, :3]
        assert torch.allclose(others, blue.expand_as(others), atol=1e-5)


def test_support_fallback_drop_leaves_lonely_rois_out_of_the_loss(
        build_model, train_batch):
    model = build_model(**{'train_cfg.rcnn.support_fallback': 'drop'})
    data = inputs(model, train_batch, True)
    query_id = data['data_samples'][0].metainfo['img_id']
    # every class lives only in the query image: every RoI is dropped
    model.roi_head.support_encoder.use_bank(
        coloured_bank([(label, query_id, RED)
                       for label in range(len(SYNTHETIC_CLASSES))]))
    condition, losses = conditions_of_one_step(model, data)
    assert len(condition) > 0
    assert condition.train_rois is not None
    assert not condition.train_rois.any()
    assert losses['loss_mask'].item() == 0.0


def test_support_fallback_setting_is_checked(build_model):
    with pytest.raises(ValueError, match='support_fallback'):
        build_model(**{'train_cfg.rcnn.support_fallback': 'self'})
