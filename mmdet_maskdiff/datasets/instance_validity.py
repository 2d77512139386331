"""COCO instance annotations: the one rule for a usable one, and the mask
helpers (polygons / RLE to one RLE, to a binary mask).

Every reader of COCO masks in the package decodes them here. The rule is used
by every reader and writer of instances, so that what one accepts the others
accept too:

* the K-shot split generator (:func:`.few_shot_splits.generate_few_shot_splits`
  draws only instances that pass, and are not crowd);
* :class:`.FewShotCocoDataset`: K-shot files (an invalid instance raises or
  is skipped, ``on_invalid_few_shot``) and the main annotation file (invalid
  annotations, crowd ones included, are skipped with a logged count);
* :func:`.support_bank.build_support_bank` (the mask part, on the instances a
  dataset gives it; it decodes the masks with :func:`decode_mask`, as does
  the oracle-box test loop).

An annotation is usable when (:func:`instance_problem` returns ``None``):

1. ``bbox`` is ``[x, y, w, h]`` of finite numbers with ``w >= 1`` and
   ``h >= 1`` px (mmdet's ``CocoDataset`` also drops boxes under 1 px);
2. ``area`` is a positive number;
3. the box lies in the image, up to :data:`OUTSIDE_TOLERANCE` px on each side
   (rounding in real annotation files), and overlaps it (as mmdet's
   ``CocoDataset`` requires);
4. ``segmentation`` is a non-empty list of polygons of at least 3 points
   inside the image (same tolerance) or an RLE of the image size, and covers
   at least one pixel once rasterised (pycocotools). A missing or empty
   ``segmentation`` (``[]``) fails: every stage of this package loads masks
   (mmdet's ``LoadAnnotations(with_mask=True)`` has nothing to load), and a
   K-shot instance or support instance without a mask is no shot. Box-only
   callers pass ``check_mask=False``.

A box 0.5 px wide therefore fails everywhere: the generator never draws it
and the loaders never receive it. The rules of a file as a whole (unique
image records, declared categories, image files) are in
:mod:`.coco_records`.
"""
import math
from typing import Optional, Union

import numpy as np
from pycocotools import mask as mask_util

#: a bbox or polygon may overhang the image by this many pixels
OUTSIDE_TOLERANCE = 1.0
#: smallest box width and height, in pixels
MIN_BOX_SIZE = 1.0


def segmentation_to_rle(segmentation: Union[list, dict], height: int,
                        width: int) -> dict:
    """A COCO polygon list or RLE (list or compressed counts) as one
    compressed RLE of a (height, width) mask.

    Raises:
        TypeError: ``segmentation`` is neither a list nor a dict.
    """
    if isinstance(segmentation, list):
        return mask_util.merge(
            mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict):
        if isinstance(segmentation['counts'], list):
            return mask_util.frPyObjects(segmentation, height, width)
        return segmentation
    raise TypeError('segmentation must be polygons (list) or RLE (dict), '
                    f'got {type(segmentation).__name__}')


def decode_mask(segmentation: Union[list, dict], height: int,
                width: int) -> np.ndarray:
    """Decode a COCO polygon list or RLE to a binary mask, as
    ``COCO.annToMask`` does.

    Args:
        segmentation (list | dict): polygons ``[[x0, y0, x1, y1, ...], ...]``
            or an RLE ``{'size': [h, w], 'counts': str | bytes | list}``.
        height (int): image height.
        width (int): image width.

    Returns:
        np.ndarray: uint8 (height, width) in {0, 1}.
    """
    rle = segmentation_to_rle(segmentation, height, width)
    return mask_util.decode(rle).astype(np.uint8)


def mask_problem(segmentation: Union[list, dict], width: int,
                 height: int) -> Optional[str]:
    """Why a polygon / RLE segmentation is unusable, or ``None`` (rule 4).

    Args:
        segmentation (list | dict): COCO polygons or RLE.
        width (int): image width.
        height (int): image height.

    Returns:
        str | None: a phrase such as ``'has a zero-area mask'``.
    """
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if (not isinstance(polygon, list) or len(polygon) < 6
                    or len(polygon) % 2):
                return ('has a polygon that is not a flat list of at least '
                        '3 (x, y) points')
            xs, ys = polygon[0::2], polygon[1::2]
            if (min(xs) < -OUTSIDE_TOLERANCE or min(ys) < -OUTSIDE_TOLERANCE
                    or max(xs) > width + OUTSIDE_TOLERANCE
                    or max(ys) > height + OUTSIDE_TOLERANCE):
                return f'has a polygon outside the {width}x{height} image'
    elif isinstance(segmentation, dict):
        if 'counts' not in segmentation or 'size' not in segmentation:
            return "has an RLE segmentation without 'counts' and 'size'"
        if list(segmentation['size']) != [height, width]:
            return (f"has an RLE of size {segmentation['size']}, not the "
                    f'image size [{height}, {width}]')
    else:
        return (f'has a segmentation of unknown type '
                f'{type(segmentation).__name__}')
    rle = segmentation_to_rle(segmentation, height, width)
    if float(mask_util.area(rle)) <= 0:
        return 'has a zero-area mask'
    return None


def instance_problem(ann: dict,
                     width: int,
                     height: int,
                     check_mask: bool = True) -> Optional[str]:
    """Why an annotation is unusable, or ``None`` when it is fine.

    Crowd annotations are judged like the others (a loader keeps a valid
    crowd region as an ignored instance); whether a crowd region may be a
    K-shot instance is :func:`is_valid_instance`'s question.

    Args:
        ann (dict): a COCO annotation.
        width (int): width of its image.
        height (int): height of its image.
        check_mask (bool): also apply rule 4 to ``segmentation`` (a missing
            or empty one fails). Defaults to True.

    Returns:
        str | None: a phrase that completes "annotation N ...", e.g.
        ``'has a degenerate bbox [2, 4, 0.5, 9] (width or height < 1 px)'``.
    """
    bbox = ann.get('bbox')
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return f'has no valid bbox [x, y, w, h] (got {bbox!r})'
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f'has a non-finite bbox {bbox}'
    try:
        area = float(ann.get('area', 0))
    except (TypeError, ValueError):
        area = 0.0
    if not area > 0:
        return f"has zero area (area={ann.get('area')})"
    if w < MIN_BOX_SIZE or h < MIN_BOX_SIZE:
        return (f'has a degenerate bbox {bbox} (width or height < '
                f'{MIN_BOX_SIZE:g} px)')
    if (x < -OUTSIDE_TOLERANCE or y < -OUTSIDE_TOLERANCE
            or x + w > width + OUTSIDE_TOLERANCE
            or y + h > height + OUTSIDE_TOLERANCE or x + w <= 0 or y + h <= 0
            or x >= width or y >= height):
        return f'has a bbox {bbox} outside the {width}x{height} image'
    if not check_mask:
        return None
    segmentation = ann.get('segmentation')
    if not segmentation:
        what = ('no segmentation' if segmentation is None else
                f'an empty segmentation ({segmentation!r})')
        return f'has {what}: no mask to train on or to draw as a shot'
    return mask_problem(segmentation, width, height)


def is_valid_instance(ann: dict, width: int, height: int) -> bool:
    """Whether an annotation can be a K-shot instance: not crowd, and
    :func:`instance_problem` finds nothing.

    Args:
        ann (dict): a COCO annotation.
        width (int): width of its image.
        height (int): height of its image.

    Returns:
        bool: True when the split generator may draw it.
    """
    return (not ann.get('iscrowd', 0)
            and instance_problem(ann, width, height) is None)
