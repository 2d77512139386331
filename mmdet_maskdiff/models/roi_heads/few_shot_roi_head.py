"""RoI head that hands the object region and K-shot information to the mask
head."""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from mmcv.ops import roi_align
from mmengine.config import ConfigDict
from torch import Tensor, nn

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import InstanceList
from mmdet_maskdiff.diffusion.keyed_noise import combine_keys, content_key
from mmdet_maskdiff.diffusion.sampler_settings import SamplerSettings
from ..mask_heads.mask_condition import (ConditionSpec, MaskCondition,
                                         condition_spec_of)
from .support_encoder import QueryContext, SupportEncoder

#: the data-sample meta key that asks the mask head for the reverse chain of
#: the batch's first chunk of RoIs (keep every n-th step); the chain comes back
#: in the first image's ``pred_instances.metainfo['mask_trajectory']``
TRAJECTORY_REQUEST = 'mask_trajectory_every'
TRAJECTORY_RESULT = 'mask_trajectory'


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

    The K-shot information comes from ``support_encoder``
    (:class:`SupportEncoder`), the one owner of the support set: the bank in
    use, the set stored with the weights, the encoding and its cache.

    With any other mask head (e.g. mmdet's ``FCNMaskHead`` as a baseline)
    it behaves exactly like :class:`StandardRoIHead`.

    **Test-time sampling.** ``test_cfg.diffusion_sampling``
    (``model.test_cfg.rcnn.diffusion_sampling``) holds the diffusion head's
    sampler settings; they are parsed once, here, into
    ``diffusion_sampling`` (a :class:`SamplerSettings`; None for a head that
    does not sample) and passed to ``mask_head.predict``. A loaded model
    changes them with :meth:`update_diffusion_sampling`. The RoIs get noise
    keys when the settings are seeded.

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
        #: what the mask head is conditioned on; None: an unconditioned
        #: head (e.g. FCNMaskHead), this is then a StandardRoIHead
        self.condition_spec: Optional[ConditionSpec] = (
            condition_spec_of(self.mask_head) if self.with_mask else None)
        self.support_encoder = SupportEncoder(
            self.condition_spec,
            num_classes=(self.mask_head.num_classes
                         if self.condition_spec is not None else 0),
            mask_head_name=(type(self.mask_head).__name__
                            if self.with_mask else 'no mask head'),
            fallback=(self.train_cfg or {}).get('support_fallback', 'null'))
        #: the parsed test_cfg.diffusion_sampling (None: the head does not
        #: sample); written here and by update_diffusion_sampling only
        self.diffusion_sampling: Optional[SamplerSettings] = None
        if self.needs_condition:  # checked once, here
            self._check_condition_channels()
            self.diffusion_sampling = self.mask_head.parse_test_cfg(
                self.test_cfg)
        self._context: Optional[QueryContext] = None

    def update_diffusion_sampling(self, **changes) -> SamplerSettings:
        """Change the test-time sampler settings of a built model.

        The changes are checked first, then written to
        ``test_cfg.diffusion_sampling`` and parsed into
        ``diffusion_sampling``.

        Args:
            **changes: Keys of :class:`SamplerSettings`.

        Returns:
            SamplerSettings: The settings now in use.

        Raises:
            ValueError: the mask head does not sample, or a bad key or value
                (one line naming it).
        """
        if self.diffusion_sampling is None:
            raise ValueError(
                'sampler settings need a model whose roi_head.mask_head is a '
                f'DiffusionMaskHead, got {type(self.mask_head).__name__}')
        test_cfg = dict(self.test_cfg or {})
        sampling = dict(test_cfg.get('diffusion_sampling') or {}, **changes)
        test_cfg['diffusion_sampling'] = sampling
        settings = self.mask_head.parse_test_cfg(test_cfg)  # check first
        if self.test_cfg is None:
            self.test_cfg = ConfigDict()
        self.test_cfg['diffusion_sampling'] = sampling
        self.diffusion_sampling = settings
        return settings

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
            checks.append(
                ('prototype_dim', spec.prototype_dim, 'support',
                 self._support_extractor,
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
    def _support_extractor(self) -> nn.Module:
        """The RoI extractor that pools the support prototypes."""
        return self.support_roi_extractor or self.mask_roi_extractor

    @property
    def needs_condition(self) -> bool:
        """Whether the mask head is conditioned on region and shots."""
        return self.condition_spec is not None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args,
                              **kwargs) -> None:
        """Check the checkpoint's support set first (torch loads this
        module before its children, the mask head's weights included)."""
        self.support_encoder.check_state_dict(state_dict,
                                              f'{prefix}support_encoder.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        When the first image's meta holds :data:`TRAJECTORY_REQUEST` (n), the
        diffusion head's reverse chain of the first chunk of RoIs, every n-th
        step, is added to the first result's metainfo as
        :data:`TRAJECTORY_RESULT`.
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
        sampling = self.diffusion_sampling
        if sampling is not None and sampling.seed is not None:
            # hashing every image's pixels only pays off for keyed noise
            condition.noise_keys = self._roi_noise_keys(
                batch_img_metas, results_list)
        num_per_img = [len(res) for res in results_list]
        condition.num_per_image = num_per_img
        trajectory_every = batch_img_metas[0].get(TRAJECTORY_REQUEST)
        if sampling is None:
            prediction = self.mask_head.predict(condition)
        else:
            prediction = self.mask_head.predict(
                condition, sampling, trajectory_every=trajectory_every)
        results_list = self.mask_head.predict_by_feat(
            mask_preds=prediction['probs'].split(num_per_img, 0),
            results_list=results_list,
            batch_img_metas=batch_img_metas,
            rcnn_test_cfg=self.test_cfg,
            rescale=rescale)
        for results, unc in zip(results_list,
                                prediction['uncertainty'].split(num_per_img)):
            results.mask_uncertainty = unc
        if prediction.get('trajectory') is not None:
            results_list[0].set_metainfo(
                {TRAJECTORY_RESULT: prediction['trajectory']})
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
        encoder = self.support_encoder
        if training:
            support, has_shots = encoder.training_shots(
                labels, self._context, self._support_extractor, x[0].shape[1])
            if encoder.fallback == 'drop' and not bool(has_shots.all()):
                condition.train_rois = has_shots
        else:
            support = encoder.test_shots(labels, self._context,
                                         self._support_extractor)
        condition.shots = support.shots
        condition.prototypes = support.prototypes
        return condition

