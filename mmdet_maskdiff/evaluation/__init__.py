"""Evaluation: COCO AP of base / novel / all classes in one run, and the
mean mask IoU of oracle-box runs."""
from .few_shot_coco_metric import FewShotCocoMetric
from .mask_iou_metric import MaskIoUMetric

__all__ = ['FewShotCocoMetric', 'MaskIoUMetric']
