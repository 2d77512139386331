"""Few-shot data: class splits, K-shot files, dataset, support bank, toy data.
"""
from .class_splits import (CLASS_SPLIT_PRESETS, COCO_ALL_CLASSES,
                           COCO_BASE_CLASSES, COCO_NOVEL_CLASSES, COCO_SPLIT,
                           get_class_splits, register_class_splits,
                           resolve_classes)
from .few_shot_coco import FewShotCocoDataset
from .few_shot_share_sampler import FewShotShareSampler
from .few_shot_splits import generate_few_shot_splits, load_few_shot_split
from .support_bank import build_support_bank
from .synthetic_class_splits import SYNTHETIC_CLASS_SPLITS, SYNTHETIC_CLASSES
from .synthetic_fsis import make_synthetic_fsis

__all__ = [
    'COCO_ALL_CLASSES', 'COCO_BASE_CLASSES', 'COCO_NOVEL_CLASSES',
    'COCO_SPLIT', 'CLASS_SPLIT_PRESETS', 'register_class_splits',
    'get_class_splits', 'resolve_classes', 'FewShotCocoDataset',
    'FewShotShareSampler',
    'generate_few_shot_splits', 'load_few_shot_split',
    'build_support_bank', 'SYNTHETIC_CLASS_SPLITS',
    'SYNTHETIC_CLASSES', 'make_synthetic_fsis'
]
