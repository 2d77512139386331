"""K-shot split files in the TFA ``cocosplit`` layout: generation and reading.

Layout (the one of TFA's published ``cocosplit`` directory, so that both can be
used interchangeably; paths from
:mod:`mmdet_maskdiff.few_shot.split_paths`)::

    <root>/full_box_{K}shot_{class}_trainval.json          seed 0
    <root>/seed{N}/full_box_{K}shot_{class}_trainval.json  seed N >= 1

``{class}`` is the category name as written in the annotation file, spaces
included (``full_box_5shot_potted plant_trainval.json``). Each file is a COCO
instances json with the file's own ``info`` / ``licenses``, **all**
``categories`` and the images and annotations (with ``segmentation``) of the
K instances of that one class.

Sampling (ours, not TFA's): TFA draws *images* until the cumulative number of
instances reaches K. Here *instances* are drawn instead, which always gives
exactly K:

1. candidates = the annotations of the class that are not crowd and pass
   the datasets' validity rule (:mod:`.instance_validity`: a box of at least
   1 px inside the image, positive area, a usable mask), sorted by
   annotation id — so that :class:`.FewShotCocoDataset` accepts every file;
2. they are shuffled once with ``random.Random(derive_seed(seed, class))``
   (a SHA-256 of the seed and the class name, so it does not depend on
   Python's hash randomisation, on the other classes or on the list of K);
3. the K-shot set is the first K of that permutation, so the sets are nested
   across K for one seed (1-shot ⊂ 2-shot ⊂ ... ⊂ 30-shot).

A consequence of drawing instances: in an image that holds several instances
of the class, the ones not drawn are not annotated in the file (they are
background for the K-shot training set). Files are written with sorted keys
and fixed separators, so a re-run gives byte-identical files.
"""
import hashlib
import json
import os
import os.path as osp
import random
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmdet_maskdiff.few_shot.split_paths import few_shot_split_path
from .coco_records import check_annotation_references, check_image_records
from .instance_validity import is_valid_instance

DEFAULT_SHOTS = (1, 2, 3, 5, 10, 30)
DEFAULT_SEEDS = tuple(range(10))
REQUIRED_KEYS = ('images', 'annotations', 'categories')


def read_coco_json(path: str, display_path: Optional[str] = None) -> dict:
    """Read a COCO instances json and check its top-level structure.

    Args:
        path (str): local path of the file.
        display_path (str, optional): the name used in error messages (e.g.
            the remote path a local copy was made from). Defaults to
            ``path``.

    Returns:
        dict: the parsed json.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid json, is not an object, or lacks
            one of ``images``, ``annotations``, ``categories`` (or one of
            them is not a list).
    """
    name = path if display_path is None else display_path
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {name}')
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f'annotation file {name} is not valid json: {exc}') from exc
    check_coco_dict(data, name)
    return data


def check_coco_dict(data: dict, path: str) -> None:
    """Raise ``ValueError`` naming ``path`` if ``data`` is not COCO-shaped."""
    if not isinstance(data, dict):
        raise ValueError(f'annotation file {path} must hold a json object, '
                         f'got {type(data).__name__}')
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ValueError(
                f"annotation file {path} has no '{key}' field (a COCO "
                f"instances file needs {', '.join(REQUIRED_KEYS)})")
        if not isinstance(data[key], list):
            raise ValueError(f"field '{key}' of annotation file {path} must "
                             f'be a list, got {type(data[key]).__name__}')
    for key, fields in (('images', ('id', )),
                        ('annotations', ('id', 'image_id', 'category_id')),
                        ('categories', ('id', 'name'))):
        for i, item in enumerate(data[key]):
            if not isinstance(item, dict) or any(f not in item
                                                 for f in fields):
                raise ValueError(
                    f"entry {i} of '{key}' in annotation file {path} must be "
                    f"an object with the fields {', '.join(fields)}")


