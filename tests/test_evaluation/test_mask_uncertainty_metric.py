"""MaskUncertaintyMetric and its rank AUROC, against independent
computations: a hand count on a small case with ties, a brute-force count
over all pixel pairs (scikit-learn, whose roc_auc_score would be the usual
reference, is not in the stack) and Spearman's rho from its closed form."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_maskdiff.evaluation import MaskUncertaintyMetric
from mmdet_maskdiff.evaluation.mask_uncertainty_metric import (
    auroc_from_counts, rank_auroc)

CLASSES = ('a', 'b', 'c')


def _pairwise_auroc(scores, labels):
    """O(n^2): over every (positive, negative) pair, 1 if the positive
    scores higher, 1/2 if equal."""
    scores, labels = np.ravel(scores), np.ravel(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auroc_of_a_small_case_with_ties_by_hand():
    # positives 0.4, 0.8, 0.8; negatives 0.1, 0.4, 0.2. Of the 9 pairs the
    # positive 0.4 beats 0.1 and 0.2 and ties 0.4 (2.5); each 0.8 beats
    # all three (6): AUROC = 8.5 / 9
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.2])
    labels = np.array([0, 1, 0, 1, 1, 0])
    assert rank_auroc(scores, labels) == pytest.approx(8.5 / 9, abs=1e-15)
    assert rank_auroc(-scores, labels) == pytest.approx(0.5 / 9, abs=1e-15)
    assert rank_auroc(np.zeros(6), labels) == 0.5  # all tied


@pytest.mark.parametrize('levels', [3, 50, None])
def test_auroc_matches_the_pairwise_count(levels):
    """Random scores (few distinct values: many ties; None: continuous) and
    labels that depend on them."""
    rng = np.random.default_rng(0)
    scores = rng.random((40, 7, 7)).astype(np.float32)
    if levels is not None:
        scores = np.round(scores * (levels - 1)) / (levels - 1)
    labels = rng.random(scores.shape) < 0.2 + 0.5 * scores
    assert rank_auroc(scores, labels) == pytest.approx(
        _pairwise_auroc(scores, labels), abs=1e-12)


def test_auroc_from_counts_pools_repeated_scores():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, 300).astype(float)
    labels = rng.random(300) < 0.3
    # the same pixels as counts, in chunks that repeat scores
    chunks = np.array_split(np.arange(300), 7)
    values, pos, neg = [], [], []
    for chunk in chunks:
        for value in np.unique(scores[chunk]):
            at = chunk[scores[chunk] == value]
            values.append(value)
            pos.append(labels[at].sum())
            neg.append((~labels[at]).sum())
    assert auroc_from_counts(values, pos, neg) == pytest.approx(
        _pairwise_auroc(scores, labels), abs=1e-12)


def test_auroc_bad_input():
    assert np.isnan(rank_auroc([0.1, 0.2], [True, True]))  # no negative
    assert np.isnan(rank_auroc([0.1, 0.2], [False, False]))
    with pytest.raises(ValueError, match=r'^scores \(3,\), positives \(2,\) '
                       r'and negatives \(2,\) must have one shape$'):
        rank_auroc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match='^scores must be finite$'):
        rank_auroc([0.1, np.nan], [True, False])


def _sample(labels, ious, uncertainty, error):
    pred = InstanceData(
        labels=torch.tensor(labels),
        gt_mask_iou=torch.tensor(ious, dtype=torch.float32),
        mask_uncertainty=torch.as_tensor(uncertainty, dtype=torch.float32),
        roi_error=torch.as_tensor(error, dtype=torch.bool))
    return dict(pred_instances=pred)


def _metric(class_splits=None):
    metric = MaskUncertaintyMetric(
        class_splits=dict(base=['a', 'b'], novel=['c'])
        if class_splits is None else class_splits)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def _spearman_closed_form(x, y):
    """rho = 1 - 6 sum d^2 / (n (n^2 - 1)) for data without ties."""
    rank_x = np.argsort(np.argsort(x))
    rank_y = np.argsort(np.argsort(y))
    n = len(x)
    return 1 - 6 * np.sum((rank_x - rank_y)**2) / (n * (n * n - 1))


def test_metric_against_the_pooled_pixels_and_the_closed_form_rho():
    rng = np.random.default_rng(4)  # a draw whose instance means differ
    labels = [0, 2, 1, 2, 0, 1, 2]
    ious = [0.9, 0.4, 0.75, 0.6, 0.3, 0.85, 0.2]
    # p(1 - p) of 8 binary samples: k foreground samples give k(8 - k) / 64
    count = rng.integers(0, 9, (7, 6, 6))
    uncertainty = (count * (8 - count) / 64).astype(np.float32)
    error = rng.random((7, 6, 6)) < 0.1 + 3 * uncertainty
    metric = _metric()
    # two batches; an instance without a ground-truth mask (NaN IoU) and an
    # image whose head gave no probabilities are skipped
    metric.process({}, [
        _sample(labels[:3], ious[:3], uncertainty[:3], error[:3]),
        _sample([1], [float('nan')], np.ones((1, 6, 6)), np.ones((1, 6, 6))),
    ])
    metric.process({}, [
        _sample(labels[3:], ious[3:], uncertainty[3:], error[3:]),
        dict(pred_instances=InstanceData(labels=torch.tensor([0])))
    ])
    # evaluate as the runner does: one result per image (size 4), or
    # mmengine would cut the results short
    metrics = metric.evaluate(size=4)
    splits = dict(all=[0, 1, 2], base=[0, 1], novel=[2])
    assert sorted(metrics) == sorted(f'uncertainty/{split}/{column}'
                                     for split in splits
                                     for column in ('pixel_error',
                                                    'mean_uncertainty',
                                                    'error_auroc',
                                                    'iou_spearman'))
    for split, members in splits.items():
        got = {
            key.split('/')[2]: value
            for key, value in metrics.items() if key.split('/')[1] == split
        }
        rows = [i for i, label in enumerate(labels) if label in members]
        assert got['pixel_error'] == round(float(error[rows].mean()), 4)
        assert got['mean_uncertainty'] == pytest.approx(
            float(uncertainty[rows].mean()), abs=5e-5)
        assert got['error_auroc'] == round(
            _pairwise_auroc(uncertainty[rows], error[rows]), 4)
        means = uncertainty[rows].mean(axis=(1, 2))
        assert len(set(means.tolist())) == len(rows)  # no ties
        assert got['iou_spearman'] == round(
            _spearman_closed_form(means, 1 - np.array(ious)[rows]), 4)


def test_metric_leaves_out_what_is_undefined():
    error = np.zeros((2, 4, 4), bool)
    error[0, 0, :2] = True
    metric = _metric(class_splits={})
    # one binary sample per RoI (MaskDiff, num_samples = 1): p(1 - p) = 0
    metric.process({}, [_sample([0, 1], [0.8, 0.5], np.zeros((2, 4, 4)),
                                error)])
    assert metric.evaluate(size=1) == {
        'uncertainty/all/pixel_error': round(2 / 32, 4),
        'uncertainty/all/mean_uncertainty': 0.0
    }
    # uncertainty that varies, but no pixel is wrong and the IoUs are equal
    metric = _metric(class_splits={})
    uncertainty = np.zeros((2, 4, 4))
    uncertainty[1, 1, 1] = 0.25
    metric.process({}, [_sample([0, 1], [0.7, 0.7], uncertainty,
                                np.zeros((2, 4, 4)))])
    assert sorted(metric.evaluate(size=1)) == [
        'uncertainty/all/mean_uncertainty', 'uncertainty/all/pixel_error'
    ]
    # a split without instances has no keys
    metric = _metric()
    metric.process({}, [_sample([2], [0.5], uncertainty[1:], error[:1])])
    assert not any(
        key.startswith('uncertainty/base/')
        for key in metric.evaluate(size=1))
