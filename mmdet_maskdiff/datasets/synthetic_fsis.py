"""An embedded few-shot instance segmentation dataset, drawn on the fly.

Eight shape classes, each with its own colour and texture, are painted with
random size, position and rotation on a noisy, blotchy background:

=========  =====  ============  ==========================
class      split  colour (BGR)  texture
=========  =====  ============  ==========================
circle     base   red           solid
square     base   blue          horizontal stripes
triangle   base   green         checkerboard
ring       base   yellow        dots (the hole shows the background)
cross      base   magenta       vertical stripes
star       base   cyan          diagonal stripes
crescent   novel  orange        grid lines
heart      novel  pink          speckle
=========  =====  ============  ==========================

An image holds 1-4 instances; later ones may overlap earlier ones a little
(an earlier instance keeps at least 60 % of its pixels). Masks are the
*visible* pixels of each instance, exactly the pixels painted with its
texture, stored as COCO RLE (``counts`` string), which pycocotools and
mmdet's ``LoadAnnotations(with_mask=True)`` decode without loss. Boxes are
the tight boxes of those masks. Classes are drawn from a stream of shuffled
permutations, so every class gets about the same number of instances.

``difficulty='hard'`` draws a harder set of the same layout (see
:func:`_make_hard_image`): 12 classes (9 base / 3 novel, the eight above plus
hexagon, ellipse, bolt and arrow), instance colours and textures only loosely
tied to the class, textured backgrounds with unannotated clutter, 2-6
instances of widely varying size (about 12-80 px at 128) placed close to each
other, occluding bars in front of them, strong occlusion (an instance keeps
>= 35 % of its pixels) and a slight blur that softens every edge. The easy
set (the default) is unchanged by its existence, byte for byte.

Layout written under ``out_dir``::

    images/train/000001.png ...        images/test/000001.png ...
    annotations/instances_train.json   annotations/instances_test.json
    few_shot/full_box_{K}shot_{class}_trainval.json, few_shot/seed{N}/...
    synthetic_fsis.json                the generation parameters

Everything is a function of the arguments (numpy ``default_rng`` streams,
canonical json), so a re-run writes byte-identical files.
"""
import json
import math
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util

from .class_splits import register_class_splits
from .few_shot_splits import dump_canonical_json, generate_few_shot_splits

SYNTHETIC_CLASS_SPLITS = dict(
    base=('circle', 'square', 'triangle', 'ring', 'cross', 'star'),
    novel=('crescent', 'heart'))
SYNTHETIC_CLASSES: Tuple[str, ...] = (
    SYNTHETIC_CLASS_SPLITS['base'] + SYNTHETIC_CLASS_SPLITS['novel'])
# configs and the command line can say class_splits='synthetic'
register_class_splits('synthetic', **SYNTHETIC_CLASS_SPLITS)

SYNTHETIC_HARD_CLASS_SPLITS = dict(
    base=SYNTHETIC_CLASS_SPLITS['base'] + ('hexagon', 'ellipse', 'bolt'),
    novel=SYNTHETIC_CLASS_SPLITS['novel'] + ('arrow', ))
SYNTHETIC_HARD_CLASSES: Tuple[str, ...] = (
    SYNTHETIC_HARD_CLASS_SPLITS['base'] + SYNTHETIC_HARD_CLASS_SPLITS['novel'])
# ... and class_splits='synthetic_hard' for difficulty='hard'
register_class_splits('synthetic_hard', **SYNTHETIC_HARD_CLASS_SPLITS)

#: class splits of each difficulty of :func:`make_synthetic_fsis`
SYNTHETIC_SPLITS_BY_DIFFICULTY: Dict[str, Dict[str, Tuple[str, ...]]] = dict(
    easy=SYNTHETIC_CLASS_SPLITS, hard=SYNTHETIC_HARD_CLASS_SPLITS)
