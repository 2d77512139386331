from .maskdiff_rcnn import MaskDiffRCNN

__all__ = ['MaskDiffRCNN']
