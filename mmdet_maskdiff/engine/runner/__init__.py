from .build_runner import build_runner
from .few_shot_runner import FewShotRunner
from .oracle_box_loop import (OracleBoxTestLoop, ground_truth_by_image,
                              predict_on_ground_truth)

__all__ = [
    'build_runner', 'FewShotRunner', 'OracleBoxTestLoop',
    'ground_truth_by_image', 'predict_on_ground_truth'
]
