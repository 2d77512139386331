"""The owner of a model's K-shot support set: :class:`SupportEncoder`.

MaskDiff conditions every mask on the K-shot information k of the RoI's class
(Le et al., AAAI 2024, arXiv:2303.05105, Sec. "Few-shot instance
segmentation"). Everything about that set lives here, in one module of the
RoI head (``model.roi_head.support_encoder``):

* the bank in use (:meth:`SupportEncoder.use_bank`: the training pool or the
  test-time K-shot set, given by ``SupportSetHook`` or
  :func:`mmdet_maskdiff.apis.use_config_support_set`);
* the test-time K-shot set kept with the weights (:meth:`SupportEncoder.store`)
  and its state-dict persistence under ``support_encoder.support_set.*``
  (format: :mod:`.stored_support`);
* the encoding of shots and prototypes for a batch of RoIs, and the cache of
  the test-time encoding with its invalidation (a new bank, a new stored set,
  new weights, ``train()``) — no code outside this file drops it.

Hooks and ``apis`` reach it with :func:`support_encoder_of`.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_maskdiff.structures import SupportBank
from ..mask_heads.mask_condition import ConditionSpec
from .stored_support import (StoredSupport, first_shots, pop_from_state_dict,
                             read_from_state_dict, save_to_state_dict)

#: how to give a model without a stored support set one (error messages)
NO_SUPPORT_HINT = (
    'test with tools/test.py and the config\'s SupportSetHook, or attach the '
    'K-shot set of the config with mmdet_maskdiff.apis.use_config_support_set'
    '(model, config) (tools/image_demo.py --support-from-config)')

#: what a training RoI whose class has no support instance outside the query
#: batch gets (``train_cfg.rcnn.support_fallback``)
SUPPORT_FALLBACKS = ('null', 'drop')


@dataclass
class QueryContext:
    """What the detector lends the RoI head for one forward pass.

    Attributes:
        images (Tensor): The normalised, padded query batch (B, 3, H, W).
        img_ids (list[int]): ``img_id`` of every query image, so training
            shots can be drawn from other images.
        normalize (callable): Turns uint8 BGR crops (M, 3, S, S) into network
            input exactly like the query images.
        extract_feat (callable): The detector's backbone + neck.
    """
    images: Tensor
    img_ids: List[int]
    normalize: Callable[[Tensor], Tensor]
    extract_feat: Callable[[Tensor], Tuple[Tensor, ...]]


@dataclass
class SupportFeatures:
    """Encoded K-shot information for L classes.

    Attributes:
        shots (Tensor): Normalised crops and masks in [-1, 1] at the mask
            size, (L, K, 4, m, m).
        prototypes (Tensor, optional): Mask-pooled neck features averaged
            over the K shots, (L, D); None when the mask head does not use
            them.
    """
    shots: Tensor
    prototypes: Optional[Tensor]

    def select(self, rows: Tensor) -> 'SupportFeatures':
        """The encodings of classes ``rows`` (N, ), e.g. one per RoI."""
        return SupportFeatures(
            self.shots[rows],
            None if self.prototypes is None else self.prototypes[rows])


class SupportEncoder(BaseModule):
    """The K-shot support set of a :class:`FewShotRoIHead` and its encoding.

    In training, the K shots of a class are drawn at random from images
    other than the batch's query images (never the RoI's own object: a class
    whose every instance lies in the query batch — always a novel class at
    K = 1 — gets null shots, see ``fallback``); at test time the first K
    shots of each class are used and their encoding is cached until the
    weights may change. Support features are computed without gradients: a
    frozen encoding by the detector's backbone (MaskDiff trains the mask
    model with the detector fixed).

    The test-time K-shot set is kept with the weights (:meth:`store`): it is
    written into ``state_dict`` under ``support_set.*`` and restored by
    ``load_state_dict`` — including mmengine's ``load_checkpoint``, which
    ``init_detector`` and ``DetInferencer`` use — so a loaded stage-2 model
    predicts without the hook or the training data; a bank given with
    :meth:`use_bank` takes precedence over it.

    Args:
        spec (ConditionSpec, optional): What the mask head is conditioned on
            (K, mask size, prototypes); None for an unconditioned mask head
            (e.g. ``FCNMaskHead``), which then refuses any support set.
        num_classes (int): The mask head's classes (a stored set must have
            as many). Defaults to 0 (no conditioned head).
        mask_head_name (str): The mask head's class, for messages. Defaults
            to ``'no mask head'``.
        fallback (str): ``train_cfg.rcnn.support_fallback``: ``'null'``
            (null shots: zero crops, empty masks, zero prototype) or
            ``'drop'`` (the RoI leaves the mask loss). Defaults to ``'null'``.
        init_cfg (dict, optional): Unused (no weights).
    """

    def __init__(self,
                 spec: Optional[ConditionSpec],
                 num_classes: int = 0,
                 mask_head_name: str = 'no mask head',
                 fallback: str = 'null',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if fallback not in SUPPORT_FALLBACKS:
            raise ValueError(
                'FewShotRoIHead: train_cfg.rcnn.support_fallback must be one '
                f'of {SUPPORT_FALLBACKS}, got {fallback!r}')
        self.spec = spec
        self.num_classes = num_classes
        self.mask_head_name = mask_head_name
        self.fallback = fallback
        self.bank: Optional[SupportBank] = None
        self.stored: Optional[StoredSupport] = None
        self._test_cache: Optional[Tuple[Tensor, SupportFeatures]] = None
        self.register_state_dict_post_hook(_save_stored)

    # ------------------------------------------------------------------ #
    # the set: given, stored, loaded
    # ------------------------------------------------------------------ #
    @property
    def has_support(self) -> bool:
        """Whether a bank was given or a K-shot set is stored."""
        return self.bank is not None or self.stored is not None

    def use_bank(self, bank: SupportBank) -> None:
        """Use ``bank`` for the K-shot information from now on.

        Raises:
            ValueError: ``bank`` has another label space than the stored
                support set (the weights were trained on that one).
        """
        stored = self.stored
        if (stored is not None
                and bank.class_names != stored.bank.class_names):
            raise ValueError(
                'support set classes differ from those the weights were '
                f'trained with ({len(bank.class_names)} classes, e.g. '
                f'{list(bank.class_names[:3])}, vs the checkpoint\'s '
                f'{len(stored.bank.class_names)}, e.g. '
                f'{list(stored.bank.class_names[:3])}): use a K-shot set '
                'of the same class list')
        self.bank = bank
        self._test_cache = None

    def store(self, bank: SupportBank, info: Optional[dict] = None) -> None:
        """Keep the test-time K-shot set with the weights.

        Only what inference uses is kept: the first K (``spec.num_shots``)
        instances of each class, in bank order. It goes into every later
        ``state_dict`` (so into checkpoints) and is used at test time when no
        bank was given with :meth:`use_bank`. A model whose mask head takes
        no shots keeps nothing.

        Args:
            bank (SupportBank): The K-shot support set.
            info (dict, optional): JSON-serialisable provenance (crop
                settings, the K-shot dataset); ``num_shots`` is set here.
        """
        if self.spec is None:
            return
        num_shots = self.spec.num_shots
        stored = StoredSupport(
            first_shots(bank, num_shots), dict(info or {},
                                               num_shots=num_shots))
        self.check_fits(stored, 'support set')
        self.stored = stored
        self._test_cache = None

    def check_fits(self, stored: StoredSupport,
                   what: str = 'support set') -> None:
        """Refuse a stored set of another K or class count than the model's
        (one line; ``ValueError``), or any stored set when the model's mask
        head takes no shots (a MaskDiff checkpoint with an FCN config)."""
        if self.spec is None:
            raise ValueError(
                f'{what} does not fit this model: the checkpoint has a mask '
                'head that samples from K shots (DiffusionMaskHead), the '
                f'config builds {self.mask_head_name}; load it with the '
                'config it was trained with (e.g. '
                f'configs/maskdiff/coco_{stored.num_shots}shot.py)')
        num_shots = self.spec.num_shots
        if (stored.num_shots == num_shots
                and stored.bank.num_classes == self.num_classes):
            return
        raise ValueError(
            f'{what} does not fit this model: it is a {stored.describe()}, '
            f'the config builds a {num_shots}-shot model over '
            f'{self.num_classes} classes; load it with the config it was '
            'trained with (e.g. configs/maskdiff/coco_'
            f'{stored.num_shots}shot.py)')

    def check_state_dict(self, state_dict: dict, prefix: str) -> None:
        """Refuse, before any weight is loaded, a state dict whose stored
        support set (under ``<prefix>support_set.``) does not fit this
        model (:meth:`check_fits`): its message names the config to use,
        which a weight-shape error would not."""
        stored = read_from_state_dict(state_dict, prefix)
        if stored is not None:
            self.check_fits(stored, 'the checkpoint\'s support set')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Restore the stored support set (``support_set.*``); new weights
        also drop the cached test-time encoding."""
        stored = pop_from_state_dict(state_dict, prefix)
        if stored is not None:
            self.check_fits(stored, 'the checkpoint\'s support set')
            self.stored = stored
        self._test_cache = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def train(self, mode: bool = True) -> 'SupportEncoder':
        """Switching to training means the weights may change: drop the
        cached test-time encoding."""
        if mode:
            self._test_cache = None
        return super().train(mode)

    def _require_bank(self) -> SupportBank:
        if self.bank is not None:
            return self.bank
        if self.stored is not None and not self.training:
            return self.stored.bank
        raise RuntimeError(
            'no support set: the model has none (a checkpoint saved without '
            'one, e.g. by a stage-1 run); '
            f'{NO_SUPPORT_HINT}')

    # ------------------------------------------------------------------ #
    # encoding
    # ------------------------------------------------------------------ #
    def training_shots(self, labels: Tensor, context: QueryContext,
                       extractor: nn.Module,
                       feat_channels: int) -> Tuple[SupportFeatures, Tensor]:
        """Random shots per RoI class, from images other than the queries.

        Args:
            labels (Tensor): (N, ) classes of the RoIs.
            context (QueryContext): The query batch and the detector's
                encoder.
            extractor (nn.Module): RoI extractor that pools the prototypes.
            feat_channels (int): D, the neck's channels (null prototypes).

        Returns:
            tuple[SupportFeatures, Tensor]: the shots of every RoI and a bool
            (N, ) that is False for RoIs given null shots.
        """
        bank = self._require_bank()
        classes, inverse = labels.unique(return_inverse=True)
        indices = bank.sample(
            classes.cpu(), self.spec.num_shots, exclude_img_ids=context.img_ids)
        has_shots = indices[:, 0] >= 0
        support = self._null_support(
            len(classes), feat_channels, labels.device, context.images.dtype)
        if bool(has_shots.any()):
            encoded = self._encode(indices[has_shots], context, extractor)
            rows = has_shots.nonzero().flatten().to(labels.device)
            support.shots[rows] = encoded.shots.to(support.shots.dtype)
            if support.prototypes is not None:
                support.prototypes[rows] = encoded.prototypes.to(
                    support.prototypes.dtype)
        return support.select(inverse), has_shots.to(labels.device)[inverse]

    def test_shots(self, labels: Tensor, context: QueryContext,
                   extractor: nn.Module) -> SupportFeatures:
        """The first K shots of each RoI's class (encoded once, cached).

        Raises:
            ValueError: a class has no instance in the support set.
        """
        bank = self._require_bank()
        if self._test_cache is None:
            classes = torch.unique(bank.labels)
            support = self._encode(
                bank.fixed(classes, self.spec.num_shots), context, extractor)
            lookup = torch.full((bank.num_classes, ),
                                -1,
                                dtype=torch.long,
                                device=labels.device)
            lookup[classes.to(labels.device)] = torch.arange(
                len(classes), device=labels.device)
            self._test_cache = (lookup, support)
        lookup, support = self._test_cache
        rows = lookup[labels]
        if bool((rows < 0).any()):
            missing = labels[rows < 0].unique().tolist()
            names = [bank.class_names[i] for i in missing]
            raise ValueError(f'empty support set for class(es) {names}: the '
                             'support dataset has no instance of them')
        return support.select(rows)

    def _null_support(self, num_classes: int, feat_channels: int,
                      device: torch.device,
                      dtype: torch.dtype) -> SupportFeatures:
        """Null shots for ``num_classes`` classes: zero image channels (the
        normalised mean colour), mask channel -1 (empty), zero prototype."""
        size = self.spec.mask_size
        shots = torch.zeros((num_classes, self.spec.num_shots, 4, size, size),
                            dtype=dtype,
                            device=device)
        shots[:, :, 3] = -1
        prototypes = None
        if self.spec.prototypes:
            prototypes = torch.zeros((num_classes, feat_channels),
                                     dtype=dtype,
                                     device=device)
        return SupportFeatures(shots, prototypes)

    @torch.no_grad()
    def _encode(self, indices: Tensor, context: QueryContext,
                extractor: nn.Module) -> SupportFeatures:
        """Encode bank instances ``indices`` (L, K) into shots + prototypes."""
        bank = self._require_bank()
        num_classes, num_shots = indices.shape
        flat = indices.flatten().cpu()
        device = context.images.device
        crops = context.normalize(bank.crops[flat].to(device))
        masks = bank.masks[flat].to(device=device, dtype=crops.dtype)
        prototypes = None
        if self.spec.prototypes:
            pooled = _pooled_features(crops, masks, context, extractor)
            prototypes = pooled.view(num_classes, num_shots, -1).mean(dim=1)

        size = (self.spec.mask_size, ) * 2
        shot_imgs = F.interpolate(
            crops, size=size, mode='bilinear', align_corners=False)
        shot_masks = (F.interpolate(
            masks, size=size, mode='bilinear', align_corners=False) >= 0.5).to(
                crops.dtype) * 2 - 1
        shots = torch.cat([shot_imgs, shot_masks], dim=1)
        return SupportFeatures(
            shots.view(num_classes, num_shots, 4, *size), prototypes)


