"""The hard synthetic FSIS images (``difficulty='hard'``,
:func:`make_hard_image`): 12 classes whose colours and textures are only
loosely tied to the class, textured backgrounds with unannotated clutter,
2-6 instances of widely varying size placed close to each other, occluding
bars and a slight blur."""
import math
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .synthetic_class_splits import SYNTHETIC_HARD_CLASSES, ClassStream
from .synthetic_easy import EASY_STYLE, blotchy_background
from .synthetic_shapes import BASE_SIZE, draw_shape, paint_over

#: BGR reference colour and texture of each hard-set class; an instance mixes
#: the colour with a random one and keeps the texture half of the time
_HARD_STYLE = dict(
    circle=(EASY_STYLE['circle'][0], 'solid'),
    square=(EASY_STYLE['square'][0], 'stripes'),
    triangle=(EASY_STYLE['triangle'][0], 'checker'),
    ring=(EASY_STYLE['ring'][0], 'dots'),
    cross=(EASY_STYLE['cross'][0], 'stripes'),
    star=(EASY_STYLE['star'][0], 'waves'),
    crescent=(EASY_STYLE['crescent'][0], 'grid'),
    heart=(EASY_STYLE['heart'][0], 'speckle'),
    hexagon=((120, 200, 120), 'waves'),
    ellipse=((60, 60, 140), 'checker'),
    bolt=((200, 200, 200), 'stripes'),
    arrow=((140, 60, 20), 'dots'))
_HARD_TEXTURES = ('solid', 'stripes', 'checker', 'dots', 'grid', 'speckle',
                  'waves')
_HARD_MIN_VISIBLE = 0.35  # fraction of an instance that must stay visible
_HARD_MIN_AREA = 16  # visible pixels every instance keeps
_HARD_RADIUS = (6., 40.)  # at BASE_SIZE, drawn log-uniformly
_HARD_NEAR_PROB = 0.6  # chance that an instance is placed next to another


