"""RoI head that hands the object region and K-shot information to the mask
head."""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import roi_align
from torch import Tensor

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import InstanceList
from mmdet_maskdiff.diffusion.keyed_noise import combine_keys, content_key
from mmdet_maskdiff.structures import SupportBank
from ..mask_heads.mask_condition import (ConditionSpec, MaskCondition,
                                         condition_spec_of)
from .stored_support import (StoredSupport, first_shots, pop_from_state_dict,
                             save_to_state_dict)

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


@MODELS.register_module()
class FewShotRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` whose mask head is conditioned on few shots.

    When the mask head has a :class:`ConditionSpec` (a
    :class:`ConditionedMaskHead`: the :class:`DiffusionMaskHead` or its
    regression twin :class:`RegressionMaskHead`; read once, when the head is
    built, into ``condition_spec``), every RoI gets a :class:`MaskCondition`
    with what the spec asks for:

    * the object region x — an RoIAlign crop of the normalised query image at
      the mask size and/or the neck's RoI features;
    * the K-shot information k of the RoI's class — its K support shots (crop
      + mask, kept individually so the head can concatenate them as in the
      paper's supplement) and their prototype: neck features of the support
      crops, mask-pooled per shot and averaged over the shots.

    Support instances come from a :class:`SupportBank` given with
    :meth:`set_support_bank` (by ``SupportSetHook``). The test-time K-shot
    set is also kept with the weights (:meth:`store_support_set`, by the
    hook): it is written into ``state_dict`` under ``support_set.*`` (see
    :mod:`.stored_support`) and restored by ``load_state_dict`` — including
    mmengine's ``load_checkpoint``, which ``init_detector`` and
    ``DetInferencer`` use — so a loaded stage-2 model predicts without the
    hook or the training data; a bank given with :meth:`set_support_bank`
    takes precedence over it. In training, the K shots
    of a class are drawn at random from images other than the batch's query
    images; at test time the first K shots of each class are used and their
    encoding is cached until the weights may change (the cache is dropped by
    ``train()``, by a new bank, and before every val/test run by the hook).
    The pool of training shots is the training set's instances (at most
    ``SupportSetHook.max_train_per_class`` per class).
    Support features are computed without gradients: they are a frozen
    encoding by the detector's backbone (MaskDiff trains the mask model with
    the detector fixed).

    With any other mask head (e.g. mmdet's ``FCNMaskHead`` as a baseline)
    it behaves exactly like :class:`StandardRoIHead`.

    **Sampler.** ``test_cfg.sampler`` (``model.test_cfg.rcnn.sampler``) is
    the diffusion head's test-time sampler: checked when the head is built
    (``mask_head.check_test_cfg``) and passed, with the rest of
    ``test_cfg``, to ``mask_head.predict``. The RoIs get noise keys when
    ``mask_head.wants_noise_keys(test_cfg)``.

    **Never its own shot.** A training RoI never receives its own object
    (or anything else from the query images) as k. When every support
    instance of its class lies in the query batch — always for a novel
    class at K = 1 — ``train_cfg.rcnn.support_fallback`` says what happens:
    ``'null'`` (default) gives it null shots (zero crops, empty masks, zero
    prototype), so it still trains the region and class pathways; ``'drop'``
    leaves it out of the mask loss. The choice was measured
    (``docs/defaults.md``, "Stage-2 data mix and training shots").

    **Channels.** The prototype dimension and the region-feature channels
    the mask head was built for are checked against the RoI extractors that
    produce them (``ValueError`` naming both config keys).

    Args:
        support_roi_extractor (dict, optional): RoI extractor for the support
            prototypes; defaults to the mask RoI extractor (itself the box
            RoI extractor when ``mask_roi_extractor`` is None).
        **kwargs: Arguments of :class:`StandardRoIHead`.
    """

    def __init__(self,
                 *args,
                 support_roi_extractor: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.support_roi_extractor = (
            MODELS.build(support_roi_extractor)
            if support_roi_extractor is not None else None)
        fallback = (self.train_cfg or {}).get('support_fallback', 'null')
        if fallback not in SUPPORT_FALLBACKS:
            raise ValueError(
                'FewShotRoIHead: train_cfg.rcnn.support_fallback must be one '
                f'of {SUPPORT_FALLBACKS}, got {fallback!r}')
        self.support_fallback = fallback
        #: what the mask head is conditioned on; None: an unconditioned
        #: head (e.g. FCNMaskHead), this is then a StandardRoIHead
        self.condition_spec: Optional[ConditionSpec] = (
            condition_spec_of(self.mask_head) if self.with_mask else None)
        if self.needs_condition:  # checked once, here
            self._check_condition_channels()
            self.mask_head.check_test_cfg(self.test_cfg)  # e.g. its sampler
        self.support_bank: Optional[SupportBank] = None
        self.stored_support: Optional[StoredSupport] = None
        self.register_state_dict_post_hook(_save_stored_support)
        self._context: Optional[QueryContext] = None
        self._test_support: Optional[Tuple[Tensor, SupportFeatures]] = None

    # ------------------------------------------------------------------ #
    # what the mask head is conditioned on
    # ------------------------------------------------------------------ #
    def _support_extractor_key(self) -> str:
        """The config key of the RoI extractor that pools the prototypes."""
        if self.support_roi_extractor is not None:
            return 'model.roi_head.support_roi_extractor'
        return self._mask_extractor_key()

    def _mask_extractor_key(self) -> str:
        """The config key of the RoI extractor that gives the region
        features (the box one when ``mask_roi_extractor`` is None)."""
        if getattr(self, 'share_roi_extractor', False):
            return 'model.roi_head.bbox_roi_extractor'
        return 'model.roi_head.mask_roi_extractor'

    def _check_condition_channels(self) -> None:
        """Require the mask head's ``prototype_dim`` and
        ``region_feat_channels`` to equal the channels of the RoI extractors
        that produce them.

        Raises:
            ValueError: a mismatch, naming both config keys and values.
        """
        spec = self.condition_spec
        checks = []
        if spec.prototypes:
            extractor = self.support_roi_extractor or self.mask_roi_extractor
            checks.append(
                ('prototype_dim', spec.prototype_dim, 'support', extractor,
                 self._support_extractor_key()))
        if spec.region_features:
            checks.append(
                ('region_feat_channels', spec.region_feat_channels, 'region',
                 self.mask_roi_extractor, self._mask_extractor_key()))
        for name, value, role, extractor, key in checks:
            channels = getattr(extractor, 'out_channels', None)
            if channels is not None and channels != value:
                raise ValueError(
                    f'model.roi_head.mask_head.{name}={value} but the {role} '
                    f'RoI extractor gives {channels} channels '
                    f'({key}.out_channels); set them equal (the neck\'s '
                    'out_channels)')

    @property
    def needs_condition(self) -> bool:
        """Whether the mask head is conditioned on region and shots."""
        return self.condition_spec is not None

    # ------------------------------------------------------------------ #
    # support bank and cache
    # ------------------------------------------------------------------ #
    def set_support_bank(self, bank: SupportBank) -> None:
        """Use ``bank`` for the K-shot information from now on.

        Raises:
            ValueError: ``bank`` has another label space than the stored
                support set (the weights were trained on that one).
        """
        stored = self.stored_support
        if (stored is not None
                and bank.class_names != stored.bank.class_names):
            raise ValueError(
                'support set classes differ from those the weights were '
                f'trained with ({len(bank.class_names)} classes, e.g. '
                f'{list(bank.class_names[:3])}, vs the checkpoint\'s '
                f'{len(stored.bank.class_names)}, e.g. '
                f'{list(stored.bank.class_names[:3])}): use a K-shot set '
                'of the same class list')
        self.support_bank = bank
        self.invalidate_support_cache()

    def store_support_set(self,
                          bank: SupportBank,
                          info: Optional[dict] = None) -> None:
        """Keep the test-time K-shot set with the weights.

        Only what inference uses is kept: the first K (``num_shots`` of the
        mask head's :class:`ConditionSpec`) instances of each class, in bank
        order. It goes into every later ``state_dict`` (so into checkpoints)
        and is used at test time when no bank was given with
        :meth:`set_support_bank`.

        Args:
            bank (SupportBank): The K-shot support set.
            info (dict, optional): JSON-serialisable provenance (crop
                settings, the K-shot dataset); ``num_shots`` is set here.
        """
        if not self.needs_condition:
            return
        num_shots = self.condition_spec.num_shots
        stored = StoredSupport(
            first_shots(bank, num_shots),
            dict(info or {}, num_shots=num_shots))
        self.check_support_fits(stored, 'support set')
        self.stored_support = stored
        self.invalidate_support_cache()

    def check_support_fits(self,
                           stored: StoredSupport,
                           what: str = 'support set') -> None:
        """Refuse a stored set of another K or class count than the model's
        (one line; ``ValueError``), or any stored set when the model's mask
        head takes no shots (a MaskDiff checkpoint with an FCN config)."""
        if not self.needs_condition:
            head = getattr(self, 'mask_head', None)
            raise ValueError(
                f'{what} does not fit this model: the checkpoint has a mask '
                'head that samples from K shots (DiffusionMaskHead), the '
                'config builds '
                f'{type(head).__name__ if head else "no mask head"}; load it '
                'with the config it was trained with (e.g. '
                f'configs/maskdiff/coco_{stored.num_shots}shot.py)')
        num_shots = self.condition_spec.num_shots
        num_classes = self.mask_head.num_classes
        if (stored.num_shots == num_shots
                and stored.bank.num_classes == num_classes):
            return
        raise ValueError(
            f'{what} does not fit this model: it is a {stored.describe()}, '
            f'the config builds a {num_shots}-shot model over '
            f'{num_classes} classes; load it with the config it was '
            'trained with (e.g. configs/maskdiff/coco_'
            f'{stored.num_shots}shot.py)')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Restore the stored support set (``support_set.*``) with the
        weights; new weights also drop the cached test-time encoding."""
        stored = pop_from_state_dict(state_dict, prefix)
        if stored is not None and self.needs_condition:
            self.check_support_fits(stored, 'the checkpoint\'s support set')
            self.stored_support = stored
        self.invalidate_support_cache()
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def invalidate_support_cache(self) -> None:
        """Drop the cached test-time support encoding."""
        self._test_support = None

    def train(self, mode: bool = True) -> 'FewShotRoIHead':
        """Switching to training means the weights may change: drop the
        cache."""
        if mode:
            self.invalidate_support_cache()
        return super().train(mode)

    @contextmanager
    def query_context(self, context: QueryContext) -> Iterator[None]:
        """Lend the query images and the support encoder for one pass."""
        self._context = context
        try:
            yield
        finally:
            self._context = None

    # ------------------------------------------------------------------ #
    # mask branch
    # ------------------------------------------------------------------ #
    def forward(self,
                x: Tuple[Tensor],
                rpn_results_list: InstanceList,
                batch_data_samples: Optional[list] = None) -> tuple:
        """Raw box outputs (``mode='tensor'``, FLOP counting). A conditioned
        mask head samples rather than computes a map, so it is left out."""
        if not self.needs_condition:
            return super().forward(x, rpn_results_list, batch_data_samples)
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        bbox_results = self._bbox_forward(x, rois)
        return (bbox_results['cls_score'], bbox_results['bbox_pred'])

    def mask_loss(self, x: Tuple[Tensor],
                  sampling_results: List[SamplingResult], bbox_feats: Tensor,
                  batch_gt_instances: InstanceList) -> dict:
        """Mask loss on positive RoIs, conditioned on region and shots.

        Args:
            x (tuple[Tensor]): Multi-level neck features.
            sampling_results (list[SamplingResult]): Assigned RoIs per image.
            bbox_feats (Tensor): Box RoI features (unused by a conditioned
                mask head).
            batch_gt_instances (list[InstanceData]): Ground truth.

        Returns:
            dict: ``loss_mask`` and ``mask_targets``.
        """
        if not self.needs_condition:
            return super().mask_loss(x, sampling_results, bbox_feats,
                                     batch_gt_instances)
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        condition = self._mask_condition(x, pos_rois, pos_labels, True)
        return self.mask_head.loss_and_target(
            condition=condition,
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=self.train_cfg)

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     results_list: InstanceList,
                     rescale: bool = False) -> InstanceList:
        """Predict (sample) a mask for every detection and paste it into
        its image.

        Besides ``masks`` (n, H, W), each result gets ``mask_uncertainty``
        (n, m, m), the mask head's per-pixel uncertainty: the variance over
        the samples of the RoI (diffusion head), p(1 − p) (regression twin).
        """
        if not self.needs_condition:
            return super().predict_mask(x, batch_img_metas, results_list,
                                        rescale)
        mask_rois = bbox2roi([res.bboxes for res in results_list])
        if mask_rois.shape[0] == 0:
            results_list = empty_instances(
                batch_img_metas,
                mask_rois.device,
                task_type='mask',
                instance_results=results_list,
                mask_thr_binary=self.test_cfg.mask_thr_binary)
            size = self.condition_spec.mask_size
            for results in results_list:  # same fields as with detections
                results.mask_uncertainty = mask_rois.new_zeros((0, size, size))
            return results_list
        labels = torch.cat([res.labels for res in results_list])
        condition = self._mask_condition(x, mask_rois, labels, False)
        if self.mask_head.wants_noise_keys(self.test_cfg):
            # hashing every image's pixels only pays off for keyed noise
            condition.noise_keys = self._roi_noise_keys(
                batch_img_metas, results_list)
        num_per_img = [len(res) for res in results_list]
        condition.num_per_image = num_per_img
        prediction = self.mask_head.predict(condition, self.test_cfg)
        results_list = self.mask_head.predict_by_feat(
            mask_preds=prediction['probs'].split(num_per_img, 0),
            results_list=results_list,
            batch_img_metas=batch_img_metas,
            rcnn_test_cfg=self.test_cfg,
            rescale=rescale)
        for results, unc in zip(results_list,
                                prediction['uncertainty'].split(num_per_img)):
            results.mask_uncertainty = unc
        return results_list

    def _roi_noise_keys(self, batch_img_metas: List[dict],
                        results_list: InstanceList) -> Tensor:
        """A key per detection, (N, ) int64, from its image's contents (the
        normalised query image without the batch's padding,
        :func:`~mmdet_maskdiff.diffusion.content_key`) and its index among
        the image's detections: the mask head draws the RoI's noise from it,
        so the mask is the same whatever batch, rank or chunk the image is
        processed in, and whether it comes from the test loop (any
        ``img_id``), ``inference_detector`` or ``DetInferencer``."""
        keys = []
        for index, (meta, results) in enumerate(
                zip(batch_img_metas, results_list)):
            # _mask_condition has already required the query context
            height, width = meta.get('img_shape',
                                     self._context.images.shape[-2:])
            image_key = content_key(
                self._context.images[index, :, :height, :width])
            keys.append(
                combine_keys(
                    image_key,
                    torch.arange(len(results), device=results.bboxes.device)))
        return torch.cat(keys)

    def _mask_condition(self, x: Tuple[Tensor], rois: Tensor, labels: Tensor,
                        training: bool) -> MaskCondition:
        """Gather x and k for N RoIs (rois (N, 5), labels (N, ))."""
        if self._context is None:
            raise RuntimeError(
                'FewShotRoIHead needs the query images and a support encoder: '
                'use it inside a MaskDiffRCNN detector')
        spec = self.condition_spec
        size = spec.mask_size
        condition = MaskCondition(labels=labels)
        if spec.region_image:
            condition.region_image = roi_align(self._context.images, rois,
                                               (size, size), 1.0, 0, 'avg',
                                               True)
        if spec.region_features:
            condition.region_feats = self.mask_roi_extractor(
                x[:self.mask_roi_extractor.num_inputs], rois)
        if len(labels) == 0:
            condition.shots = labels.new_zeros(
                (0, spec.num_shots, 4, size, size), dtype=x[0].dtype)
            if spec.prototypes:
                condition.prototypes = x[0].new_zeros((0, x[0].shape[1]))
            return condition
        if training:
            support, has_shots = self._training_support(
                labels, x[0].shape[1])
            if self.support_fallback == 'drop' and not bool(has_shots.all()):
                condition.train_rois = has_shots
        else:
            support = self._test_support_for(labels)
        condition.shots = support.shots
        condition.prototypes = support.prototypes
        return condition

    def _require_bank(self) -> SupportBank:
        if self.support_bank is not None:
            return self.support_bank
        if self.stored_support is not None and not self.training:
            return self.stored_support.bank
        raise RuntimeError(
            'no support set: the model has none (a checkpoint saved without '
            'one, e.g. by a stage-1 run or before checkpoints carried it); '
            f'{NO_SUPPORT_HINT}')

    def _training_support(self, labels: Tensor,
                          feat_channels: int) -> Tuple[SupportFeatures,
                                                       Tensor]:
        """Random shots per RoI class, from images other than the queries.

        A class whose every support instance lies in a query image (a novel
        class at K = 1, whose only instance is the RoI's own object) gets
        null shots — zero crops, empty masks, zero prototype — never the
        object itself (see ``support_fallback`` in the class docstring).

        Returns:
            tuple[SupportFeatures, Tensor]: the shots of every RoI and a bool
            (N, ) that is False for RoIs given null shots.
        """
        bank = self._require_bank()
        classes, inverse = labels.unique(return_inverse=True)
        indices = bank.sample(
            classes.cpu(),
            self.condition_spec.num_shots,
            exclude_img_ids=self._context.img_ids)
        has_shots = indices[:, 0] >= 0
        support = self._null_support(len(classes), feat_channels,
                                     labels.device)
        if bool(has_shots.any()):
            encoded = self._encode_shots(indices[has_shots])
            rows = has_shots.nonzero().flatten().to(labels.device)
            support.shots[rows] = encoded.shots.to(support.shots.dtype)
            if support.prototypes is not None:
                support.prototypes[rows] = encoded.prototypes.to(
                    support.prototypes.dtype)
        return support.select(inverse), has_shots.to(labels.device)[inverse]

    def _null_support(self, num_classes: int, feat_channels: int,
                      device: torch.device) -> SupportFeatures:
        """Null shots for ``num_classes`` classes: zero image channels (the
        normalised mean colour), mask channel -1 (empty), zero prototype."""
        spec = self.condition_spec
        size = spec.mask_size
        dtype = self._context.images.dtype
        shots = torch.zeros((num_classes, spec.num_shots, 4, size, size),
                            dtype=dtype,
                            device=device)
        shots[:, :, 3] = -1
        prototypes = None
        if spec.prototypes:
            prototypes = torch.zeros((num_classes, feat_channels),
                                     dtype=dtype,
                                     device=device)
        return SupportFeatures(shots, prototypes)

    def _test_support_for(self, labels: Tensor) -> SupportFeatures:
        """Cached first-K shots of every class present in the bank."""
        bank = self._require_bank()
        if self._test_support is None:
            classes = torch.unique(bank.labels)
            support = self._encode_shots(
                bank.fixed(classes, self.condition_spec.num_shots))
            lookup = torch.full((bank.num_classes, ),
                                -1,
                                dtype=torch.long,
                                device=labels.device)
            lookup[classes.to(labels.device)] = torch.arange(
                len(classes), device=labels.device)
            self._test_support = (lookup, support)
        lookup, support = self._test_support
        rows = lookup[labels]
        if bool((rows < 0).any()):
            missing = labels[rows < 0].unique().tolist()
            names = [bank.class_names[i] for i in missing]
            raise ValueError(f'empty support set for class(es) {names}: the '
                             'support dataset has no instance of them')
        return support.select(rows)

    @torch.no_grad()
    def _encode_shots(self, indices: Tensor) -> SupportFeatures:
        """Encode bank instances ``indices`` (L, K) into shots + prototypes."""
        bank = self._require_bank()
        num_classes, num_shots = indices.shape
        flat = indices.flatten().cpu()
        device = self._context.images.device
        crops = self._context.normalize(bank.crops[flat].to(device))
        masks = bank.masks[flat].to(device=device, dtype=crops.dtype)
        prototypes = None
        if self.condition_spec.prototypes:
            pooled = self._pooled_support_feats(crops, masks)
            prototypes = pooled.view(num_classes, num_shots, -1).mean(dim=1)

        size = (self.condition_spec.mask_size, ) * 2
        shot_imgs = F.interpolate(
            crops, size=size, mode='bilinear', align_corners=False)
        shot_masks = (F.interpolate(
            masks, size=size, mode='bilinear', align_corners=False) >= 0.5).to(
                crops.dtype) * 2 - 1
        shots = torch.cat([shot_imgs, shot_masks], dim=1)
        return SupportFeatures(
            shots.view(num_classes, num_shots, 4, *size), prototypes)

    def _pooled_support_feats(self, crops: Tensor, masks: Tensor) -> Tensor:
        """Mask-weighted average of the neck RoI features of whole crops.

        Args:
            crops (Tensor): Normalised support crops (M, 3, S, S).
            masks (Tensor): Their binary masks (M, 1, S, S).

        Returns:
            Tensor: One feature vector per shot, (M, D).
        """
        feats = self._context.extract_feat(crops)
        side = crops.shape[-1]
        index = torch.arange(
            len(crops), device=crops.device, dtype=crops.dtype)[:, None]
        rois = torch.cat([
            index,
            crops.new_tensor([[0, 0, side, side]]).expand(len(crops), 4)
        ],
                         dim=1)
        extractor = self.support_roi_extractor or self.mask_roi_extractor
        roi_feats = extractor(feats[:extractor.num_inputs], rois)
        weights = F.adaptive_avg_pool2d(masks, roi_feats.shape[-2:])
        return (roi_feats * weights).sum((2, 3)) / weights.sum(
            (2, 3)).clamp(min=1e-6)


def _save_stored_support(module: FewShotRoIHead, state_dict: dict, prefix: str,
                         local_metadata: dict) -> None:
    """State-dict post-hook: add the stored support set. torch's
    ``state_dict`` and mmengine's ``get_state_dict`` (its checkpoints) both
    run these hooks."""
    save_to_state_dict(module.stored_support, state_dict, prefix)
