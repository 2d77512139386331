"""Mean IoU of predicted masks with their own ground-truth masks."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np

from mmdet.registry import METRICS
from .class_split_metric import ClassSplitMetric


@METRICS.register_module()
class MaskIoUMetric(ClassSplitMetric):
    """Mean mask IoU over instances, for base / novel / all classes.

    With oracle boxes (``OracleBoxTestLoop``) every ground-truth instance gets
    exactly one predicted mask, and the loop stores the IoU of the two in
    ``pred_instances.gt_mask_iou``. This metric averages those IoUs over the
    instances of each class split (mean over instances, not over classes;
    instances without a ground-truth mask are skipped). Unlike AP it has no
    threshold: it moves with every pixel, including above IoU 0.95.

    Keys are ``'{split}/mIoU'`` in [0, 1] (3 decimals), prefixed by
    ``prefix`` (default ``'oracle'``): ``oracle/novel/mIoU``. A split
    without any instance gets -1 (pycocotools' convention).

    Arguments as :class:`ClassSplitMetric`'s (``class_splits``,
    ``collect_device``, ``prefix``, whose default is ``'oracle'``).
    """
    default_prefix: Optional[str] = 'oracle'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep the label and the IoU of every predicted instance.

        Args:
            data_batch (dict): The batch (unused).
            data_samples (Sequence[dict]): Model outputs with
                ``pred_instances.labels`` and ``pred_instances.gt_mask_iou``.

        Raises:
            KeyError: predictions without ``gt_mask_iou``.
        """
        for sample in data_samples:
            pred = sample['pred_instances']
            if 'gt_mask_iou' not in pred:
                raise KeyError(
                    'MaskIoUMetric needs pred_instances.gt_mask_iou, which '
                    "only test_cfg=dict(type='OracleBoxTestLoop') provides")
            self.results.append(
                (pred['labels'].cpu().numpy(),
                 pred['gt_mask_iou'].float().cpu().numpy()))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Mean IoU per split.

        Args:
            results (list): ``(labels, ious)`` pairs from :meth:`process`.

        Returns:
            dict[str, float]: ``'{split}/mIoU'`` -> mean IoU (or -1).
        """
        labels = np.concatenate([r[0] for r in results] + [np.zeros(0, int)])
        ious = np.concatenate([r[1] for r in results] + [np.zeros(0)])
        known = ~np.isnan(ious)
        metrics: Dict[str, float] = OrderedDict()
        for split, split_labels in self.split_labels().items():
            members = np.isin(labels, split_labels)
            values = ious[members & known]
            metrics[f'{split}/mIoU'] = (
                round(float(values.mean()), 3) if values.size else -1.)
        return metrics