def _pattern(kind: str, height: int, width: int,
             rng: np.random.Generator) -> np.ndarray:
    """A float32 (H, W) pattern in [0, 1] of random period, angle, phase."""
    if kind not in _HARD_TEXTURES:
        raise ValueError(f'unknown texture {kind!r}')
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(3, 8)
    phase = rng.uniform(0, period)
    u = xx * math.cos(theta) + yy * math.sin(theta) + phase
    v = yy * math.cos(theta) - xx * math.sin(theta) + phase
    half = period / 2
    if kind == 'solid':
        return np.ones((height, width), np.float32)
    if kind == 'stripes':
        return (u // half % 2).astype(np.float32)
    if kind == 'checker':
        return ((u // half + v // half) % 2).astype(np.float32)
    if kind == 'dots':
        return 1. - ((u % period < period / 2.5) &
                     (v % period < period / 2.5)).astype(np.float32)
    if kind == 'grid':
        return 1. - ((u % period < 1) | (v % period < 1)).astype(np.float32)
    if kind == 'speckle':
        return (rng.random((height, width)) > 0.35).astype(np.float32)
    wobble = 2 * np.sin(2 * math.pi * v / (3 * period))
    return (0.5 + 0.5 * np.sin(math.pi * u / period + wobble)).astype(
        np.float32)


def _two_tone(pattern: np.ndarray, colour: np.ndarray, second: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """``colour`` where the pattern is 1, ``second`` where 0, plus noise."""
    img = (
        colour[None, None, :] * pattern[..., None] + second[None, None, :] *
        (1. - pattern[..., None]))
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _hard_instance_texture(label: int, height: int, width: int,
                           rng: np.random.Generator) -> np.ndarray:
    """The full-image texture of one hard-set instance, uint8 (H, W, 3)."""
    colour, kind = _HARD_STYLE[SYNTHETIC_HARD_CLASSES[label]]
    mix = rng.uniform(0.15, 0.55)
    colour = (1 - mix) * np.array(colour, np.float32) + mix * rng.uniform(
        0, 255, 3)
    if rng.random() >= 0.5:
        kind = _HARD_TEXTURES[int(rng.integers(len(_HARD_TEXTURES)))]
    second = colour * rng.uniform(0.35, 0.75)
    return _two_tone(_pattern(kind, height, width, rng), colour, second, rng)


def _stuff_texture(height: int, width: int,
                   rng: np.random.Generator) -> np.ndarray:
    """A random texture of unannotated stuff (background, clutter, bars)."""
    colour = rng.uniform(40, 220, 3)
    second = 0.5 * colour + 0.5 * rng.uniform(40, 220, 3)
    kind = _HARD_TEXTURES[int(rng.integers(len(_HARD_TEXTURES)))]
    return _two_tone(_pattern(kind, height, width, rng), colour, second, rng)


def _hard_background(height: int, width: int, rng: np.random.Generator,
                     scale: float) -> np.ndarray:
    """Blotches under a random texture, plus 2-5 unannotated clutter
    blobs, uint8 (H, W, 3)."""
    img = blotchy_background(height, width, rng).astype(np.float32)
    alpha = rng.uniform(0.3, 0.7)
    img = (1 - alpha) * img + alpha * _stuff_texture(height, width, rng)
    img = img.astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        radius = rng.uniform(4, 14) * scale
        t = np.sort(rng.uniform(0, 2 * math.pi, 9))
        rad = radius * rng.uniform(0.5, 1., 9)
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
        pts += rng.uniform(0, [width, height])
        blob = np.zeros((height, width), np.uint8)
        cv2.fillPoly(blob, [np.round(pts).astype(np.int32)], 1)
        texture = _stuff_texture(height, width, rng)
        img[blob > 0] = texture[blob > 0]
    return img


def _hard_finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soften every edge (Gaussian blur, sigma 0.7) and add pixel noise."""
    out = cv2.GaussianBlur(img, (3, 3), 0.7).astype(np.float32)
    out += rng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _keeps_enough(placed: List[dict], cover: np.ndarray) -> bool:
    """Whether every placed instance stays visible enough under ``cover``."""
    for p in placed:
        visible = int((p['mask'] & (1 - cover)).sum())
        if visible < max(_HARD_MIN_VISIBLE * p['full_area'], _HARD_MIN_AREA):
            return False
    return True


def _place_hard_instance(label: int, placed: List[dict], h: int, w: int,
                         scale: float,
                         rng: np.random.Generator) -> Optional[dict]:
    """Up to 30 tries to place a shape of class ``label`` (log-uniform
    radius, next to an earlier instance with probability
    :data:`_HARD_NEAR_PROB`) that has :data:`_HARD_MIN_AREA` pixels and
    leaves every ``placed`` instance visible enough; returns its ``label``,
    full ``mask``, ``full_area``, ``centre`` and ``radius``, or None."""
    log_radius = (math.log(_HARD_RADIUS[0]), math.log(_HARD_RADIUS[1]))
    for _attempt in range(30):
        radius = min(
            math.exp(rng.uniform(*log_radius)) * scale, (min(h, w) - 4) / 2)
        low, high = radius + 1, np.array([w, h]) - radius - 2
        if placed and rng.random() < _HARD_NEAR_PROB:
            anchor = placed[int(rng.integers(len(placed)))]
            direction = rng.uniform(0, 2 * math.pi)
            dist = (anchor['radius'] + radius) * rng.uniform(0.3, 0.9)
            centre = np.clip(
                anchor['centre'] +
                dist * np.array([math.cos(direction),
                                 math.sin(direction)]), low, high)
        else:
            centre = rng.uniform(low, high)
        full = draw_shape(SYNTHETIC_HARD_CLASSES[label], h, w, centre, radius,
                          rng.uniform(0, 2 * math.pi))
        full_area = int(full.sum())
        if full_area >= _HARD_MIN_AREA and _keeps_enough(placed, full):
            return dict(
                label=label,
                mask=full,
                full_area=full_area,
                centre=centre,
                radius=radius)
    return None


def _draw_bar(img: np.ndarray, placed: List[dict], image_size: int,
              scale: float, rng: np.random.Generator) -> None:
    """Draw one occluding bar of stuff texture in front of the instances,
    unless it would leave one of them not visible enough."""
    h, w = img.shape[:2]
    bar = np.zeros((h, w), np.uint8)
    start = rng.uniform(0, [w, h])
    direction = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(0.3, 0.8) * image_size
    end = start + length * np.array([math.cos(direction), math.sin(direction)])
    thickness = max(1, int(round(rng.uniform(1.5, 4) * scale)))
    cv2.line(bar, tuple(int(round(v)) for v in start),
             tuple(int(round(v)) for v in end), 1, thickness)
    texture = _stuff_texture(h, w, rng)
    if _keeps_enough(placed, bar):
        paint_over(img, placed, bar, texture)


def make_hard_image(image_size: int, rng: np.random.Generator,
                     stream: ClassStream) -> Tuple[np.ndarray, List[dict]]:
    """One hard-set image and its instances (``label``, visible ``mask``,
    ``full_area`` of the whole shape).

    2-6 instances, radius log-uniform in 6-40 px (at 128 px), each placed next
    to an earlier one with probability 0.6 (so they overlap); later instances
    cover earlier ones, which keep >= 35 % and >= 16 pixels. Then 0-2 bars of
    stuff texture are drawn in front (kept only if every instance stays that
    visible), and the whole image is blurred slightly. Masks are the visible
    pixels of each instance's shape, before the blur.
    """
    h = w = image_size
    scale = image_size / BASE_SIZE
    img = _hard_background(h, w, rng, scale)
    placed: List[dict] = []
    for _ in range(int(rng.integers(2, 7))):
        label = stream.next()
        instance = _place_hard_instance(label, placed, h, w, scale, rng)
        if instance is None:
            continue  # no place found; the image gets fewer instances
        texture = _hard_instance_texture(label, h, w, rng)
        paint_over(img, placed, instance['mask'], texture)
        placed.append(instance)
    for _ in range(int(rng.integers(0, 3))):
        _draw_bar(img, placed, image_size, scale, rng)
    return _hard_finish(img, rng), placed
