import contextlib
import io
import json
import logging
import random

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from mmengine.logging import MMLogger
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_maskdiff.evaluation import FewShotCocoMetric

CLASSES = ('a', 'b', 'potted plant', 'd')
SPLITS = dict(base=['a', 'b'], novel=['potted plant', 'd'])
# scrambled ids and file order: labels must still follow CLASSES
CATEGORIES = [
    dict(id=9, name='potted plant'),
    dict(id=2, name='b'),
    dict(id=5, name='a'),
    dict(id=4, name='d'),
]
NAME2ID = {c['name']: c['id'] for c in CATEGORIES}
H, W = 60, 80
ITEMS = ['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']


def _rect(x, y, w, h):
    """An ellipse filling the box (so mask and box IoUs differ)."""
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, ((x + w / 2 - 0.5, y + h / 2 - 0.5), (w, h), 0), 1, -1)
    return mask


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    rle['counts'] = rle['counts'].decode()
    return rle


@pytest.fixture(scope='module')
def problem(tmp_path_factory):
    """GT of 8 images and predictions with known, varied overlaps."""
    rng = np.random.default_rng(0)
    images, anns, samples = [], [], []
    for img_id in range(1, 9):
        images.append(
            dict(id=img_id, file_name=f'{img_id}.jpg', width=W, height=H))
        bboxes, scores, labels, masks = [], [], [], []
        for k in range(int(rng.integers(1, 4))):
            label = int(rng.integers(0, 4))
            x, y = int(rng.integers(0, 40)), int(rng.integers(0, 25))
            w, h = int(rng.integers(6, 38)), int(rng.integers(6, 33))
            gt = _rect(x, y, w, h)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=img_id,
                    category_id=NAME2ID[CLASSES[label]],
                    bbox=[x, y, w, h],
                    area=int(gt.sum()),
                    iscrowd=0,
                    segmentation=_rle(gt)))
            # a prediction shifted by 0-5 px (IoU from 1 to low)
            dx, dy = int(rng.integers(0, 6)), int(rng.integers(0, 6))
            pred_label = label if rng.random() > 0.15 else (label + 1) % 4
            px, py = min(x + dx, W - w), min(y + dy, H - h)
            bboxes.append([px, py, px + w, py + h])
            masks.append(_rect(px, py, w, h))
            scores.append(float(rng.uniform(0.3, 1.0)))
            labels.append(pred_label)
        # a false positive
        fx, fy = int(rng.integers(0, 60)), int(rng.integers(0, 40))
        bboxes.append([fx, fy, fx + 15, fy + 15])
        masks.append(_rect(fx, fy, 15, 15))
        scores.append(float(rng.uniform(0.0, 0.9)))
        labels.append(int(rng.integers(0, 4)))
        samples.append(
            dict(
                img_id=img_id,
                ori_shape=(H, W),
                pred_instances=dict(
                    bboxes=torch.tensor(bboxes, dtype=torch.float32),
                    scores=torch.tensor(scores),
                    labels=torch.tensor(labels),
                    masks=torch.from_numpy(np.stack(masks)).bool())))
    gt = dict(images=images, annotations=anns, categories=CATEGORIES)
    path = tmp_path_factory.mktemp('gt') / 'gt.json'
    path.write_text(json.dumps(gt))
    return str(path), samples


def _pycocotools(gt_path, samples, names, iou_type, iou_thrs=None):
    """Reference: pycocotools alone, on the predictions of ``names`` (at
    ``iou_thrs`` instead of 0.5:0.95 when given)."""
    dets = []
    for s in samples:
        p = s['pred_instances']
        for box, score, label, mask in zip(p['bboxes'].tolist(),
                                           p['scores'].tolist(),
                                           p['labels'].tolist(), p['masks']):
            if CLASSES[label] not in names:
                continue
            det = dict(
                image_id=s['img_id'],
                category_id=NAME2ID[CLASSES[label]],
                score=score)
            if iou_type == 'bbox':
                det['bbox'] = [
                    box[0], box[1], box[2] - box[0], box[3] - box[1]
                ]
            else:
                det['segmentation'] = _rle(mask.numpy().astype(np.uint8))
            dets.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.params.catIds = [NAME2ID[n] for n in names]
        if iou_thrs is not None:
            ev.params.iouThrs = np.array(iou_thrs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:6]


