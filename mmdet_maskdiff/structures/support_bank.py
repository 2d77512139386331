"""The K-shot information of MaskDiff as plain tensors: :class:`SupportBank`.

A :class:`SupportBank` holds, for every support instance (one annotated object
of the K-shot set), a square crop of its image around its box and its binary
mask warped the same way, and draws the shots of each RoI from them
(:meth:`SupportBank.fixed` at test time, :meth:`SupportBank.sample` in
training). It depends on torch alone, so model code imports it without
pulling the image readers (cv2, pycocotools, mmcv) in; the bank is *built*
from a dataset by :func:`mmdet_maskdiff.datasets.build_support_bank`.
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

IdsLike = Union[Tensor, Sequence[int]]


@dataclass(eq=False)
class SupportBank:
    """Support instances of every class, as fixed-size crops and masks.

    Bank order is the order in which the instances were added (for
    :func:`~mmdet_maskdiff.datasets.build_support_bank`: dataset order, then
    instance order), and :meth:`fixed` relies on it.

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
