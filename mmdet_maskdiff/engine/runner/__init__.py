from .oracle_box_loop import (OracleBoxTestLoop, ground_truth_by_image,
                              predict_on_ground_truth)

__all__ = [
    'OracleBoxTestLoop', 'ground_truth_by_image', 'predict_on_ground_truth'
]