def _run(metric, samples, classes=CLASSES, **meta):
    metric.dataset_meta = dict(classes=classes, **meta)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


def test_splits_equal_pycocotools(problem):
    gt_path, samples = problem
    metric = METRICS.build(
        dict(type='FewShotCocoMetric', ann_file=gt_path, class_splits=SPLITS))
    results = _run(metric, samples)
    assert len(results) == 3 * 2 * 6
    splits = dict(all=CLASSES, **SPLITS)
    values = {}
    for split, names in splits.items():
        for iou_type in ('bbox', 'segm'):
            ref = _pycocotools(gt_path, samples, names, iou_type)
            ours = [results[f'coco/{split}/{iou_type}_{i}'] for i in ITEMS]
            assert ours == pytest.approx(
                [float(f'{round(v, 3)}') for v in ref], abs=1e-9)
            values[split, iou_type] = ours[0]
    # the three splits differ, so the restriction matters
    assert len({values[s, 'segm'] for s in splits}) == 3
    assert values['all', 'bbox'] != values['all', 'segm']
    assert all(0 < values[k] < 1 for k in values)


def test_ap_at_one_iou_equals_pycocotools_at_that_threshold(problem):
    """``mAP_85`` / ``mAP_95`` are the AP of a COCOeval run at that single
    IoU threshold (the high-IoU mask quality of MaskDiff's claim)."""
    gt_path, samples = problem
    metric = FewShotCocoMetric(
        ann_file=gt_path,
        class_splits=SPLITS,
        metric='segm',
        metric_items=['mAP_50', 'mAP_85', 'mAP_95'])
    results = _run(metric, samples)
    assert len(results) == 3 * 3
    for split, names in dict(all=CLASSES, **SPLITS).items():
        for iou in (50, 85, 95):
            ref = _pycocotools(gt_path, samples, names, 'segm',
                               [iou / 100])[0]
            assert results[f'coco/{split}/segm_mAP_{iou}'] == float(
                f'{round(ref, 3)}'), (split, iou)
    assert (results['coco/all/segm_mAP_50'] > results['coco/all/segm_mAP_85']
            > 0)
    with pytest.raises(KeyError, match='mAP_x'):
        FewShotCocoMetric(ann_file=gt_path, metric_items=['mAP_x'])
    metric = FewShotCocoMetric(
        ann_file=gt_path,
        class_splits=SPLITS,
        metric='segm',
        metric_items=['mAP_87'])
    with pytest.raises(KeyError, match='0.87 in iou_thrs'):
        _run(metric, samples)


def test_result_order_does_not_matter(problem):
    """Distributed collection changes the order of results only."""
    gt_path, samples = problem
    metric = FewShotCocoMetric(ann_file=gt_path, class_splits=SPLITS)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    forward = metric.compute_metrics(list(metric.results))
    shuffled = list(metric.results)
    random.Random(0).shuffle(shuffled)
    assert metric.compute_metrics(shuffled) == forward


def test_keywords_resolve_against_dataset_meta(problem):
    gt_path, samples = problem
    metric = FewShotCocoMetric(ann_file=gt_path, classwise=True)
    results = _run(
        metric,
        samples,
        base_classes=('a', 'b'),
        novel_classes=('potted plant', 'd'))
    explicit = _run(
        FewShotCocoMetric(ann_file=gt_path, class_splits=SPLITS), samples)
    for key, value in explicit.items():
        assert results[key] == value
    assert 'coco/segm_potted plant_precision' in results


def test_split_subset_dataset(problem):
    """A novel-only label space: labels index its own classes."""
    gt_path, samples = problem
    novel = ('potted plant', 'd')
    sub = []
    for s in samples:
        p = s['pred_instances']
        names = [CLASSES[i] for i in p['labels'].tolist()]
        keep = torch.tensor([n in novel for n in names])
        sub.append(
            dict(
                s,
                pred_instances=dict(
                    bboxes=p['bboxes'][keep],
                    scores=p['scores'][keep],
                    masks=p['masks'][keep],
                    labels=torch.tensor(
                        [novel.index(n) for n in names if n in novel],
                        dtype=torch.long))))
    metric = FewShotCocoMetric(
        ann_file=gt_path, class_splits=dict(novel=novel))
    results = _run(metric, sub, classes=novel)
    ref = _pycocotools(gt_path, samples, novel, 'segm')
    assert results['coco/novel/segm_mAP'] == float(f'{round(ref[0], 3)}')
    assert results['coco/all/segm_mAP'] == results['coco/novel/segm_mAP']


