"""All MaskDiff stages at CPU scale on the embedded synthetic dataset
(:mod:`.pipeline`) and their tables (:mod:`.report`).

The overrides that make a COCO config small live in
:mod:`mmdet_maskdiff.testing.small_scale`.
"""
