"""The K-shot information of MaskDiff: per-instance support crops and masks.

A :class:`SupportBank` holds, for every support instance (one annotated object
of the K-shot set), a square crop of its image around its box and its binary
mask warped the same way. :func:`build_support_bank` builds one from any
initialised mmdet dataset (typically a :class:`FewShotCocoDataset` in K-shot
mode). The bank is plain tensors: no model code is imported here.
"""
import logging
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmengine.fileio import get
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from pycocotools import mask as mask_util
from torch import Tensor

from .instance_validity import mask_problem, segmentation_to_rle

IdsLike = Union[Tensor, Sequence[int]]


@dataclass(eq=False)
class SupportBank:
    """Support instances of every class, as fixed-size crops and masks.

    Bank order is the order in which the instances were added (for
    :func:`build_support_bank`: dataset order, then instance order), and
    :meth:`fixed` relies on it.

    Attributes:
        crops (Tensor): uint8 (M, 3, S, S) image crops, BGR as loaded by mmcv.
        masks (Tensor): uint8 (M, 1, S, S) binary masks in {0, 1}.
        labels (Tensor): int64 (M,) class index of each instance.
        img_ids (Tensor): int64 (M,) image id of each instance.
        num_classes (int): size of the label space.
        class_names (tuple[str, ...]): the label space (for messages).
    """
    crops: Tensor
    masks: Tensor
    labels: Tensor
    img_ids: Tensor
    num_classes: int
    class_names: Tuple[str, ...]
    _labels_cpu: Tensor = field(init=False, repr=False)
    _img_ids_cpu: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        num = self.labels.shape[0] if self.labels.dim() == 1 else -1
        if self.crops.dim() != 4 or self.crops.shape[:2] != (num, 3):
            raise ValueError('crops must have shape (M, 3, S, S) with M = '
                             f'len(labels) = {num}, got '
                             f'{tuple(self.crops.shape)}')
        size = tuple(self.crops.shape[2:])
        if self.masks.shape != (num, 1) + size:
            raise ValueError(f'masks must have shape {(num, 1) + size}, got '
                             f'{tuple(self.masks.shape)}')
        if self.img_ids.shape != (num, ):
            raise ValueError(f'img_ids must have shape ({num},), got '
                             f'{tuple(self.img_ids.shape)}')
        if self.crops.dtype != torch.uint8 or self.masks.dtype != torch.uint8:
            raise ValueError('crops and masks must be uint8')
        if len(self.class_names) != self.num_classes:
            raise ValueError(f'{len(self.class_names)} class names for '
                             f'num_classes={self.num_classes}')
        self.labels = self.labels.long()
        self.img_ids = self.img_ids.long()
        self._labels_cpu = self.labels.cpu()
        self._img_ids_cpu = self.img_ids.cpu()
        if num and (int(self._labels_cpu.min()) < 0
                    or int(self._labels_cpu.max()) >= self.num_classes):
            raise ValueError(f'labels must lie in [0, {self.num_classes})')

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def crop_size(self) -> int:
        """S, the side of the crops and masks."""
        return int(self.crops.shape[-1])

    @property
    def device(self) -> torch.device:
        """The device of the tensors."""
        return self.crops.device

    def to(self, device: Union[str, torch.device]) -> 'SupportBank':
        """Return a copy whose tensors are on ``device``."""
        return SupportBank(
            crops=self.crops.to(device),
            masks=self.masks.to(device),
            labels=self.labels.to(device),
            img_ids=self.img_ids.to(device),
            num_classes=self.num_classes,
            class_names=self.class_names)

    def num_per_class(self) -> Tensor:
        """Number of support instances of each class, int64 (num_classes,)."""
        return torch.bincount(self._labels_cpu, minlength=self.num_classes)

    def class_indices(self, label: int) -> Tensor:
        """Bank indices of the instances of one class.

        Args:
            label (int): the class index.

        Returns:
            Tensor: int64 (n,), in bank order, on the bank's device (empty when
            the class has no support instance).
        """
        index = torch.nonzero(self._labels_cpu == int(label)).flatten()
        return index.to(self.device)

    def _class_name(self, label: int) -> str:
        if 0 <= label < self.num_classes:
            return self.class_names[label]
        return f'<label {label}>'

    def _pool(self, label: int) -> Tensor:
        """CPU indices of a class; ``ValueError`` when there are none."""
        index = torch.nonzero(self._labels_cpu == label).flatten()
        if index.numel() == 0:
            raise ValueError(
                f"empty support set for class '{self._class_name(label)}' "
                f'(label {label}): the support dataset has no instance of it')
        return index

    @staticmethod
    def _check_request(labels: Tensor, num_shots: int) -> Tensor:
        if not isinstance(num_shots, int) or num_shots < 1:
            raise ValueError(f'num_shots must be an int >= 1, got {num_shots}')
        labels = torch.as_tensor(labels).long().cpu()
        if labels.dim() != 1:
            raise ValueError('labels must have shape (L,), got '
                             f'{tuple(labels.shape)}')
        return labels

    def fixed(self, labels: Tensor, num_shots: int) -> Tensor:
        """Test-time shots: the first ``num_shots`` instances of each class.

        Instances are taken in bank order (for a K-shot dataset: the order
        of the data list); a class with fewer instances repeats them
        cyclically.

        Args:
            labels (Tensor): int (L,) class of each request (e.g. of each RoI).
            num_shots (int): shots per request.

        Returns:
            Tensor: int64 (L, num_shots) bank indices, on the bank's device.

        Raises:
            ValueError: a requested class has no support instance.
        """
        labels = self._check_request(labels, num_shots)
        out = torch.empty((labels.shape[0], num_shots), dtype=torch.long)
        for label in labels.unique().tolist():
            pool = self._pool(label)
            row = pool[torch.arange(num_shots) % pool.numel()]
            out[labels == label] = row
        return out.to(self.device)

    def sample(self,
               labels: Tensor,
               num_shots: int,
               exclude_img_ids: Optional[IdsLike] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Training-time shots: random instances of each requested class,
        never from the query images.

        For each request, the shots are drawn uniformly from the instances
        of its class whose image is **not** in ``exclude_img_ids`` (pass the
        image ids of the query batch so that no shot comes from a query
        image — in particular, no RoI gets its own object as a shot). When
        every instance of a class lies in an excluded image (always the case
        for a novel class at K = 1 whose only instance is in the batch),
        the class has no shot: its rows are ``-1`` and the caller decides
        what the RoI gets instead (:class:`FewShotRoIHead` gives null shots,
        ``docs/defaults.md``). Shots are distinct while the pool is large
        enough; otherwise each request gets the whole pool in random order,
        repeated cyclically (with replacement only as far as needed).

        Args:
            labels (Tensor): int (L,) class of each request.
            num_shots (int): shots per request.
            exclude_img_ids (Tensor | Sequence[int], optional): image ids whose
                instances may not be drawn (for every request).
            generator (torch.Generator, optional): a CPU generator for
                reproducible draws.

        Returns:
            Tensor: int64 (L, num_shots) bank indices, on the bank's device;
            a row of ``-1`` for a class with no instance outside the
            excluded images.

        Raises:
            ValueError: a requested class has no support instance at all.
        """
        labels = self._check_request(labels, num_shots)
        excluded = None
        if exclude_img_ids is not None:
            excluded = torch.as_tensor(exclude_img_ids).long().cpu().flatten()
        out = torch.empty((labels.shape[0], num_shots), dtype=torch.long)
        for label in labels.unique().tolist():
            pool = self._pool(label)
            rows = torch.nonzero(labels == label).flatten()
            if excluded is not None and excluded.numel():
                pool = pool[~torch.isin(self._img_ids_cpu[pool], excluded)]
                if pool.numel() == 0:
                    out[rows] = -1
                    continue
            out[rows] = pool[_draw(pool.numel(), rows.numel(), num_shots,
                                   generator)]
        return out.to(self.device)


def _draw(pool_size: int, num_rows: int, num_shots: int,
          generator: Optional[torch.Generator]) -> Tensor:
    """Positions in a pool, (num_rows, num_shots), distinct per row if able.

    Small pools: one random permutation per row, repeated cyclically when
    the pool is smaller than ``num_shots``. Large pools: independent draws,
    re-drawn for the (rare) rows holding a duplicate.
    """
    if pool_size < num_shots or num_rows * pool_size <= (1 << 20):
        perm = torch.rand((num_rows, pool_size), generator=generator)
        perm = perm.argsort(dim=1)
        return perm[:, torch.arange(num_shots) % pool_size]
    draws = torch.randint(
        pool_size, (num_rows, num_shots), generator=generator)
    while num_shots > 1:
        ordered = draws.sort(dim=1).values
        dup = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
        if not bool(dup.any()):
            break
        draws[dup] = torch.randint(
            pool_size, (int(dup.sum()), num_shots), generator=generator)
    return draws


def decode_mask(segmentation: Union[list, dict], height: int,
                width: int) -> np.ndarray:
    """Decode a COCO polygon list or RLE to a binary mask.

    Args:
        segmentation (list | dict): polygons ``[[x0, y0, x1, y1, ...], ...]``
            or an RLE ``{'size': [h, w], 'counts': str | bytes | list}``.
        height (int): image height.
        width (int): image width.

    Returns:
        np.ndarray: uint8 (height, width) in {0, 1}.
    """
    rle = segmentation_to_rle(segmentation, height, width)
    return mask_util.decode(rle).astype(np.uint8)


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
    num = len(entries)
    class_names = tuple(dataset.metainfo['classes'])
    return SupportBank(
        crops=torch.zeros((num, 3, 1, 1), dtype=torch.uint8),
        masks=torch.zeros((num, 1, 1, 1), dtype=torch.uint8),
        labels=torch.tensor([label for _, _, label in entries],
                            dtype=torch.long),
        img_ids=torch.tensor(
            [int(dataset.get_data_info(idx)['img_id']) for idx, _, _ in entries],
            dtype=torch.long),
        num_classes=len(class_names),
        class_names=class_names)


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
    if crop_size < 1:
        raise ValueError(f'crop_size must be >= 1, got {crop_size}')
    if context < 0:
        raise ValueError(f'context must be >= 0, got {context}')
    if on_invalid not in ('raise', 'skip'):
        raise ValueError(
            f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    class_names = tuple(dataset.metainfo['classes'])
    num_classes = len(class_names)
    backend_args = getattr(dataset, 'backend_args', None)
    entries = support_entries(dataset, max_per_class, seed)

    by_image: Dict[int, List[Tuple[int, int]]] = {}
    for idx, j, label in entries:
        by_image.setdefault(idx, []).append((j, label))

    size = (crop_size, crop_size)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    crops, masks, labels, img_ids = [], [], [], []
    num_skipped = 0
    bar = (
        ProgressBar(len(by_image), file=sys.stdout)
        if progress and by_image else None)
    for idx, items in by_image.items():
        info = dataset.get_data_info(idx)
        path, height, width = info['img_path'], info['height'], info['width']
        img = mmcv.imfrombytes(
            get(path, backend_args=backend_args),
            flag='color',
            channel_order='bgr')
        if img.shape[:2] != (height, width):
            raise ValueError(f'image {path} is {img.shape[1]}x{img.shape[0]} '
                             f'but annotated as {width}x{height}')
        for j, label in items:
            instance = info['instances'][j]
            if not instance.get('mask'):
                problem = ('has no mask (support instances need a '
                           'segmentation)')
            else:  # the datasets' own rule (instance_validity)
                problem = mask_problem(instance['mask'], width, height)
            if problem is not None:
                if on_invalid == 'raise':
                    raise ValueError(f'instance {j} of image {path} {problem}')
                num_skipped += 1
                continue
            full_mask = decode_mask(instance['mask'], height, width)
            matrix = crop_affine(instance['bbox'], context, crop_size)
            crop = cv2.warpAffine(
                img,
                matrix,
                size,
                flags=flags,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0)
            warped = cv2.warpAffine(
                full_mask.astype(np.float32),
                matrix,
                size,
                flags=flags,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0)
            crops.append(crop.transpose(2, 0, 1))
            masks.append((warped >= 0.5).astype(np.uint8)[None])
            labels.append(label)
            img_ids.append(int(info['img_id']))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')

    if crops:
        crops_t = torch.from_numpy(np.ascontiguousarray(np.stack(crops)))
        masks_t = torch.from_numpy(np.stack(masks))
    else:
        crops_t = torch.zeros((0, 3) + size, dtype=torch.uint8)
        masks_t = torch.zeros((0, 1) + size, dtype=torch.uint8)
    bank = SupportBank(
        crops=crops_t,
        masks=masks_t,
        labels=torch.tensor(labels, dtype=torch.long),
        img_ids=torch.tensor(img_ids, dtype=torch.long),
        num_classes=num_classes,
        class_names=class_names)
    if num_skipped:
        print_log(
            f'support bank: skipped {num_skipped} instances without a mask '
            'or with an invalid mask',
            logger='current',
            level=logging.WARNING)
    counts = bank.num_per_class().tolist()
    missing = [n for n, c in zip(class_names, counts) if c == 0]
    print_log(
        f'support bank: {len(bank)} instances of {num_classes - len(missing)}'
        f'/{num_classes} classes, {crop_size}x{crop_size} crops',
        logger='current')
    if missing:
        print_log(
            f'support bank: no instance of {len(missing)} classes '
            f'(e.g. {missing[:5]})',
            logger='current',
            level=logging.WARNING)
    return bank
