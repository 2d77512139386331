"""Evaluation: COCO AP of base / novel / all classes in one run, and the
mean mask IoU and the uncertainty-for-errors measures of oracle-box runs."""
from .few_shot_coco_metric import FewShotCocoMetric
from .mask_iou_metric import MaskIoUMetric
from .mask_uncertainty_metric import MaskUncertaintyMetric

__all__ = ['FewShotCocoMetric', 'MaskIoUMetric', 'MaskUncertaintyMetric']
