"""Does a mask head's per-pixel uncertainty mark where its mask is wrong?

With oracle boxes (``OracleBoxTestLoop``) every ground-truth instance gets one
mask, and the loop stores per instance, on the head's own m x m RoI grid, the
uncertainty ``mask_uncertainty`` = p(1 - p) of the head's per-pixel
foreground probability p and the error map ``roi_error`` (thresholded
prediction != ground-truth mask cropped to the RoI); see
:func:`~mmdet_maskdiff.engine.runner.oracle_box_loop.roi_uncertainty_and_error`
for the frame. For MaskDiff p is the fraction of N sampled masks that are
foreground, so p(1 - p) is the variance over the samples; for FCNMaskHead
(and any head with a sigmoid) it is the sigmoid's own p(1 - p).

Two questions, per class split (base / novel / all):

* per pixel: the AUROC of uncertainty as a score for "this pixel is wrong",
  pooled over all pixels of all instances (Hanley & McNeil, Radiology 1982:
  the AUROC is the Mann-Whitney U statistic divided by n_pos * n_neg; ties
  count one half);
* per instance: Spearman's rank correlation of the mean uncertainty of the
  RoI with 1 - mask IoU (the image-frame IoU of ``MaskIoUMetric``).
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import spearmanr

from mmdet.registry import METRICS
from .class_split_metric import ClassSplitMetric

#: the metric's keys below ``{prefix}/{split}/``: fraction of RoI-grid pixels
#: that are wrong, mean p(1 - p), pixel AUROC, instance Spearman
UNCERTAINTY_COLUMNS = ('pixel_error', 'mean_uncertainty', 'error_auroc',
                       'iou_spearman')


def auroc_from_counts(scores: np.ndarray, positives: np.ndarray,
                      negatives: np.ndarray) -> float:
    """AUROC of a score from per-score counts of positives and negatives.

    ``scores`` may repeat: counts of equal scores are pooled. With
    ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2`` over all positive-negative
    pairs (the Mann-Whitney U statistic over ``n_pos * n_neg``), a positive
    beats every negative of a lower score and ties one of an equal score.
    O(k log k) for k scores.

    Args:
        scores (np.ndarray): (k, ) finite scores.
        positives (np.ndarray): (k, ) non-negative count of positives with
            each score.
        negatives (np.ndarray): (k, ) non-negative count of negatives.

    Returns:
        float: AUROC in [0, 1]; NaN when there is no positive or no negative
        (undefined).

    Raises:
        ValueError: arrays of different shapes or a non-finite score.
    """
    scores = np.asarray(scores).ravel()
    positives = np.asarray(positives, np.float64).ravel()
    negatives = np.asarray(negatives, np.float64).ravel()
    if not scores.shape == positives.shape == negatives.shape:
        raise ValueError(
            f'scores {scores.shape}, positives {positives.shape} and '
            f'negatives {negatives.shape} must have one shape')
    if not np.isfinite(scores).all():
        raise ValueError('scores must be finite')
    values, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=positives, minlength=len(values))
    neg = np.bincount(inverse, weights=negatives, minlength=len(values))
    num_pos, num_neg = pos.sum(), neg.sum()
    if num_pos == 0 or num_neg == 0:
        return float('nan')
    negatives_below = np.cumsum(neg) - neg
    wins = np.dot(pos, negatives_below + 0.5 * neg)
    return float(wins / (num_pos * num_neg))


def rank_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` for binary ``labels`` (ties count one half).

    Args:
        scores (np.ndarray): Finite scores, any shape.
        labels (np.ndarray): Bool (or 0 / 1) of the shape of ``scores``;
            True marks a positive.

    Returns:
        float: AUROC in [0, 1]; NaN without positives or negatives.
    """
    labels = np.asarray(labels).astype(bool)
    return auroc_from_counts(scores, labels, ~labels)


