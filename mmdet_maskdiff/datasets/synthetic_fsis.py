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

``difficulty='hard'`` draws a harder set of the same layout
(:mod:`.synthetic_hard`): 12 classes (9 base / 3 novel, the eight above plus
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

This module writes the dataset (images, COCO annotations, K-shot files,
manifest); the classes and their splits are in :mod:`.synthetic_class_splits`,
the shapes in :mod:`.synthetic_shapes`, the images of each set in
:mod:`.synthetic_easy` and :mod:`.synthetic_hard`.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util

from .few_shot_splits import dump_canonical_json, generate_few_shot_splits
from .synthetic_class_splits import (SYNTHETIC_CLASSES,
                                     SYNTHETIC_HARD_CLASSES,
                                     SYNTHETIC_SPLITS_BY_DIFFICULTY,
                                     ClassStream, synthetic_classes)
from .synthetic_easy import make_easy_image
from .synthetic_hard import make_hard_image

_FORMAT_VERSION = 1
_MANIFEST = 'synthetic_fsis.json'


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
        classes, make_image = SYNTHETIC_CLASSES, make_easy_image
        description = f'mmdet_maskdiff synthetic FSIS ({split})'
    else:
        classes, make_image = SYNTHETIC_HARD_CLASSES, make_hard_image
        description = f'mmdet_maskdiff synthetic FSIS, hard ({split})'
    stream = ClassStream(len(classes), rng)
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
    'make_synthetic_fsis', 'synthetic_difficulty', 'synthetic_paths',
    'count_instances'
]
