"""Pictures of MaskDiff's predictions."""
from .trajectory_panel import roi_labels, trajectory_panel
from .uncertainty_map import paste_uncertainty, uncertainty_heatmap

__all__ = [
    'paste_uncertainty', 'roi_labels', 'trajectory_panel',
    'uncertainty_heatmap'
]
