"""Crop geometry of a support instance: its box, enlarged by some context, as
an S×S crop of the image and of the mask, by one affine warp.

Used by :func:`.support_bank.build_support_bank`; the crops are what
:class:`~mmdet_maskdiff.structures.SupportBank` holds.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np


def crop_affine(bbox: Sequence[float], context: float,
                crop_size: int) -> np.ndarray:
    """The inverse affine map of a context-enlarged box onto an S×S crop.

    The box ``(x1, y1, x2, y2)`` grows by ``context`` × its width (height)
    on the left and right (top and bottom); crop pixel centres are spread
    evenly over it (pixel ``u`` samples ``x1' + (u + 0.5) * w' / S - 0.5``).

    Args:
        bbox (Sequence[float]): xyxy box in image pixels.
        context (float): relative enlargement per side.
        crop_size (int): S.

    Returns:
        np.ndarray: float64 (2, 3), crop pixel -> image pixel (use with
        ``cv2.WARP_INVERSE_MAP``).
    """
    x1, y1, x2, y2 = (float(v) for v in bbox)
    w, h = x2 - x1, y2 - y1
    x1, x2 = x1 - context * w, x2 + context * w
    y1, y2 = y1 - context * h, y2 + context * h
    sx, sy = (x2 - x1) / crop_size, (y2 - y1) / crop_size
    return np.array([[sx, 0., x1 + 0.5 * sx - 0.5],
                     [0., sy, y1 + 0.5 * sy - 0.5]])


def _warp(array: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """Bilinear inverse warp onto S×S, black (0) outside the source."""
    return cv2.warpAffine(
        array,
        matrix, (crop_size, crop_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0)


def crop_instance(img: np.ndarray, mask: np.ndarray, bbox: Sequence[float],
                  context: float,
                  crop_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Crop one instance: its image and its mask warped the same way.

    Args:
        img (np.ndarray): uint8 (H, W, 3) image.
        mask (np.ndarray): (H, W) binary mask of the instance in {0, 1}.
        bbox (Sequence[float]): xyxy box of the instance in image pixels.
        context (float): relative box enlargement per side.
        crop_size (int): S.

    Returns:
        tuple[np.ndarray, np.ndarray]: the uint8 (3, S, S) crop (bilinear,
        black outside the image) and the uint8 (1, S, S) mask in {0, 1}
        (the bilinearly warped mask thresholded at 0.5).
    """
    matrix = crop_affine(bbox, context, crop_size)
    crop = _warp(img, matrix, crop_size)
    warped = _warp(mask.astype(np.float32), matrix, crop_size)
    return crop.transpose(2, 0, 1), (warped >= 0.5).astype(np.uint8)[None]
