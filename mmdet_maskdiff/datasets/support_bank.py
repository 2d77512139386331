"""Build a :class:`~mmdet_maskdiff.structures.SupportBank` from a dataset.

Three steps, each its own function:

1. **select** (:func:`support_entries`): the instances the bank holds, from
   the annotations alone (no image is read), capped per class;
2. **crop** (:func:`_crop_image`): each image is read once and its selected
   instances are cropped with their masks (:mod:`.support_crop`), after the
   datasets' mask rule (:mod:`.instance_validity`);
3. **assemble** (:func:`_assemble`): the crops stacked into a bank, whose
   contents are logged.

:func:`support_bank_metadata` runs step 1 and assembles blank crops: the same
instances as the real bank (for checks on annotation-only data).

``SupportBank`` itself lives in :mod:`mmdet_maskdiff.structures` (torch only,
for model code).
"""
import logging
import sys
from typing import (Dict, Iterable, Iterator, List, NamedTuple, Optional,
                    Tuple, TypeVar)

import mmcv
import numpy as np
import torch
from mmengine.fileio import get
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from mmdet_maskdiff.structures.support_bank import SupportBank
from .coco_records import decoded_size_problem
from .instance_validity import decode_mask as _decode_mask
from .instance_validity import mask_problem
from .support_crop import crop_instance

__all__ = ['build_support_bank', 'support_bank_metadata', 'support_entries']

T = TypeVar('T')


class _Crop(NamedTuple):
    """One cropped support instance, before the bank stacks them."""
    crop: np.ndarray  # uint8 (3, S, S)
    mask: np.ndarray  # uint8 (1, S, S)
    label: int
    img_id: int


_BLANK_CROP = np.zeros((3, 1, 1), np.uint8)
_BLANK_MASK = np.zeros((1, 1, 1), np.uint8)


# ---------------------------------------------------------------------- #
# 1. select
# ---------------------------------------------------------------------- #
def _select(entries: List[Tuple[int, int, int]], max_per_class: Optional[int],
            seed: int) -> List[Tuple[int, int, int]]:
    """Keep at most ``max_per_class`` entries per class (seeded, in order)."""
    if max_per_class is None:
        return entries
    if max_per_class < 1:
        raise ValueError(f'max_per_class must be >= 1, got {max_per_class}')
    positions: Dict[int, List[int]] = {}
    for i, (_, _, label) in enumerate(entries):
        positions.setdefault(label, []).append(i)
    keep = set()
    for label, pos in positions.items():
        if len(pos) > max_per_class:
            rng = np.random.default_rng([seed, label])
            pos = rng.choice(pos, max_per_class, replace=False).tolist()
        keep.update(pos)
    return [e for i, e in enumerate(entries) if i in keep]


def support_entries(dataset,
                    max_per_class: Optional[int] = None,
                    seed: int = 0) -> List[Tuple[int, int, int]]:
    """The instances a support bank of ``dataset`` holds, without reading
    any image: ``(data index, instance index, label)`` of every non-ignored
    instance, capped at ``max_per_class`` per class (a subset fixed by
    ``seed``), in dataset order. :func:`build_support_bank` crops exactly
    these; :func:`support_bank_metadata` uses them to check a setup without
    pixels.
    """
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    entries = []
    for idx in range(len(dataset)):
        for j, instance in enumerate(dataset.get_data_info(idx)['instances']):
            if not instance.get('ignore_flag', 0):
                entries.append((idx, j, int(instance['bbox_label'])))
    return _select(entries, max_per_class, seed)


def support_bank_metadata(dataset,
                          max_per_class: Optional[int] = None,
                          seed: int = 0) -> SupportBank:
    """A bank with the labels and image ids of :func:`support_entries` and
    1×1 blank crops: shot *selection* (``fixed`` / ``sample``) behaves exactly
    as on the real bank, with no image read (for checks on annotation-only
    data, ``tools/analysis_tools/check_fsis_data.py``)."""
    entries = support_entries(dataset, max_per_class, seed)
    return _assemble([
        _Crop(_BLANK_CROP, _BLANK_MASK, label,
              int(dataset.get_data_info(idx)['img_id']))
        for idx, _, label in entries
    ], 1, tuple(dataset.metainfo['classes']))


