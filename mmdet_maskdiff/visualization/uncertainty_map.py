"""Per-pixel mask uncertainty of MaskDiff as a heat map over the image.

With ``num_samples`` N > 1 the diffusion mask head draws N binary masks per
RoI; ``mask_uncertainty`` (n, m, m) is their per-pixel variance p(1 - p),
where p is the fraction of samples that are foreground
(``DiffusionMaskHead.predict``). It lies in [0, 0.25]: 0 where all samples
agree, 0.25 where they split evenly. Here each instance's m x m map is
resized onto its box in the image, instances are combined by their maximum,
and the result is coloured on a fixed scale (0 → blue, 0.25 → red) so that
pictures are comparable across images.
"""
from typing import Sequence

import cv2
import numpy as np
from torch import Tensor

#: the largest variance of a Bernoulli variable: the top of the colour scale
MAX_VARIANCE = 0.25


def paste_uncertainty(uncertainty: Tensor, bboxes: Tensor,
                      image_shape: Sequence[int]) -> np.ndarray:
    """Paste per-RoI uncertainty maps into one image-sized map.

    Args:
        uncertainty (Tensor): (n, m, m) per-RoI variance, each map covering
            its box.
        bboxes (Tensor): (n, 4) xyxy boxes in image pixels.
        image_shape (Sequence[int]): (H, W[, C]) of the image.

    Returns:
        np.ndarray: float32 (H, W), per pixel the maximum over the instances
        covering it (0 elsewhere).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    out = np.zeros((height, width), np.float32)
    maps = uncertainty.detach().float().cpu().numpy()
    for box, unc in zip(bboxes.detach().float().cpu().numpy(), maps):
        x1, y1, x2, y2 = box
        w, h = int(round(x2 - x1)), int(round(y2 - y1))
        if w < 1 or h < 1:
            continue
        resized = cv2.resize(unc, (w, h), interpolation=cv2.INTER_LINEAR)
        left, top = int(round(x1)), int(round(y1))
        # the part of the box inside the image
        ix1, iy1 = max(left, 0), max(top, 0)
        ix2, iy2 = min(left + w, width), min(top + h, height)
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        patch = resized[iy1 - top:iy2 - top, ix1 - left:ix2 - left]
        np.maximum(out[iy1:iy2, ix1:ix2], patch, out=out[iy1:iy2, ix1:ix2])
    return out


def uncertainty_heatmap(image: np.ndarray,
                        uncertainty: Tensor,
                        bboxes: Tensor,
                        alpha: float = 0.6) -> np.ndarray:
    """The image with the pasted uncertainty of its instances as a heat map.

    Args:
        image (np.ndarray): uint8 (H, W, 3) BGR image.
        uncertainty (Tensor): (n, m, m) ``mask_uncertainty`` of n instances.
        bboxes (Tensor): (n, 4) their xyxy boxes in ``image``'s pixels.
        alpha (float): Weight of the heat map where it is non-zero.

    Returns:
        np.ndarray: uint8 (H, W, 3) BGR picture: the image where all samples
        agree, the jet-coloured variance (on the fixed [0, 0.25] scale) blended
        over it inside the boxes.
    """
    pasted = paste_uncertainty(uncertainty, bboxes, image.shape)
    scaled = np.clip(pasted / MAX_VARIANCE * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(scaled, cv2.COLORMAP_JET)
    inside = np.zeros(pasted.shape, np.float32)
    for x1, y1, x2, y2 in bboxes.detach().float().cpu().numpy():
        inside[max(int(round(y1)), 0):max(int(round(y2)), 0),
               max(int(round(x1)), 0):max(int(round(x2)), 0)] = alpha
    weight = inside[..., None]
    blended = image.astype(np.float32) * (1 - weight) + colour * weight
    return blended.round().astype(np.uint8)