#: the ``class_splits`` preset name of each difficulty
SYNTHETIC_SPLIT_NAMES: Dict[str, str] = dict(
    easy='synthetic', hard='synthetic_hard')

# BGR colour and texture of each class.
_STYLE = dict(
    circle=((40, 40, 220), 'solid'),
    square=((220, 90, 30), 'hstripes'),
    triangle=((40, 200, 40), 'checker'),
    ring=((30, 220, 230), 'dots'),
    cross=((210, 40, 210), 'vstripes'),
    star=((230, 220, 40), 'diagonal'),
    crescent=((20, 140, 255), 'grid'),
    heart=((180, 150, 255), 'speckle'))

_FORMAT_VERSION = 1
_MANIFEST = 'synthetic_fsis.json'
_MIN_VISIBLE = 0.6  # fraction of an instance that must stay visible
_BASE_SIZE = 128  # object sizes below are for this image size


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


def _texture(name: str, height: int, width: int,
             rng: np.random.Generator) -> np.ndarray:
    """The full-image texture of a class, uint8 (H, W, 3) BGR."""
    colour, kind = _STYLE[name]
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


def _background(height: int, width: int,
                rng: np.random.Generator) -> np.ndarray:
    """Greyish low-frequency blotches plus pixel noise, uint8 (H, W, 3)."""
    coarse = rng.uniform(70, 150, (6, 6, 3)).astype(np.float32)
    coarse = coarse.mean(axis=2, keepdims=True) * 0.7 + coarse * 0.3
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img = img + rng.normal(0, 10, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


class _ClassStream:
    """Class ids from consecutive shuffled permutations (balanced counts)."""

    def __init__(self, num_classes: int, rng: np.random.Generator) -> None:
        self.num_classes = num_classes
        self.rng = rng
        self.queue: List[int] = []

    def next(self) -> int:
        if not self.queue:
            self.queue = self.rng.permutation(self.num_classes).tolist()
        return self.queue.pop()


def _paint_over(img: np.ndarray, placed: List[dict], cover: np.ndarray,
                texture: np.ndarray) -> None:
    """Paint ``texture`` (H, W, 3) into ``img`` where ``cover`` (H, W) is
    set, and take those pixels from the visible ``mask`` of every
    ``placed`` instance."""
    for p in placed:
        p['mask'] = p['mask'] & (1 - cover)
    img[cover > 0] = texture[cover > 0]


def _make_image(image_size: int, rng: np.random.Generator,
                stream: _ClassStream) -> Tuple[np.ndarray, List[dict]]:
    """One image and its instances (``label``, visible ``mask``)."""
    h = w = image_size
    scale = image_size / _BASE_SIZE
    img = _background(h, w, rng)
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
        _paint_over(img, placed, full, _texture(name, h, w, rng))
        placed.append(dict(label=label, mask=full, full_area=full_area))
    return img, placed


# ---------------------------------------------------------------------- #
# the hard set (difficulty='hard')
# ---------------------------------------------------------------------- #
#: BGR reference colour and texture of each hard-set class; an instance mixes
#: the colour with a random one and keeps the texture half of the time
_HARD_STYLE = dict(
    circle=(_STYLE['circle'][0], 'solid'),
    square=(_STYLE['square'][0], 'stripes'),
    triangle=(_STYLE['triangle'][0], 'checker'),
    ring=(_STYLE['ring'][0], 'dots'),
    cross=(_STYLE['cross'][0], 'stripes'),
    star=(_STYLE['star'][0], 'waves'),
    crescent=(_STYLE['crescent'][0], 'grid'),
    heart=(_STYLE['heart'][0], 'speckle'),
    hexagon=((120, 200, 120), 'waves'),
    ellipse=((60, 60, 140), 'checker'),
    bolt=((200, 200, 200), 'stripes'),
    arrow=((140, 60, 20), 'dots'))
_HARD_TEXTURES = ('solid', 'stripes', 'checker', 'dots', 'grid', 'speckle',
                  'waves')
_HARD_MIN_VISIBLE = 0.35  # fraction of an instance that must stay visible
_HARD_MIN_AREA = 16  # visible pixels every instance keeps
_HARD_RADIUS = (6., 40.)  # at _BASE_SIZE, drawn log-uniformly
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
    img = _background(height, width, rng).astype(np.float32)
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
        _paint_over(img, placed, bar, texture)


def _make_hard_image(image_size: int, rng: np.random.Generator,
                     stream: _ClassStream) -> Tuple[np.ndarray, List[dict]]:
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
    scale = image_size / _BASE_SIZE
    img = _hard_background(h, w, rng, scale)
    placed: List[dict] = []
    for _ in range(int(rng.integers(2, 7))):
        label = stream.next()
        instance = _place_hard_instance(label, placed, h, w, scale, rng)
        if instance is None:
            continue  # no place found; the image gets fewer instances
        texture = _hard_instance_texture(label, h, w, rng)
        _paint_over(img, placed, instance['mask'], texture)
        placed.append(instance)
    for _ in range(int(rng.integers(0, 3))):
        _draw_bar(img, placed, image_size, scale, rng)
    return _hard_finish(img, rng), placed


def _annotation(ann_id: int, img_id: int, label: int,
                mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=label + 1,
        bbox=[x0, y0, int(xs.max()) + 1 - x0,
              int(ys.max()) + 1 - y0],
        area=int(mask.sum()),
        iscrowd=0,
        segmentation=dict(
            size=[int(mask.shape[0]), int(mask.shape[1])],
            counts=rle['counts'].decode('ascii')))


def _write_split(out_dir: str,
                 split: str,
                 num_images: int,
                 image_size: int,
                 rng: np.random.Generator,
                 difficulty: str = 'easy') -> str:
    img_dir = osp.join(out_dir, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    if difficulty == 'easy':
        classes, make_image = SYNTHETIC_CLASSES, _make_image
        description = f'mmdet_maskdiff synthetic FSIS ({split})'
    else:
        classes, make_image = SYNTHETIC_HARD_CLASSES, _make_hard_image
        description = f'mmdet_maskdiff synthetic FSIS, hard ({split})'
    stream = _ClassStream(len(classes), rng)
    images, annotations = [], []
    for img_id in range(1, num_images + 1):
        img, instances = make_image(image_size, rng, stream)
        file_name = f'{img_id:06d}.png'
        if not cv2.imwrite(osp.join(img_dir, file_name), img):
            raise OSError(f'cannot write {osp.join(img_dir, file_name)}')
        images.append(
            dict(
                id=img_id,
                file_name=file_name,
                width=image_size,
                height=image_size))
        for inst in instances:
            annotations.append(
                _annotation(
                    len(annotations) + 1, img_id, inst['label'], inst['mask']))
    data = dict(
        info=dict(description=description, version=str(_FORMAT_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(classes)
        ])
    path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    dump_canonical_json(data, path)
    return path


def synthetic_classes(difficulty: str = 'easy') -> Tuple[str, ...]:
    """The class names (label order, base then novel) of a difficulty."""
    splits = SYNTHETIC_SPLITS_BY_DIFFICULTY[difficulty]
    return splits['base'] + splits['novel']


def synthetic_difficulty(out_dir: str) -> str:
    """The difficulty of the dataset under ``out_dir``, from its manifest
    (``'easy'`` when the manifest does not exist (yet) or names none)."""
    manifest = synthetic_paths(out_dir)['manifest']
    if not osp.isfile(manifest):
        return 'easy'
    with open(manifest, encoding='utf-8') as f:
        try:
            difficulty = json.load(f).get('difficulty', 'easy')
        except json.JSONDecodeError:
            raise ValueError(f'{manifest} is not valid JSON; regenerate the '
                             'dataset with overwrite=True') from None
    if difficulty not in SYNTHETIC_SPLITS_BY_DIFFICULTY:
        raise ValueError(f'{manifest}: unknown difficulty {difficulty!r}')
    return difficulty


def synthetic_paths(out_dir: str) -> Dict[str, str]:
    """The paths :func:`make_synthetic_fsis` writes under ``out_dir``."""
    return dict(
        root=out_dir,
        train_ann=osp.join(out_dir, 'annotations', 'instances_train.json'),
        test_ann=osp.join(out_dir, 'annotations', 'instances_test.json'),
        train_img_dir=osp.join(out_dir, 'images', 'train'),
        test_img_dir=osp.join(out_dir, 'images', 'test'),
        few_shot_root=osp.join(out_dir, 'few_shot'),
        manifest=osp.join(out_dir, _MANIFEST))


def _check_make_arguments(difficulty: str, num_train_images: int,
                          num_test_images: int, image_size: int) -> None:
    """The argument checks of :func:`make_synthetic_fsis`."""
    if difficulty not in SYNTHETIC_SPLITS_BY_DIFFICULTY:
        raise ValueError(
            f'difficulty must be one of '
            f'{sorted(SYNTHETIC_SPLITS_BY_DIFFICULTY)}, got {difficulty!r}')
    if num_train_images < 1 or num_test_images < 1:
        raise ValueError('num_train_images and num_test_images must be >= 1')
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')


def _read_manifest(manifest: str) -> Optional[dict]:
    """The generation parameters in ``manifest``; None when it does not
    exist or is not valid JSON."""
    if not osp.isfile(manifest):
        return None
    with open(manifest, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError:
            return None


def _write_manifest(manifest: str, params: dict) -> None:
    """Write the generation parameters (sorted keys, indent 1)."""
    with open(manifest, 'w', encoding='utf-8') as f:
        json.dump(params, f, sort_keys=True, indent=1)
        f.write('\n')


def _clear_previous(out_dir: str, manifest: str, overwrite: bool) -> None:
    """Delete ``images/``, ``annotations/``, ``few_shot/`` and the manifest
    under ``out_dir`` when ``overwrite``; when one exists and not
    ``overwrite``, raise ``FileExistsError``."""
    parts = [
        osp.join(out_dir, d) for d in ('images', 'annotations', 'few_shot')
    ]
    if not any(osp.exists(p) for p in parts + [manifest]):
        return
    if not overwrite:
        raise FileExistsError(
            f'{out_dir} already holds a dataset made with other '
            'arguments (or other files); pass overwrite=True '
            '(--overwrite) to replace it')
    for p in parts:
        if osp.isdir(p):
            shutil.rmtree(p)
    if osp.exists(manifest):
        os.remove(manifest)


def _manifest_params(num_train_images: int, num_test_images: int,
                     image_size: int, seed: int, shots: Sequence[int],
                     seeds: Sequence[int], difficulty: str) -> dict:
    """The generation parameters written to (and compared with) the
    manifest."""
    params = dict(
        format_version=_FORMAT_VERSION,
        num_train_images=int(num_train_images),
        num_test_images=int(num_test_images),
        image_size=int(image_size),
        seed=int(seed),
        shots=sorted(set(int(k) for k in shots)),
        seeds=sorted(set(int(s) for s in seeds)),
        classes=list(synthetic_classes(difficulty)))
    if difficulty != 'easy':  # the easy manifest keeps its original keys
        params['difficulty'] = difficulty
    return params


def _write_dataset(out_dir: str, num_images: Tuple[int, int],
                   image_size: int, seed: int, params: dict,
                   difficulty: str) -> None:
    """Write the images and annotations (``num_images``: train, test), the
    few-shot files and, last, the manifest (``params``)."""
    paths = synthetic_paths(out_dir)
    train_rng = np.random.default_rng([seed, 0])
    test_rng = np.random.default_rng([seed, 1])
    _write_split(out_dir, 'train', num_images[0], image_size, train_rng,
                 difficulty)
    _write_split(out_dir, 'test', num_images[1], image_size, test_rng,
                 difficulty)
    generate_few_shot_splits(
        paths['train_ann'],
        paths['few_shot_root'],
        shots=params['shots'],
        seeds=params['seeds'])
    # the manifest last: its presence means the dataset is complete
    _write_manifest(paths['manifest'], params)


def make_synthetic_fsis(out_dir: str,
                        num_train_images: int = 300,
                        num_test_images: int = 80,
                        image_size: int = 128,
                        seed: int = 0,
                        shots: Sequence[int] = (1, 2, 3, 5, 10),
                        seeds: Sequence[int] = (0, 1, 2),
                        overwrite: bool = False,
                        difficulty: str = 'easy') -> Dict[str, str]:
    """Write the synthetic FSIS dataset (COCO format + TFA-layout splits).

    If ``out_dir`` already holds a dataset made with the same arguments
    (its ``synthetic_fsis.json`` matches), nothing is written and the paths
    are returned, so callers may invoke this unconditionally.

    Args:
        out_dir (str): the dataset root.
        num_train_images (int): training images. Defaults to 300.
        num_test_images (int): test images. Defaults to 80.
        image_size (int): side of the square images; object sizes (20-60 px
            at 128) scale with it. Defaults to 128.
        seed (int): the generation seed. Defaults to 0.
        shots (Sequence[int]): K of the few-shot files.
            Defaults to (1, 2, 3, 5, 10).
        seeds (Sequence[int]): seeds of the few-shot files.
            Defaults to (0, 1, 2).
        overwrite (bool): replace a dataset made with other arguments
            (``images/``, ``annotations/`` and ``few_shot/`` under
            ``out_dir`` are deleted first). Defaults to False.
        difficulty (str): ``'easy'`` (8 classes, class-coloured shapes on a
            plain background) or ``'hard'`` (12 classes, textures, clutter,
            strong occlusion, scale variation; see the module docstring and
            :data:`SYNTHETIC_HARD_CLASS_SPLITS`). Defaults to ``'easy'``.

    Returns:
        dict[str, str]: ``root``, ``train_ann``, ``test_ann``,
        ``train_img_dir``, ``test_img_dir``, ``few_shot_root``, ``manifest``.

    Raises:
        FileExistsError: ``out_dir`` holds another dataset (or files in
            these sub-folders) and ``overwrite`` is False.
        ValueError: invalid sizes or difficulty, or too few training
            instances of a class for the largest K (use more training
            images).
    """
    _check_make_arguments(difficulty, num_train_images, num_test_images,
                          image_size)
    paths = synthetic_paths(out_dir)
    params = _manifest_params(num_train_images, num_test_images, image_size,
                              seed, shots, seeds, difficulty)
    if _read_manifest(paths['manifest']) == params:
        return paths
    _clear_previous(out_dir, paths['manifest'], overwrite)

    _write_dataset(out_dir, (num_train_images, num_test_images), image_size,
                   seed, params, difficulty)
    return paths


def count_instances(ann_file: str) -> Dict[str, int]:
    """Instances per class name of a COCO json (for reports and tests)."""
    with open(ann_file, encoding='utf-8') as f:
        data = json.load(f)
    names = {c['id']: c['name'] for c in data['categories']}
    counts = {name: 0 for name in names.values()}
    for ann in data['annotations']:
        counts[names[ann['category_id']]] += 1
    return counts


__all__ = [
    'SYNTHETIC_CLASS_SPLITS', 'SYNTHETIC_CLASSES',
    'SYNTHETIC_HARD_CLASS_SPLITS', 'SYNTHETIC_HARD_CLASSES',
    'SYNTHETIC_SPLITS_BY_DIFFICULTY', 'SYNTHETIC_SPLIT_NAMES',
    'make_synthetic_fsis', 'synthetic_classes', 'synthetic_difficulty',
    'synthetic_paths', 'draw_shape', 'count_instances'
]