def category_ids_by_name(categories: List[dict], path: str) -> Dict[str, int]:
    """Category name -> id of one COCO file (names must be unique).

    Raises:
        ValueError: a name appears twice; the message names ``path``.
    """
    name2id: Dict[str, int] = {}
    for cat in categories:
        if cat['name'] in name2id:
            raise ValueError(f"category name '{cat['name']}' appears "
                             f'twice in {path}')
        name2id[cat['name']] = cat['id']
    return name2id


def derive_seed(seed: int, class_name: str) -> int:
    """A 64-bit seed that depends on ``seed`` and ``class_name`` only."""
    digest = hashlib.sha256(f'{seed}/{class_name}'.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big')


def sample_instances(candidates: Sequence[dict], shots: Iterable[int],
                     seed: int, class_name: str) -> Dict[int, List[dict]]:
    """Draw nested K-shot sets of instances of one class.

    Args:
        candidates (Sequence[dict]): the valid annotations of the class.
        shots (Iterable[int]): the K values.
        seed (int): the split seed.
        class_name (str): the class (part of the random seed).

    Returns:
        dict[int, list[dict]]: K -> the K annotations, in draw order; the
        list for a smaller K is a prefix of the one for a larger K.

    Raises:
        ValueError: a K larger than the number of candidates.
    """
    shots = sorted(set(shots))
    if shots and shots[0] < 1:
        raise ValueError(f'shots must be >= 1, got {shots[0]}')
    order = sorted(candidates, key=lambda ann: ann['id'])
    if shots and shots[-1] > len(order):
        raise ValueError(
            f"class '{class_name}' has {len(order)} valid non-crowd "
            f'instances, fewer than K={shots[-1]}')
    random.Random(derive_seed(seed, class_name)).shuffle(order)
    return {k: order[:k] for k in shots}


def dump_canonical_json(data: dict, path: str) -> None:
    """Write ``data`` canonically (sorted keys, fixed separators)."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, sort_keys=True, separators=(',', ':'))
        f.write('\n')


def _categories_by_file_name(categories: List[dict],
                             ann_file: str) -> Dict[str, dict]:
    """Category name -> category of ``ann_file``; a name must be unique and
    usable in a file name (no ``/`` or path separator)."""
    name2cat = {}
    for cat in categories:
        name = cat['name']
        if name in name2cat:
            raise ValueError(f"category name '{name}' appears twice in "
                             f'{ann_file}')
        if '/' in name or os.sep in name:
            raise ValueError(f"category name '{name}' in {ann_file} cannot "
                             'be part of a file name')
        name2cat[name] = cat
    return name2cat


def _valid_instances_by_category(
        data: dict, images: Dict[int, dict]) -> Dict[int, List[dict]]:
    """Category id -> the annotations of ``data`` that pass
    :func:`.instance_validity.is_valid_instance`, in file order."""
    per_cat: Dict[int, List[dict]] = {}
    for ann in data['annotations']:
        img = images[ann['image_id']]
        if is_valid_instance(ann, img['width'], img['height']):
            per_cat.setdefault(ann['category_id'], []).append(ann)
    return per_cat


def _check_writable(out_dir: str) -> None:
    """Raise ``ValueError`` naming ``out_dir`` when the split files could
    not be written there: its nearest existing folder is a file or not
    writable (checked before the annotation file is read; nothing is
    created)."""
    existing = osp.abspath(out_dir)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise ValueError(f'cannot write split files to {out_dir}: '
                         f'{existing} is a file, not a folder')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f'cannot write split files to {out_dir}: '
                         f'{existing} is not writable')


def _check_enough_instances(candidates: List[Tuple[str, List[dict]]],
                            max_shots: int, ann_file: str) -> None:
    """Fail on the first class with fewer than ``max_shots`` valid
    instances (checked for every class before anything is written)."""
    for name, anns in candidates:
        if len(anns) < max_shots:
            raise ValueError(
                f"class '{name}' has {len(anns)} valid non-crowd "
                f'instances in {ann_file}, fewer than K={max_shots} (valid: '
                'mmdet_maskdiff.datasets.instance_validity)')


def _images_of(anns: List[dict], images: Dict[int, dict]) -> List[dict]:
    """The images of ``anns``, each once, in the order of first mention."""
    image_ids = list(dict.fromkeys(a['image_id'] for a in anns))
    return [images[i] for i in image_ids]


def _write_splits(data: dict, images: Dict[int, dict],
                  candidates: List[Tuple[str, List[dict]]],
                  shots: List[int], seeds: List[int],
                  out_dir: str) -> List[str]:
    """Write the K-shot file of every seed, class (``candidates``: each
    class name with its valid annotations) and K; returns the paths, in
    (seed, class, K) order."""
    header = {key: data[key] for key in ('info', 'licenses') if key in data}
    paths = []
    for seed in seeds:
        for name, anns_of_class in candidates:
            for k, anns in sample_instances(anns_of_class, shots, seed,
                                            name).items():
                split = dict(
                    header,
                    images=_images_of(anns, images),
                    annotations=anns,
                    categories=data['categories'])
                path = few_shot_split_path(out_dir, name, k, seed)
                dump_canonical_json(split, path)
                paths.append(path)
    return paths


def generate_few_shot_splits(
        ann_file: str,
        out_dir: str,
        shots: Sequence[int] = DEFAULT_SHOTS,
        seeds: Sequence[int] = DEFAULT_SEEDS,
        classes: Optional[Sequence[str]] = None) -> List[str]:
    """Write TFA-layout K-shot files from a COCO instances json.

    Args:
        ann_file (str): the source annotation file (e.g.
            ``instances_train2017.json``).
        out_dir (str): the split directory to write (seed 0 in it, seed N in
            ``out_dir/seed{N}``).
        shots (Sequence[int]): the K values. Defaults to 1, 2, 3, 5, 10, 30.
        seeds (Sequence[int]): the seeds. Defaults to 0-9.
        classes (Sequence[str], optional): category names to write; all
            categories of the file when ``None``.

    Returns:
        list[str]: the written paths, in (seed, class, K) order.

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        ValueError: a malformed file (:mod:`.coco_records`: a repeated
            image id or file name, an annotation of an undeclared image or
            category, ...), duplicated annotation ids or category names, an
            unknown class, ``out_dir`` that cannot be written, or a class
            with fewer valid instances than the largest K (checked for every
            class before anything is written).
    """
    _check_writable(out_dir)
    data = read_coco_json(ann_file)
    shots = sorted(set(int(k) for k in shots))
    seeds = sorted(set(int(s) for s in seeds))
    if not shots or not seeds:
        raise ValueError('shots and seeds must not be empty')

    categories = data['categories']
    name2cat = _categories_by_file_name(categories, ann_file)
    if classes is None:
        classes = [cat['name'] for cat in categories]
    for name in classes:
        if name not in name2cat:
            raise ValueError(f"class '{name}' is not a category of "
                             f'{ann_file}')

    check_image_records(data['images'], ann_file)
    check_annotation_references(data, ann_file)
    images = {img['id']: img for img in data['images']}
    per_cat = _valid_instances_by_category(data, images)
    candidates = [(name, per_cat.get(name2cat[name]['id'], []))
                  for name in classes]
    _check_enough_instances(candidates, shots[-1], ann_file)
    return _write_splits(data, images, candidates, shots, seeds, out_dir)


def load_few_shot_split(root: str, class_name: str, shots: int,
                        seed: int) -> dict:
    """Read one K-shot file (written here or TFA's ``cocosplit``).

    Args:
        root (str): the split directory.
        class_name (str): category name as in the file name.
        shots (int): K.
        seed (int): the seed (0 = files in ``root``).

    Returns:
        dict: the COCO json of the split.

    Raises:
        FileNotFoundError: no such file (the message holds the path).
        ValueError: the file is not a valid COCO instances json.
    """
    path = few_shot_split_path(root, class_name, shots, seed)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"few-shot split file not found: {path} (class '{class_name}', "
            f'K={shots}, seed={seed})')
    return read_coco_json(path)
