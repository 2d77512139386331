"""Pictures of MaskDiff's predictions."""
from .uncertainty_map import paste_uncertainty, uncertainty_heatmap

__all__ = ['paste_uncertainty', 'uncertainty_heatmap']