def build_support_bank(dataset,
                       crop_size: int = 64,
                       context: float = 0.1,
                       max_per_class: Optional[int] = None,
                       seed: int = 0,
                       on_invalid: str = 'raise',
                       progress: bool = False) -> SupportBank:
    """Crop every non-ignored instance of a dataset into a support bank.

    Each instance is cropped around its annotated box enlarged by
    ``context`` × the box size on each side and resized to
    ``crop_size`` × ``crop_size`` with one affine warp: bilinear for the
    image (black outside the image), the same warp on the full-image binary
    mask (bilinear, then thresholded at 0.5). Images are read once each,
    through ``dataset.backend_args``.

    Args:
        dataset: an mmdet dataset (e.g. ``FewShotCocoDataset``) whose
            ``get_data_info(i)`` gives ``img_path``, ``img_id``, ``height``,
            ``width`` and ``instances`` with ``bbox`` (xyxy), ``bbox_label``,
            ``ignore_flag`` and ``mask`` (polygons or RLE). It is fully
            initialised here if it is not yet.
        crop_size (int): S. Defaults to 64.
        context (float): relative box enlargement per side. Defaults to 0.1.
        max_per_class (int, optional): keep at most this many instances per
            class, a random subset fixed by ``seed`` (in bank order).
        seed (int): seed of that subset. Defaults to 0.
        on_invalid (str): ``'raise'`` (default) or ``'skip'`` (with a logged
            count) for an instance without a mask or whose mask fails the
            datasets' rule (:func:`.instance_validity.mask_problem`: zero
            area, polygon outside the image, RLE of another size).
            K-shot files are checked when loaded, so ``'raise'`` suits them;
            ``'skip'`` suits a large pool such as the base-training set.
        progress (bool): Show a progress bar over the images read (mmengine's
            ``ProgressBar``, on stdout). Defaults to False.

    Returns:
        SupportBank: with ``class_names = dataset.metainfo['classes']``.

    Raises:
        ValueError: an instance without a mask, an invalid mask, or an image
            whose size differs from its annotation (messages name the image
            path and the instance index).
    """
    _check_arguments(crop_size, context, on_invalid)
    class_names = tuple(dataset.metainfo['classes'])
    by_image = _entries_by_image(dataset, max_per_class, seed)
    crops, num_skipped = _crop_all(dataset, by_image, context, crop_size,
                                   on_invalid, progress)
    bank = _assemble(crops, crop_size, class_names)
    _log_bank(bank, num_skipped)
    return bank


def _entries_by_image(dataset, max_per_class: Optional[int],
                      seed: int) -> Dict[int, List[Tuple[int, int]]]:
    """Dataset index -> ``(instance index, label)`` of the bank's entries
    (:func:`support_entries`) in that image, in bank order."""
    by_image: Dict[int, List[Tuple[int, int]]] = {}
    for idx, j, label in support_entries(dataset, max_per_class, seed):
        by_image.setdefault(idx, []).append((j, label))
    return by_image


def _crop_all(dataset, by_image: Dict[int, List[Tuple[int, int]]],
              context: float, crop_size: int, on_invalid: str,
              progress: bool) -> Tuple[List[_Crop], int]:
    """The crops of every image's entries (each image read once, through
    ``dataset.backend_args``) and the number of skipped instances."""
    backend_args = getattr(dataset, 'backend_args', None)
    crops: List[_Crop] = []
    num_skipped = 0
    for idx, items in _with_progress(by_image.items(), len(by_image),
                                     progress):
        image_crops, skipped = _crop_image(
            dataset.get_data_info(idx), items, backend_args, context,
            crop_size, on_invalid)
        crops.extend(image_crops)
        num_skipped += skipped
    return crops, num_skipped