def _pooled_features(crops: Tensor, masks: Tensor, context: QueryContext,
                     extractor: nn.Module) -> Tensor:
    """Mask-weighted average of the neck RoI features of whole crops.

    Args:
        crops (Tensor): Normalised support crops (M, 3, S, S).
        masks (Tensor): Their binary masks (M, 1, S, S).
        context (QueryContext): Gives the detector's backbone + neck.
        extractor (nn.Module): The RoI extractor that pools them.

    Returns:
        Tensor: One feature vector per shot, (M, D).
    """
    feats = context.extract_feat(crops)
    side = crops.shape[-1]
    index = torch.arange(
        len(crops), device=crops.device, dtype=crops.dtype)[:, None]
    rois = torch.cat(
        [index, crops.new_tensor([[0, 0, side, side]]).expand(len(crops), 4)],
        dim=1)
    roi_feats = extractor(feats[:extractor.num_inputs], rois)
    weights = F.adaptive_avg_pool2d(masks, roi_feats.shape[-2:])
    return (roi_feats * weights).sum((2, 3)) / weights.sum(
        (2, 3)).clamp(min=1e-6)


def _save_stored(module: SupportEncoder, state_dict: dict, prefix: str,
                 local_metadata: dict) -> None:
    """State-dict post-hook: add the stored support set. torch's
    ``state_dict`` and mmengine's ``get_state_dict`` (its checkpoints) both
    run these hooks."""
    save_to_state_dict(module.stored, state_dict, prefix)


def support_encoder_of(model: nn.Module) -> SupportEncoder:
    """The :class:`SupportEncoder` of a detector (``model.roi_head``).

    Raises:
        TypeError: the model's RoI head holds no support set (not a
            ``FewShotRoIHead``), naming its class.
    """
    roi_head = getattr(model, 'roi_head', None)
    encoder = getattr(roi_head, 'support_encoder', None)
    if not isinstance(encoder, SupportEncoder):
        raise TypeError(
            'a K-shot support set needs model.roi_head to be a '
            f'FewShotRoIHead, got {type(roi_head).__name__}')
    return encoder