def test_no_prediction_gives_zero(problem):
    gt_path, samples = problem
    empty = [
        dict(
            s,
            pred_instances=dict(
                bboxes=torch.zeros((0, 4)),
                scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long),
                masks=torch.zeros((0, H, W), dtype=torch.bool)))
        for s in samples
    ]
    results = _run(
        FewShotCocoMetric(
            ann_file=gt_path, class_splits=SPLITS, metric='bbox'), empty)
    assert results['coco/novel/bbox_mAP'] == 0
    assert results['coco/all/bbox_mAP_50'] == 0


def test_errors(problem):
    gt_path, _ = problem
    metric = FewShotCocoMetric(ann_file=gt_path)  # COCO base / novel
    with pytest.raises(ValueError, match="split 'base' is not a dataset"):
        metric.dataset_meta = dict(classes=CLASSES)
    metric = FewShotCocoMetric(
        ann_file=gt_path, class_splits=dict(novel=['d', 'zebra']))
    with pytest.raises(ValueError, match="class 'zebra' of split 'novel'"):
        metric.dataset_meta = dict(classes=CLASSES)
    metric = FewShotCocoMetric(ann_file=gt_path, class_splits=SPLITS)
    with pytest.raises(
            ValueError, match=r"class 'e' is not a category of "
            r'.*gt\.json'):
        metric.dataset_meta = dict(classes=CLASSES + ('e', ))
    # without ann_file the check waits for the converted ground truth
    metric = FewShotCocoMetric(class_splits=SPLITS)
    metric.dataset_meta = dict(classes=CLASSES + ('e', ))
    assert metric.compute_metrics([]) == {}
    with pytest.raises(ValueError, match='reserved'):
        FewShotCocoMetric(class_splits=dict(all='ALL'))
    with pytest.raises(ValueError, match="unknown class split 'RARE'"):
        FewShotCocoMetric(class_splits=dict(rare='RARE'))
    with pytest.raises(ValueError, match="'bbox' and 'segm'"):
        FewShotCocoMetric(metric='proposal')


class _Records(logging.Handler):
    """Collects the messages logged while it is attached."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _table_rows(messages, title):
    """Cells of the AsciiTable logged after ``title`` (header excluded)."""
    text = next(m for m in messages if m.startswith(title))
    rows = [[cell.strip() for cell in line.strip('|').split('|')]
            for line in text.splitlines() if line.startswith('|')]
    return rows[1:]


@pytest.mark.parametrize('classes', [CLASSES, ('d', 'potted plant', 'b', 'a')])
def test_classwise_rows_follow_category_ids(problem, classes):
    """COCOeval orders its precision array by category id (2, 4, 5, 9 here);
    the dataset orders classes otherwise. Each labelled row must equal
    pycocotools run on that class alone."""
    gt_path, samples = problem
    assert [NAME2ID[c] for c in classes] != sorted(NAME2ID.values())
    # relabel the predictions into this class order
    relabelled = []
    for s in samples:
        p = s['pred_instances']
        labels = torch.tensor(
            [classes.index(CLASSES[i]) for i in p['labels'].tolist()])
        relabelled.append(dict(s, pred_instances=dict(p, labels=labels)))
    metric = FewShotCocoMetric(
        ann_file=gt_path, class_splits=SPLITS, classwise=True)
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        results = _run(metric, relabelled, classes=classes)
    finally:
        logger.removeHandler(records)
    for iou_type in ('bbox', 'segm'):
        rows = _table_rows(records.messages, f'per-class {iou_type} AP')
        assert [r[0] for r in rows] == list(classes)
        seen = set()
        for row in rows:
            name = row[0]
            ref = _pycocotools(gt_path, samples, [name], iou_type)
            expected = [f'{v:.3f}' if v > -1 else 'nan' for v in ref]
            assert row[2:] == expected, (iou_type, name)
            assert row[1] == ('base' if name in SPLITS['base'] else 'novel')
            assert results[f'coco/{iou_type}_{name}_precision'] == float(
                f'{round(ref[0], 3)}')
            seen.add(row[2])
        assert len(seen) > 1  # classes differ, so a mislabel would show
