"""Mean IoU of predicted masks with their own ground-truth masks."""
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric

from mmdet.registry import METRICS
from .few_shot_coco_metric import check_split_specs, resolve_split_specs


@METRICS.register_module()
class MaskIoUMetric(BaseMetric):
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

    Args:
        class_splits (dict, optional): split name -> class names or keyword,
            exactly as :class:`FewShotCocoMetric`'s. Defaults to
            ``dict(base='BASE', novel='NOVEL')``; ``dict()`` reports ``all``
            only.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Key prefix. Defaults to ``'oracle'``.
    """
    default_prefix: Optional[str] = 'oracle'

    def __init__(self,
                 class_splits: Optional[Mapping[str,
                                                Union[str,
                                                      Sequence[str]]]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if class_splits is None:
            class_splits = dict(base='BASE', novel='NOVEL')
        self.class_splits = check_split_specs(class_splits)

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
        splits = resolve_split_specs(self.class_splits, self.dataset_meta)
        classes = list(self.dataset_meta['classes'])
        labels = np.concatenate([r[0] for r in results] + [np.zeros(0, int)])
        ious = np.concatenate([r[1] for r in results] + [np.zeros(0)])
        known = ~np.isnan(ious)
        metrics: Dict[str, float] = OrderedDict()
        for split, names in splits.items():
            members = np.isin(labels, [classes.index(n) for n in names])
            values = ious[members & known]
            metrics[f'{split}/mIoU'] = (
                round(float(values.mean()), 3) if values.size else -1.)
        return metrics
