"""The easy synthetic FSIS images (the default set): each of the eight
classes has its own colour and texture (:data:`EASY_STYLE`), painted on a
noisy, blotchy background; 1-4 instances, an earlier one keeping at least
60 % of its pixels (:func:`make_easy_image`)."""
import math
from typing import List, Tuple

import cv2
import numpy as np

from .synthetic_class_splits import SYNTHETIC_CLASSES, ClassStream
from .synthetic_shapes import BASE_SIZE, draw_shape, paint_over

# BGR colour and texture of each class.
EASY_STYLE = dict(
    circle=((40, 40, 220), 'solid'),
    square=((220, 90, 30), 'hstripes'),
    triangle=((40, 200, 40), 'checker'),
    ring=((30, 220, 230), 'dots'),
    cross=((210, 40, 210), 'vstripes'),
    star=((230, 220, 40), 'diagonal'),
    crescent=((20, 140, 255), 'grid'),
    heart=((180, 150, 255), 'speckle'))

_MIN_VISIBLE = 0.6  # fraction of an instance that must stay visible


def _texture(name: str, height: int, width: int,
             rng: np.random.Generator) -> np.ndarray:
    """The full-image texture of a class, uint8 (H, W, 3) BGR."""
    colour, kind = EASY_STYLE[name]
    colour = np.clip(
        np.array(colour, np.float32) * rng.uniform(0.85, 1.1), 0, 255)
    yy, xx = np.mgrid[:height, :width]
    phase = rng.integers(0, 8)
    if kind == 'solid':
        pattern = np.ones((height, width), np.float32)
    elif kind == 'hstripes':
        pattern = ((yy + phase) // 3 % 2).astype(np.float32)
    elif kind == 'vstripes':
        pattern = ((xx + phase) // 3 % 2).astype(np.float32)
    elif kind == 'checker':
        pattern = (((xx + phase) // 4 + (yy + phase) // 4) % 2).astype(
            np.float32)
    elif kind == 'dots':
        pattern = 1. - (((xx + phase) % 5 < 2) &
                        ((yy + phase) % 5 < 2)).astype(np.float32)
    elif kind == 'diagonal':
        pattern = ((xx + yy + phase) // 3 % 2).astype(np.float32)
    elif kind == 'grid':
        pattern = 1. - (((xx + phase) % 6 == 0) |
                        ((yy + phase) % 6 == 0)).astype(np.float32)
    else:  # speckle
        pattern = (rng.random((height, width)) > 0.3).astype(np.float32)
    shade = 0.45 + 0.55 * pattern
    img = colour[None, None, :] * shade[..., None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def blotchy_background(height: int, width: int,
                rng: np.random.Generator) -> np.ndarray:
    """Greyish low-frequency blotches plus pixel noise, uint8 (H, W, 3)."""
    coarse = rng.uniform(70, 150, (6, 6, 3)).astype(np.float32)
    coarse = coarse.mean(axis=2, keepdims=True) * 0.7 + coarse * 0.3
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img = img + rng.normal(0, 10, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_easy_image(image_size: int, rng: np.random.Generator,
                stream: ClassStream) -> Tuple[np.ndarray, List[dict]]:
    """One image and its instances (``label``, visible ``mask``)."""
    h = w = image_size
    scale = image_size / BASE_SIZE
    img = blotchy_background(h, w, rng)
    placed: List[dict] = []
    for _ in range(int(rng.integers(1, 5))):
        label = stream.next()
        name = SYNTHETIC_CLASSES[label]
        for _attempt in range(30):
            radius = rng.uniform(10, 30) * scale
            margin = radius + 1
            if 2 * margin >= min(h, w) - 1:
                radius = (min(h, w) - 4) / 2
                margin = radius + 1
            centre = rng.uniform(margin, [w - margin - 1, h - margin - 1])
            full = draw_shape(name, h, w, centre, radius,
                              rng.uniform(0, 2 * math.pi))
            full_area = int(full.sum())
            if full_area < 16:
                continue
            occluded_ok = all(
                int((p['mask'] & (1 - full)).sum()) >= _MIN_VISIBLE *
                p['full_area'] for p in placed)
            if occluded_ok:
                break
        else:
            continue  # no place found; the image gets fewer instances
        paint_over(img, placed, full, _texture(name, h, w, rng))
        placed.append(dict(label=label, mask=full, full_area=full_area))
    return img, placed
