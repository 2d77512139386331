"""The K-shot support set as part of a model's state dict.

MaskDiff conditions every mask on the K-shot information k of the RoI's class
(Le et al., AAAI 2024, arXiv:2303.05105, Sec. "Few-shot instance
segmentation"), so a stage-2 model cannot predict a mask without its support
set. :class:`StoredSupport` is what test-time inference needs of that set —
the first K instances of each class (crop + mask + label, in bank order) and
where they came from (K, crop settings, the K-shot dataset) — encoded as
tensors so that it travels in ``state_dict`` like a buffer:

* ``<prefix>support_set.crops``   uint8 (M, 3, S, S)
* ``<prefix>support_set.masks``   uint8 (M, 1, S, S)
* ``<prefix>support_set.labels``  int64 (M,)
* ``<prefix>support_set.img_ids`` int64 (M,)
* ``<prefix>support_set.info``    uint8 (B,), UTF-8 JSON: ``class_names``,
  ``num_shots`` (K), ``crop_size``, ``context``, ``dataset`` and ``format``.

Tensors only, because mmengine's checkpoint writer moves every state-dict
value to the CPU with ``.cpu()``. No model code is imported here.
"""
import json
from dataclasses import dataclass, field
from typing import Dict, Mapping, MutableMapping, Optional

import torch
from torch import Tensor

from mmdet_maskdiff.structures import SupportBank

#: state-dict key (below the RoI head's prefix) of the stored support set
STATE_KEY = 'support_set'
#: the tensors of a stored support set, in this order
TENSOR_NAMES = ('crops', 'masks', 'labels', 'img_ids', 'info')
FORMAT_VERSION = 1


@dataclass(eq=False)
class StoredSupport:
    """A K-shot support set kept with the weights.

    Attributes:
        bank (SupportBank): The first K instances of each class.
        info (dict): JSON-serialisable description: ``num_shots`` (K),
            ``crop_size``, ``context`` and ``dataset`` (the K-shot dataset's
            type, annotation / split files, seed and shot counts, as far as
            known).
    """
    bank: SupportBank
    info: Dict = field(default_factory=dict)

    @property
    def num_shots(self) -> Optional[int]:
        """K, the shots per class the model was trained with."""
        return self.info.get('num_shots')

    def describe(self) -> str:
        """One line: K, the number of classes and the dataset."""
        dataset = self.info.get('dataset') or {}
        where = ', '.join(f'{k}={dataset[k]}'
                          for k in ('type', 'seed', 'few_shot_root')
                          if k in dataset)
        return (f'{self.num_shots}-shot support set of {len(self.bank)} '
                f'instances over {self.bank.num_classes} classes' +
                (f' ({where})' if where else ''))

    def to_tensors(self) -> Dict[str, Tensor]:
        """The state-dict entries (names of :data:`TENSOR_NAMES`), on the
        CPU."""
        info = dict(
            self.info,
            format=FORMAT_VERSION,
            class_names=list(self.bank.class_names))
        data = json.dumps(info, sort_keys=True).encode('utf-8')
        return dict(
            crops=self.bank.crops.cpu(),
            masks=self.bank.masks.cpu(),
            labels=self.bank.labels.cpu(),
            img_ids=self.bank.img_ids.cpu(),
            info=torch.frombuffer(bytearray(data), dtype=torch.uint8))

    @classmethod
    def from_tensors(cls, tensors: Dict[str, Tensor]) -> 'StoredSupport':
        """Inverse of :meth:`to_tensors`.

        Raises:
            ValueError: a tensor is missing or the info is not readable.
        """
        missing = [n for n in TENSOR_NAMES if n not in tensors]
        if missing:
            raise ValueError(f'stored support set lacks {missing}')
        try:
            info = json.loads(bytes(tensors['info'].cpu().tolist()))
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(
                f'stored support set info is not JSON: {error}') from None
        if info.pop('format', None) != FORMAT_VERSION:
            raise ValueError('stored support set has an unknown format')
        class_names = tuple(info.pop('class_names'))
        bank = SupportBank(
            crops=tensors['crops'].cpu(),
            masks=tensors['masks'].cpu(),
            labels=tensors['labels'].cpu(),
            img_ids=tensors['img_ids'].cpu(),
            num_classes=len(class_names),
            class_names=class_names)
        return cls(bank, info)


def first_shots(bank: SupportBank, num_shots: int) -> SupportBank:
    """The instances test-time inference uses: the first ``num_shots`` of
    each class, in bank order (``bank.fixed`` gives the same shots on the
    result as on ``bank``).

    Args:
        bank (SupportBank): A K-shot support bank.
        num_shots (int): K.

    Returns:
        SupportBank: A sub-bank of at most ``num_shots`` instances per class.
    """
    classes = torch.unique(bank.labels.cpu())
    if len(classes) == 0:
        return bank.to('cpu')
    keep = torch.unique(bank.fixed(classes, num_shots).flatten().cpu())
    return SupportBank(
        crops=bank.crops.cpu()[keep],
        masks=bank.masks.cpu()[keep],
        labels=bank.labels.cpu()[keep],
        img_ids=bank.img_ids.cpu()[keep],
        num_classes=bank.num_classes,
        class_names=bank.class_names)


def save_to_state_dict(stored: Optional[StoredSupport],
                       state_dict: MutableMapping, prefix: str) -> None:
    """Write ``stored`` (if any) under ``<prefix>support_set.``."""
    if stored is None:
        return
    for name, tensor in stored.to_tensors().items():
        state_dict[f'{prefix}{STATE_KEY}.{name}'] = tensor


def read_from_state_dict(state_dict: Mapping,
                         prefix: str) -> Optional[StoredSupport]:
    """Decode the entries under ``<prefix>support_set.``; None when there
    are none."""
    head = f'{prefix}{STATE_KEY}.'
    tensors = {
        k[len(head):]: v
        for k, v in state_dict.items() if k.startswith(head)
    }
    return StoredSupport.from_tensors(tensors) if tensors else None


def pop_from_state_dict(state_dict: MutableMapping,
                        prefix: str) -> Optional[StoredSupport]:
    """:func:`read_from_state_dict`, removing the entries."""
    stored = read_from_state_dict(state_dict, prefix)
    head = f'{prefix}{STATE_KEY}.'
    for key in [k for k in state_dict if k.startswith(head)]:
        del state_dict[key]
    return stored
