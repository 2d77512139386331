"""Annotation-only datasets with COCO's proportions, for checks without pixels.

The embedded demo has 300 images and 2 novel classes; COCO has ~118k training
images (~98k with a base-class instance), 80 categories with COCO's names and
ids, ~7.3 instances per image and a long-tailed class frequency (``person``
is about a third of all instances). Choices that are harmless at demo size —
how stage 2 mixes the K-shot novel images into the base set, where training
shots come from — can starve the 20 novel classes at COCO size. This module
writes COCO-format annotation files with those proportions (no images) so
tests and ``tools/analysis_tools/check_fsis_data.py`` can run the real
``configs/maskdiff/*`` data pipeline up to the sampled indices on a CPU.

The numbers are drawn from a seeded NumPy generator, so a file is a pure
function of the arguments.
"""
import os.path as osp
from typing import Dict

import numpy as np

from .class_splits import COCO_ALL_CLASSES
from .few_shot_splits import dump_canonical_json

#: COCO 2017's category ids of ``COCO_ALL_CLASSES`` (1-90 with gaps)
COCO_CATEGORY_IDS = tuple(
    i for i in range(1, 91)
    if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
#: mean instances per image of instances_train2017.json (860k / 118k)
COCO_INSTANCES_PER_IMAGE = 7.3
#: share of ``person`` among COCO's instances
COCO_PERSON_SHARE = 0.30


def _class_frequencies(rng: np.random.Generator) -> np.ndarray:
    """A long-tailed distribution over the 80 classes: person 30 %, the
    others log-normal (COCO's next classes hold 2-5 %, its rarest ~0.1 %)."""
    rest = rng.lognormal(0.0, 0.8, len(COCO_ALL_CLASSES) - 1)
    rest = rest / rest.sum() * (1 - COCO_PERSON_SHARE)
    return np.concatenate([[COCO_PERSON_SHARE], rest])


def coco_shaped_dict(num_images: int,
                     seed: int = 0,
                     first_image_id: int = 1,
                     crowd_share: float = 0.01) -> dict:
    """A COCO instances dict with COCO's categories and proportions.

    Args:
        num_images (int): Number of images (each 640×480 or 480×640, with
            1 + Poisson(6.3) instances: COCO's mean of 7.3).
        seed (int): Seed of the draw. Defaults to 0.
        first_image_id (int): Id of the first image (ids are consecutive).
        crowd_share (float): Share of ``iscrowd`` instances. Defaults to 0.01.

    Returns:
        dict: ``images``, ``annotations`` (boxes with a rectangle polygon
        and its area) and ``categories``.
    """
    rng = np.random.default_rng(seed)
    freq = _class_frequencies(rng)
    images, annotations = [], []
    ann_id = 1
    for n in range(num_images):
        img_id = first_image_id + n
        width, height = (640, 480) if rng.random() < 0.7 else (480, 640)
        images.append(
            dict(id=img_id, file_name=f'{img_id:012d}.jpg', width=width,
                 height=height))
        count = 1 + rng.poisson(COCO_INSTANCES_PER_IMAGE - 1)
        labels = rng.choice(len(freq), size=count, p=freq)
        for label in labels.tolist():
            w = float(np.clip(rng.lognormal(4.0, 0.9), 4, width - 2))
            h = float(np.clip(rng.lognormal(4.0, 0.9), 4, height - 2))
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            x, y, w, h = (round(v, 2) for v in (x, y, w, h))
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=COCO_CATEGORY_IDS[label],
                    bbox=[x, y, w, h],
                    area=round(w * h, 2),
                    segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
                    iscrowd=int(rng.random() < crowd_share)))
            ann_id += 1
    categories = [
        dict(id=cat_id, name=name, supercategory='object')
        for cat_id, name in zip(COCO_CATEGORY_IDS, COCO_ALL_CLASSES)
    ]
    return dict(images=images, annotations=annotations, categories=categories)


def make_coco_shaped_annotations(root: str,
                                 num_train_images: int = 3000,
                                 num_val_images: int = 100,
                                 seed: int = 0) -> Dict[str, str]:
    """Write ``annotations/instances_{train,val}2017.json`` under ``root``.

    The layout is the one ``configs/_base_/datasets/fsis_coco_instance.py``
    expects under ``data_root`` (no image folders: nothing reads pixels).
    K-shot files can then be made with
    :func:`~mmdet_maskdiff.datasets.generate_few_shot_splits` into
    ``root/few_shot``.

    Returns:
        dict[str, str]: ``train_ann`` and ``val_ann`` paths.
    """
    paths = dict(
        train_ann=osp.join(root, 'annotations', 'instances_train2017.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val2017.json'))
    dump_canonical_json(coco_shaped_dict(num_train_images, seed),
                        paths['train_ann'])
    dump_canonical_json(
        coco_shaped_dict(
            num_val_images, seed + 1, first_image_id=num_train_images + 1),
        paths['val_ann'])
    return paths
