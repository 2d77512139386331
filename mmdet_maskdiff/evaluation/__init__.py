"""Evaluation: COCO AP of base / novel / all classes in one run."""
from .few_shot_coco_metric import FewShotCocoMetric

__all__ = ['FewShotCocoMetric']
