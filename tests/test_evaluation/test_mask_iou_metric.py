"""MaskIoUMetric, the mask IoU and the RoI-grid error of the oracle-box
loop, and the config changes and tables of the oracle-box (mask quality)
run."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from pycocotools import mask as mask_util

from mmdet_maskdiff.engine.runner.oracle_box_loop import (
    decode_gt_masks, mask_ious, oracle_detections, roi_uncertainty_and_error)
from mmdet_maskdiff.evaluation import MaskIoUMetric
from mmdet_maskdiff.evaluation.mask_quality import (
    MASK_QUALITY_ITEMS, apply_mask_quality, format_mask_quality_table,
    format_uncertainty_table, summarize_mask_quality, summarize_uncertainty)

CLASSES = ('a', 'b', 'c')


def _sample(labels, ious):
    return dict(
        pred_instances=dict(
            labels=torch.tensor(labels),
            gt_mask_iou=torch.tensor(ious, dtype=torch.float32)))


def test_mean_over_instances_per_split():
    metric = MaskIoUMetric(class_splits=dict(base=['a', 'b'], novel=['c']))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [
        _sample([0, 1, 2], [0.5, 1.0, 0.25]),
        _sample([0, 2], [float('nan'), 0.75]),  # no gt mask: skipped
        _sample([], []),
    ])
    results = metric.evaluate(size=3)
    assert results == {
        'oracle/all/mIoU': 0.625,  # (0.5 + 1 + 0.25 + 0.75) / 4
        'oracle/base/mIoU': 0.75,
        'oracle/novel/mIoU': 0.5,
    }


def test_keywords_and_empty_split():
    metric = MaskIoUMetric()  # BASE / NOVEL from the dataset
    metric.dataset_meta = dict(
        classes=CLASSES, base_classes=('a', ), novel_classes=('b', 'c'))
    metric.process({}, [_sample([0, 0], [0.2, 0.4])])
    results = metric.evaluate(size=1)
    assert results['oracle/base/mIoU'] == pytest.approx(0.3)
    assert results['oracle/novel/mIoU'] == -1  # no novel instance


def test_needs_the_oracle_loop():
    metric = MaskIoUMetric(class_splits=dict())
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(KeyError, match='OracleBoxTestLoop'):
        metric.process({}, [dict(pred_instances=dict(labels=torch.zeros(1)))])
    with pytest.raises(ValueError, match='reserved'):
        MaskIoUMetric(class_splits=dict(all='ALL'))


def test_mask_ious_decode_every_coco_format():
    h, w = 20, 30
    gt = np.zeros((h, w), np.uint8)
    gt[5:15, 10:20] = 1  # 100 px
    pred = torch.zeros((3, h, w), dtype=torch.bool)
    pred[:, 5:15, 10:15] = True  # half of it: IoU 0.5
    polygon = [[10, 5, 20, 5, 20, 15, 10, 15]]
    compressed = mask_util.encode(np.asfortranarray(gt))
    # column-major runs: 10 empty columns + 5 px, then 10 on / 10 off
    uncompressed = dict(
        size=[h, w], counts=[10 * h + 5] + [10, 10] * 9 + [10, 195])
    for segm in (compressed, uncompressed):
        assert (mask_util.decode(mask_util.frPyObjects(segm, h, w)
                                 if isinstance(segm['counts'], list) else
                                 segm) == gt).all()
    ious = mask_ious(pred,
                     decode_gt_masks([compressed, uncompressed, None], h, w),
                     h, w)
    assert ious[:2].tolist() == [0.5, 0.5]
    assert torch.isnan(ious[2])
    # a polygon is rasterised by pycocotools exactly as COCOeval does
    ref = mask_util.decode(
        mask_util.merge(mask_util.frPyObjects(polygon, h, w))).astype(bool)
    expected = (pred[0].numpy() & ref).sum() / (pred[0].numpy() | ref).sum()
    assert mask_ious(pred[:1], decode_gt_masks([polygon], h, w), h,
                     w)[0].item() == pytest.approx(expected)
    with pytest.raises(ValueError, match='original size'):
        mask_ious(pred, decode_gt_masks([polygon] * 3, h + 1, w), h + 1, w)


def test_roi_error_on_the_roi_grid_by_hand():
    """A 40 x 40 image whose ground truth is the columns x in [10, 26), on
    4 x 4 RoI grids. RoI 0 is the whole image (cells of 10 x 10 px): cell 1
    is all object, cell 2 is 6/10 object (>= 0.5 after RoIAlign: object).
    RoI 1 is x in [10, 30) (cells of 5 x 10 px): cells 0-2 are object,
    cell 3 holds one object column of five. RoI 2 has no ground-truth
    mask: no error."""
    gt = torch.zeros((40, 40), dtype=torch.bool)
    gt[:, 10:26] = True
    bboxes = np.array([[0, 0, 40, 40], [10, 0, 30, 40], [0, 0, 40, 40]],
                      np.float32)
    probs = torch.zeros((3, 4, 4))
    probs[0, :, 1] = 0.9  # right, uncertain 0.09
    probs[0, :, 2] = 0.2  # wrong
    probs[1] = 0.5  # >= the threshold: object everywhere
    probs[2] = 1.0
    uncertainty, error = roi_uncertainty_and_error(probs, 0.5,
                                                   [gt, gt, None], bboxes)
    assert torch.allclose(uncertainty, probs * (1 - probs))
    expected = torch.zeros((3, 4, 4), dtype=torch.bool)
    expected[0, :, 2] = True  # object, predicted background
    expected[1, :, 3] = True  # mostly background, predicted object
    assert torch.equal(error, expected)
    # an 8 x 8 grid of the whole image (5 x 5 px cells): cells 2-4 are
    # object, cell 5 (x in [25, 30)) is one fifth object
    eight = torch.zeros((1, 8, 8))
    _, error = roi_uncertainty_and_error(eight, 0.5, [gt], bboxes[:1])
    assert error[0].nonzero()[:, 1].unique().tolist() == [2, 3, 4]


def test_oracle_detections_scale_and_flip():
    truth = dict(
        bboxes=np.array([[1., 2., 11., 22.]], np.float32),
        labels=np.array([4]))
    dets = oracle_detections(truth, dict(scale_factor=(2., 0.5)), 'cpu')
    assert dets.bboxes.tolist() == [[2., 1., 22., 11.]]
    assert dets.labels.tolist() == [4] and dets.scores.tolist() == [1.]
    with pytest.raises(ValueError, match='flip'):
        oracle_detections(truth, dict(scale_factor=(1., 1.), flip=True),
                          'cpu')


def test_apply_mask_quality():
    cfg = Config(
        dict(
            test_cfg=dict(type='TestLoop'),
            test_evaluator=dict(
                type='FewShotCocoMetric',
                ann_file='x.json',
                metric=['bbox', 'segm'],
                class_splits=dict(novel='NOVEL'))))
    apply_mask_quality(cfg)
    assert cfg.test_cfg == dict(type='OracleBoxTestLoop', fp16=False)
    coco, iou, uncertainty = cfg.test_evaluator
    assert (coco.type, coco.metric, coco.ann_file) == ('FewShotCocoMetric',
                                                       'segm', 'x.json')
    assert coco.metric_items == list(MASK_QUALITY_ITEMS)
    assert (iou.type, uncertainty.type) == ('MaskIoUMetric',
                                            'MaskUncertaintyMetric')
    assert coco.class_splits == iou.class_splits == dict(novel='NOVEL')
    assert uncertainty.class_splits == dict(novel='NOVEL')
    # a plain CocoMetric has no splits: 'all' only
    cfg = Config(
        dict(test_evaluator=[dict(type='mmdet.CocoMetric', ann_file='y')]))
    apply_mask_quality(cfg)
    assert cfg.test_evaluator[0].class_splits == {}
    cfg = Config(dict(test_evaluator=dict(type='VOCMetric')))
    with pytest.raises(ValueError, match=r"no CocoMetric.*\['VOCMetric'\]"):
        apply_mask_quality(cfg)


def test_summary_and_table():
    metrics = {
        'coco/all/segm_mAP': 0.5,
        'coco/novel/segm_mAP_95': 0.1234,
        'coco/base/segm_mAP': -1.0,  # no ground truth: left out
        'oracle/novel/mIoU': 0.8,
        'coco/segm_a_precision': 0.3,  # per-class keys are not split rows
    }
    summary = summarize_mask_quality(metrics)
    assert summary == dict(
        novel=dict(segm_mAP_95=12.3, mIoU=80.0), all=dict(segm_mAP=50.0))
    table = format_mask_quality_table(dict(m=summary)).splitlines()
    assert table[0] == ('| method | split | AP | AP50 | AP75 | AP85 | AP95 | '
                        'mIoU |')
    assert table[2] == '| m | novel | - | - | - | - | 12.3 | 80.0 |'


def test_uncertainty_summary_and_table():
    metrics = {
        'uncertainty/novel/pixel_error': 0.0812,
        'uncertainty/novel/mean_uncertainty': 0.0123,
        'uncertainty/novel/error_auroc': 0.8125,
        'uncertainty/novel/iou_spearman': -0.25,  # negative: kept
        'uncertainty/all/pixel_error': 0.05,
        'oracle/all/mIoU': 0.8,
    }
    summary = summarize_uncertainty(metrics)
    assert summary == dict(
        novel=dict(
            pixel_error=0.0812,
            mean_uncertainty=0.0123,
            error_auroc=0.8125,
            iou_spearman=-0.25),
        all=dict(pixel_error=0.05))
    table = format_uncertainty_table(dict(m=summary)).splitlines()
    assert table[0] == ('| method | split | pixel error % | mean p(1-p) | '
                        'AUROC p(1-p) vs error | Spearman mean p(1-p) vs '
                        '1-IoU |')
    assert table[2] == '| m | novel | 8.1 | 0.0123 | 0.812 | -0.250 |'
    assert table[3] == '| m | all | 5.0 | n/a | n/a | n/a |'