def _check_arguments(crop_size: int, context: float, on_invalid: str) -> None:
    if crop_size < 1:
        raise ValueError(f'crop_size must be >= 1, got {crop_size}')
    if context < 0:
        raise ValueError(f'context must be >= 0, got {context}')
    if on_invalid not in ('raise', 'skip'):
        raise ValueError(
            f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")


def _with_progress(items: Iterable[T], total: int, show: bool) -> Iterator[T]:
    """Yield ``items``; with ``show``, under mmengine's ``ProgressBar``
    (stdout), advanced after each item and closed with a newline."""
    if not show or not total:
        yield from items
        return
    bar = ProgressBar(total, file=sys.stdout)
    for item in items:
        yield item
        bar.update()
    bar.file.write('\n')


# ---------------------------------------------------------------------- #
# 2. crop
# ---------------------------------------------------------------------- #
def _read_image(info: dict, backend_args: Optional[dict]) -> np.ndarray:
    """The BGR image of one data info, checked against its annotated size."""
    path, height, width = info['img_path'], info['height'], info['width']
    img = mmcv.imfrombytes(
        get(path, backend_args=backend_args),
        flag='color',
        channel_order='bgr')
    problem = decoded_size_problem(img.shape, width, height)
    if problem is not None:
        raise ValueError(f'image {path} {problem}')
    return img


def _support_mask_problem(instance: dict, width: int,
                          height: int) -> Optional[str]:
    """Why an instance cannot be a support instance, or ``None``: it needs a
    mask, valid by the datasets' own rule (:mod:`.instance_validity`)."""
    if not instance.get('mask'):
        return 'has no mask (support instances need a segmentation)'
    return mask_problem(instance['mask'], width, height)


def _crop_image(info: dict, items: List[Tuple[int, int]],
                backend_args: Optional[dict], context: float, crop_size: int,
                on_invalid: str) -> Tuple[List[_Crop], int]:
    """Read one image and crop its selected instances.

    Args:
        info (dict): the data info of the image.
        items (list[tuple[int, int]]): ``(instance index, label)`` of the
            selected instances of the image.
        backend_args (dict, optional): the dataset's file backend arguments.
        context (float): relative box enlargement per side.
        crop_size (int): S.
        on_invalid (str): ``'raise'`` or ``'skip'``.

    Returns:
        tuple[list[_Crop], int]: the crops, in the order of ``items``, and
        the number of instances skipped.
    """
    img = _read_image(info, backend_args)
    height, width = info['height'], info['width']
    crops, num_skipped = [], 0
    for j, label in items:
        instance = info['instances'][j]
        problem = _support_mask_problem(instance, width, height)
        if problem is not None:
            if on_invalid == 'raise':
                raise ValueError(
                    f"instance {j} of image {info['img_path']} {problem}")
            num_skipped += 1
            continue
        full_mask = _decode_mask(instance['mask'], height, width)
        crop, mask = crop_instance(img, full_mask, instance['bbox'], context,
                                   crop_size)
        crops.append(_Crop(crop, mask, label, int(info['img_id'])))
    return crops, num_skipped


# ---------------------------------------------------------------------- #
# 3. assemble
# ---------------------------------------------------------------------- #
def _assemble(crops: List[_Crop], crop_size: int,
              class_names: Tuple[str, ...]) -> SupportBank:
    """Stack crops (in order) into a bank over ``class_names``."""
    if crops:
        crops_t = torch.from_numpy(
            np.ascontiguousarray(np.stack([c.crop for c in crops])))
        masks_t = torch.from_numpy(np.stack([c.mask for c in crops]))
    else:
        size = (crop_size, crop_size)
        crops_t = torch.zeros((0, 3) + size, dtype=torch.uint8)
        masks_t = torch.zeros((0, 1) + size, dtype=torch.uint8)
    return SupportBank(
        crops=crops_t,
        masks=masks_t,
        labels=torch.tensor([c.label for c in crops], dtype=torch.long),
        img_ids=torch.tensor([c.img_id for c in crops], dtype=torch.long),
        num_classes=len(class_names),
        class_names=class_names)


def _log_bank(bank: SupportBank, num_skipped: int) -> None:
    """Log what a built bank holds (and what it skipped or lacks)."""
    if num_skipped:
        print_log(
            f'support bank: skipped {num_skipped} instances without a mask '
            'or with an invalid mask',
            logger='current',
            level=logging.WARNING)
    class_names, num_classes = bank.class_names, bank.num_classes
    counts = bank.num_per_class().tolist()
    missing = [n for n, c in zip(class_names, counts) if c == 0]
    print_log(
        f'support bank: {len(bank)} instances of {num_classes - len(missing)}'
        f'/{num_classes} classes, {bank.crop_size}x{bank.crop_size} crops',
        logger='current')
    if missing:
        print_log(
            f'support bank: no instance of {len(missing)} classes '
            f'(e.g. {missing[:5]})',
            logger='current',
            level=logging.WARNING)
