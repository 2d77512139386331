"""The shapes of the synthetic FSIS classes, rasterised without
anti-aliasing (:func:`draw_shape`), and painting one instance over the
earlier ones (:func:`paint_over`)."""
import math
from typing import List

import cv2
import numpy as np

BASE_SIZE = 128  # object sizes of both sets are for this image size


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _polygon(mask: np.ndarray, centre: np.ndarray, points: np.ndarray,
             angle: float) -> None:
    pts = np.round(_rotate(points, angle) + centre).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8)


def _disc(mask: np.ndarray, centre: np.ndarray, radius: float,
          value: int) -> None:
    cv2.circle(
        mask, (int(round(centre[0])), int(round(centre[1]))),
        max(1, int(round(radius))),
        value,
        -1,
        lineType=cv2.LINE_8)


#: classes drawn from discs and ellipses rather than a polygon
_ROUND_SHAPES = ('circle', 'ring', 'crescent', 'ellipse')


def _draw_round(mask: np.ndarray, name: str, centre: np.ndarray, r: float,
                angle: float) -> None:
    """Draw one of :data:`_ROUND_SHAPES` of radius ``r`` into ``mask``."""
    if name == 'ellipse':
        cv2.ellipse(
            mask, (int(round(centre[0])), int(round(centre[1]))),
            (max(1, int(round(r))), max(1, int(round(0.45 * r)))),
            math.degrees(angle),
            0,
            360,
            1,
            -1,
            lineType=cv2.LINE_8)
        return
    _disc(mask, centre, r, 1)
    if name == 'ring':
        _disc(mask, centre, 0.5 * r, 0)
    elif name == 'crescent':
        shift = _rotate(np.array([[0.5 * r, 0.]]), angle)[0]
        _disc(mask, centre + shift, 0.8 * r, 0)


def _outline(name: str, r: float) -> np.ndarray:
    """(V, 2) vertices of a polygonal class of radius ``r``, centred at 0,
    unrotated."""
    if name == 'square':
        a = 0.7 * r
        return np.array([[-a, -a], [a, -a], [a, a], [-a, a]])
    if name == 'triangle':
        t = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        return r * np.stack([np.cos(t), np.sin(t)], 1)
    if name == 'hexagon':
        t = np.arange(6) * math.pi / 3
        return r * np.stack([np.cos(t), np.sin(t)], 1)
    if name == 'star':
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    if name == 'cross':
        t, a = r / 3, r * 0.95
        return np.array([[-t, -a], [t, -a], [t, -t], [a, -t], [a, t], [t, t],
                         [t, a], [-t, a], [-t, t], [-a, t], [-a, -t],
                         [-t, -t]])
    if name == 'heart':
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        x = 16 * np.sin(t)**3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) -
              np.cos(4 * t))
        return np.stack([x, y - 2.5], 1) * (r / 17.5)
    if name == 'bolt':
        return np.array([[-0.35, -1.], [0.45, -1.], [0.05, -0.15],
                         [0.5, -0.15], [-0.4, 1.], [-0.05, 0.1], [-0.5, 0.1]
                         ]) * r
    if name == 'arrow':
        return np.array([[-1., -0.22], [0.15, -0.22], [0.15, -0.6], [1., 0.],
                         [0.15, 0.6], [0.15, 0.22], [-1., 0.22]]) * r
    raise ValueError(f'unknown synthetic class {name!r}')


def draw_shape(name: str, height: int, width: int, centre: np.ndarray,
               radius: float, angle: float) -> np.ndarray:
    """Rasterise one shape (no anti-aliasing).

    Args:
        name (str): one of :data:`SYNTHETIC_HARD_CLASSES` (which include
            :data:`SYNTHETIC_CLASSES`).
        height (int): image height.
        width (int): image width.
        centre (np.ndarray): (2,) x, y of the centre.
        radius (float): half the size; the shape fits in this circle.
        angle (float): rotation in radians.

    Returns:
        np.ndarray: uint8 (height, width) mask in {0, 1}.
    """
    mask = np.zeros((height, width), np.uint8)
    if name in _ROUND_SHAPES:
        _draw_round(mask, name, centre, radius, angle)
        return mask
    points = _outline(name, radius)
    if name == 'heart':  # the heart only tilts a little, never upside down
        angle = 0.3 * math.sin(angle)
    _polygon(mask, centre, points, angle)
    return mask


def paint_over(img: np.ndarray, placed: List[dict], cover: np.ndarray,
                texture: np.ndarray) -> None:
    """Paint ``texture`` (H, W, 3) into ``img`` where ``cover`` (H, W) is
    set, and take those pixels from the visible ``mask`` of every
    ``placed`` instance."""
    for p in placed:
        p['mask'] = p['mask'] & (1 - cover)
    img[cover > 0] = texture[cover > 0]