def _score_counts(
        uncertainty: np.ndarray,
        error: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One RoI's pixels as (distinct uncertainty, wrong, right) counts: a
    sampled head has at most N // 2 + 1 distinct values of p(1 - p), so the
    kept results stay small at COCO scale."""
    values, inverse = np.unique(uncertainty.ravel(), return_inverse=True)
    wrong = np.bincount(
        inverse, weights=error.ravel(), minlength=len(values))
    total = np.bincount(inverse, minlength=len(values))
    return values, wrong.astype(np.int64), total - wrong.astype(np.int64)


@METRICS.register_module()
class MaskUncertaintyMetric(ClassSplitMetric):
    """Per-pixel AUROC of uncertainty for mask errors, and its instance-level
    rank correlation with 1 - mask IoU, for base / novel / all classes.

    Reads, per predicted instance, ``labels``, ``gt_mask_iou``,
    ``mask_uncertainty`` (m, m) and ``roi_error`` (m, m) bool, which
    ``OracleBoxTestLoop`` stores (see the module docstring). Instances with
    a NaN ``gt_mask_iou`` (no ground-truth mask) are left out, as in
    :class:`MaskIoUMetric`; predictions without ``roi_error`` (a mask head
    that does not paste through FCNMaskHead's per-RoI path) are skipped.

    Keys (prefix ``'uncertainty'`` by default) ``{split}/{column}`` for the
    columns of :data:`UNCERTAINTY_COLUMNS`:

    * ``pixel_error``: fraction of RoI-grid pixels that are wrong;
    * ``mean_uncertainty``: mean p(1 - p) over those pixels;
    * ``error_auroc``: pooled pixel AUROC of p(1 - p) for errors;
    * ``iou_spearman``: Spearman's rho of the per-instance mean p(1 - p)
      with 1 - mask IoU.

    A key whose value is undefined is left out: both last two when the
    uncertainty is the same at every pixel of the split (e.g. MaskDiff with
    ``num_samples = 1``: one binary sample has p(1 - p) = 0 everywhere, so
    it cannot rank anything), ``error_auroc`` when no pixel or every pixel
    is wrong, ``iou_spearman`` when all IoUs, or all instance means, are equal
    (always with one instance). A split without instances has no keys.

    Arguments as :class:`ClassSplitMetric`'s (``class_splits``,
    ``collect_device``, ``prefix``, whose default is ``'uncertainty'``).
    """
    default_prefix: Optional[str] = 'uncertainty'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep, per image (mmengine truncates the results to one per
        image), the instances with a ground-truth mask: label, IoU, mean
        uncertainty, pixel counts and the (uncertainty, wrong, right)
        counts of their pixels.

        Args:
            data_batch (dict): The batch (unused).
            data_samples (Sequence[dict]): Model outputs with
                ``pred_instances`` holding ``labels``, ``gt_mask_iou``,
                ``mask_uncertainty`` and ``roi_error``.
        """
        for sample in data_samples:
            pred = sample['pred_instances']
            if 'roi_error' not in pred or 'gt_mask_iou' not in pred:
                self.results.append([])
                continue
            labels = pred['labels'].cpu().numpy()
            ious = pred['gt_mask_iou'].float().cpu().numpy()
            uncertainty = pred['mask_uncertainty'].float().cpu().numpy()
            errors = pred['roi_error'].cpu().numpy().astype(bool)
            self.results.append([
                dict(
                    label=int(labels[i]),
                    iou=float(ious[i]),
                    mean_uncertainty=float(uncertainty[i].mean()),
                    pixels=int(errors[i].size),
                    wrong=int(errors[i].sum()),
                    counts=_score_counts(uncertainty[i], errors[i]))
                for i in np.flatnonzero(~np.isnan(ious))
            ])

    def compute_metrics(self, results: List[List[dict]]) -> Dict[str, float]:
        """The columns of every split (undefined ones left out).

        Args:
            results (list[list[dict]]): Per image, its instances from
                :meth:`process`.

        Returns:
            dict[str, float]: ``'{split}/{column}'`` -> value (4 decimals).
        """
        instances = [instance for image in results for instance in image]
        labels = np.array([r['label'] for r in instances], np.int64)
        metrics: Dict[str, float] = OrderedDict()
        for split, split_labels in self.split_labels().items():
            members = np.flatnonzero(np.isin(labels, split_labels))
            if members.size == 0:
                continue
            chosen = [instances[i] for i in members]
            for column, value in self._split_values(chosen).items():
                metrics[f'{split}/{column}'] = round(value, 4)
        return metrics

    @staticmethod
    def _split_values(instances: List[dict]) -> Dict[str, float]:
        """The defined columns of one split's instances."""
        pixels = sum(r['pixels'] for r in instances)
        values = dict(
            pixel_error=sum(r['wrong'] for r in instances) / pixels,
            mean_uncertainty=sum(r['mean_uncertainty'] * r['pixels']
                                 for r in instances) / pixels)
        scores = np.concatenate([r['counts'][0] for r in instances])
        if scores.min() == scores.max():
            return values  # a constant score ranks nothing
        auroc = auroc_from_counts(
            scores, np.concatenate([r['counts'][1] for r in instances]),
            np.concatenate([r['counts'][2] for r in instances]))
        if not np.isnan(auroc):
            values['error_auroc'] = auroc
        ious = np.array([r['iou'] for r in instances])
        means = np.array([r['mean_uncertainty'] for r in instances])
        if ious.min() < ious.max() and means.min() < means.max():
            values['iou_spearman'] = float(spearmanr(means, 1 - ious)[0])
        return values
