"""The MaskDiff mask head: a conditional diffusion model over binary masks."""
import copy
import logging
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, InstanceList, OptMultiConfig
from mmdet_maskdiff.diffusion import (GaussianDiffusion, denoiser_loss,
                                      drop_labels, get_beta_schedule)
from mmdet_maskdiff.diffusion.roi_sampler import RoIMaskSampler
from mmdet_maskdiff.diffusion.sampler_settings import (  # noqa: F401
    DEFAULT_SAMPLER, SAMPLER_HOME, SAMPLER_KEYS, SamplerSettings,
    parse_sampler_settings)
from mmdet_maskdiff.structures import StateDictDiff, first_and_count
from .mask_condition import ConditionSpec, MaskCondition


def _take(tensors: Tuple[Optional[Tensor], ...],
          index: Tensor) -> Tuple[Optional[Tensor], ...]:
    """The rows ``index`` of every tensor (None stays None)."""
    return tuple(None if t is None else t[index] for t in tensors)


def _check_head_args(region_source: str, shot_fusion: str, num_shots: int,
                     class_dropout_prob: float,
                     max_train_rois: Optional[int]) -> None:
    """Raise a one-line ``ValueError`` on a bad :class:`DiffusionMaskHead`
    argument."""
    if region_source not in ('image', 'feature', 'both'):
        raise ValueError("region_source must be 'image', 'feature' or "
                         f"'both', got {region_source!r}")
    if shot_fusion not in ('concat', 'mean'):
        raise ValueError("shot_fusion must be 'concat' or 'mean', got "
                         f'{shot_fusion!r}')
    if num_shots < 1:
        raise ValueError(f'num_shots must be >= 1, got {num_shots}')
    if not 0.0 <= class_dropout_prob < 1.0:
        raise ValueError('class_dropout_prob must be in [0, 1), got '
                         f'{class_dropout_prob}')
    rois_ok = max_train_rois is None or (type(max_train_rois) is int
                                         and max_train_rois >= 1)
    if not rois_ok:
        raise ValueError('DiffusionMaskHead: max_train_rois must be None '
                         f'or an int >= 1, got {max_train_rois!r}')


def _mismatch_cause(state_dict: dict, own: dict, reshaped: List[str]) -> str:
    """The likely cause of a mask-head checkpoint that does not fit, given
    the keys whose shapes differ (``reshaped``).

    Residual blocks whose ``time_proj`` gives C instead of 2 × C rows are
    those of the additive blocks before the scale-shift fix
    (CHANGELOG.md), not another config.
    """
    if reshaped and all('.time_proj.' in key and state_dict[key].shape[0] *
                        2 == own[key].shape[0] for key in reshaped):
        return ('the checkpoint has the additive residual blocks of '
                'mmdet_maskdiff before the scale-shift fix '
                '(CHANGELOG.md); retrain stage 2 from the stage-1b '
                'checkpoint')
    return ('the checkpoint was trained with another num_shots, mask_size, '
            'num_classes or denoiser')


@MODELS.register_module()
class DiffusionMaskHead(BaseModule):
    """Mask head that samples each instance mask from p(y | x, k, c).

    MaskDiff (Le et al., AAAI 2024, arXiv:2303.05105) replaces the point
    estimate of an FCN mask head with a conditional DDPM over the binary mask
    y of an object, conditioned on the object region x, the K-shot
    information k and — through classifier-free guidance — the class c:

    * training: ``y0 = 2 * mask - 1`` at ``mask_size``; ``y_t = q_sample(y0,
      t)``; the denoiser predicts ε (or x0 / v) from the channel
      concatenation ``[y_t, x, k]`` and the class embedding, which is replaced
      by the null class with probability ``class_dropout_prob``; the loss is
      the simple objective E‖ε − ε_θ‖² (paper, Sec. "Training");
    * testing: y_T ~ N(0, I) is denoised with DDPM or few-step DDIM using the
      guided score ε̃ = (1 + w)·ε_θ(·, c) − w·ε_θ(·, ∅) (paper, guided
      sampling), then thresholded at 0 and pasted into the image exactly as
      :class:`FCNMaskHead` does. With ``num_samples > 1`` the binary samples
      are averaged; their per-pixel variance is returned as uncertainty.

    The head is thin: the diffusion maths is :mod:`mmdet_maskdiff.diffusion`,
    the network is built from ``denoiser``. Defaults that the paper leaves
    open are choices documented in ``docs/defaults.md``.

    Args:
        num_classes (int): Number of object classes (the null class for
            guidance is added by the denoiser). Defaults to 80.
        mask_size (int): Side m of the square mask the diffusion runs on;
            must equal ``train_cfg.mask_size`` of the RoI head. Defaults to 28.
        denoiser (dict): Config of the denoising network. ``cond_channels``,
            ``num_classes``, ``mask_size`` and ``cond_vector_dim`` are filled
            in by the head.
        region_source (str): How the object region x is given: ``'image'``
            (RoIAlign crop of the normalised image, 3 channels; the paper's
            "object region"), ``'feature'`` (neck RoI features through a 1x1
            convolution) or ``'both'``. Defaults to ``'image'``.
        region_feat_channels (int): Channels of the neck RoI features.
            Defaults to 256.
        region_proj_channels (int): Channels the RoI features are projected to
            when ``region_source`` uses them. Defaults to 8.
        num_shots (int): K, the number of support shots per class given as k.
            Defaults to 1.
        shot_fusion (str): ``'concat'`` stacks the K shots along channels as
            in the paper's supplement (4·K channels; the network is then
            specific to K) or ``'mean'`` averages them (4 channels, any K).
            Defaults to ``'concat'``.
        use_prototypes (bool): Add the pooled support-feature prototype to the
            time embedding. Defaults to True.
        prototype_dim (int): Dimension of the prototypes. Defaults to 256.
        num_timesteps (int): T. Defaults to 1000.
        beta_schedule (str): ``'linear'`` or ``'cosine'``. Defaults to
            ``'linear'``.
        prediction_type (str): ``'epsilon'``, ``'x0'`` or ``'v'``. Defaults to
            ``'epsilon'``.
        class_dropout_prob (float): Probability of training a RoI with the
            null class (classifier-free guidance). Defaults to 0.1.
        loss_weight (float): Weight of the diffusion loss. Defaults to 1.0.
        max_train_rois (int, optional): Train on at most this many positive
            RoIs per batch (per GPU), a random subset (bounds the denoiser's
            memory and time, which grow linearly with the RoI count). None
            uses all. Defaults to None.
        test_sampler (dict, optional): Deprecated: the test-time sampler
            lives in ``model.test_cfg.rcnn.sampler`` (keys and checks:
            :mod:`mmdet_maskdiff.diffusion.sampler_settings`), which the RoI
            head passes to :meth:`predict`. Settings given here still apply
            for one release, over those of ``test_cfg``, with a
            ``DeprecationWarning``.
        init_cfg (dict or list[dict], optional): Initialization config.

    Attributes:
        condition_spec (ConditionSpec): What the RoI head must gather for
            every RoI (m, K, region crop / features, prototype dimension);
            ``mask_size``, ``num_shots``, ``use_prototypes`` and
            ``uses_region_*`` read it.
    """

    #: keep every n-th step of the next :meth:`predict`'s first chunk in
    #: ``last_trajectory`` (set by ``DiffusionSamplerHook``; None: off)
    trajectory_every: Optional[int] = None

    def __init__(self,
                 num_classes: int = 80,
                 mask_size: int = 28,
                 denoiser: ConfigType = dict(
                     type='MaskDenoisingUNet',
                     base_channels=32,
                     channel_mults=(1, 2, 2),
                     num_res_blocks=2,
                     attention_channels=(64, )),
                 region_source: str = 'image',
                 region_feat_channels: int = 256,
                 region_proj_channels: int = 8,
                 num_shots: int = 1,
                 shot_fusion: str = 'concat',
                 use_prototypes: bool = True,
                 prototype_dim: int = 256,
                 num_timesteps: int = 1000,
                 beta_schedule: str = 'linear',
                 prediction_type: str = 'epsilon',
                 class_dropout_prob: float = 0.1,
                 loss_weight: float = 1.0,
                 max_train_rois: Optional[int] = None,
                 test_sampler: Optional[dict] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_head_args(region_source, shot_fusion, num_shots,
                         class_dropout_prob, max_train_rois)
        self.num_classes = num_classes
        self.region_source = region_source
        self.shot_fusion = shot_fusion
        self.class_dropout_prob = class_dropout_prob
        self.loss_weight = loss_weight
        self.max_train_rois = max_train_rois
        # FCNMaskHead's target and pasting code reads this and num_classes.
        self.class_agnostic = True
        #: what :class:`FewShotRoIHead` gathers for every RoI; the one home
        #: of mask_size, num_shots, the region source and the prototypes
        self.condition_spec = ConditionSpec(
            mask_size=mask_size,
            num_shots=num_shots,
            region_image=region_source in ('image', 'both'),
            region_feat_channels=(region_feat_channels if region_source
                                  in ('feature', 'both') else None),
            prototype_dim=prototype_dim if use_prototypes else None)
        if self.uses_region_features:
            self.region_proj = nn.Conv2d(region_feat_channels,
                                         region_proj_channels, 1)
        self.denoiser = self._build_denoiser(denoiser, region_proj_channels)
        self.diffusion = GaussianDiffusion(
            get_beta_schedule(beta_schedule, num_timesteps),
            prediction_type=prediction_type)
        self.sampler = RoIMaskSampler(self.diffusion, num_classes)
        self._take_deprecated_sampler(test_sampler)
        self.last_trajectory: Optional[dict] = None

    def _build_denoiser(self, cfg: ConfigType,
                        region_proj_channels: int) -> nn.Module:
        """Build ``denoiser`` with the sizes this head fills in: the
        condition's channels [x, k], the class count, m and the prototype
        dimension."""
        spec = self.condition_spec
        cond_channels = 3 if spec.region_image else 0
        if spec.region_features:
            cond_channels += region_proj_channels
        cond_channels += 4 * (
            spec.num_shots if self.shot_fusion == 'concat' else 1)
        cfg = copy.deepcopy(cfg)
        cfg.update(
            cond_channels=cond_channels,
            num_classes=self.num_classes,
            mask_size=spec.mask_size,
            cond_vector_dim=spec.prototype_dim if spec.prototypes else 0)
        return MODELS.build(cfg)

    def _take_deprecated_sampler(self, test_sampler: Optional[dict]) -> None:
        """Keep the deprecated ``test_sampler`` settings (they override
        ``test_cfg.sampler`` for one release) and validate them now."""
        self.deprecated_test_sampler = dict(test_sampler or {})
        # the old key of the trajectory capture, now a head attribute
        self.trajectory_every = self.deprecated_test_sampler.pop(
            'trajectory_every', None)
        if test_sampler:
            message = (
                'DiffusionMaskHead: test_sampler is deprecated; move '
                f'{sorted(self.deprecated_test_sampler)} to {SAMPLER_HOME} '
                '(until then they override the values there)')
            warnings.warn(message, DeprecationWarning)
            print_log(message, logger='current', level=logging.WARNING)
            self.sampler_settings(None)  # validate now

    # ------------------------------------------------------------------ #
    # configuration
    # ------------------------------------------------------------------ #
    @property
    def mask_size(self) -> int:
        """m, the side of the square mask the diffusion runs on."""
        return self.condition_spec.mask_size

    @property
    def num_shots(self) -> int:
        """K, the support shots per RoI."""
        return self.condition_spec.num_shots

    @property
    def use_prototypes(self) -> bool:
        """Whether k includes the support-feature prototype."""
        return self.condition_spec.prototypes

    @property
    def uses_region_image(self) -> bool:
        """Whether x includes the RoIAlign crop of the query image."""
        return self.condition_spec.region_image

    @property
    def uses_region_features(self) -> bool:
        """Whether x includes the neck's RoI features."""
        return self.condition_spec.region_features

    @property
    def requires_condition(self) -> bool:
        """Deprecated: use :func:`condition_spec_of` (or
        ``condition_spec``), which also says what the condition holds."""
        warnings.warn(
            'DiffusionMaskHead.requires_condition is deprecated: use '
            'mmdet_maskdiff.models.mask_heads.condition_spec_of(head), '
            'which is None for an unconditioned head', DeprecationWarning)
        return True

    def sampler_settings(
            self, rcnn_test_cfg: Optional[ConfigDict]) -> SamplerSettings:
        """The validated test-time sampler of ``rcnn_test_cfg.sampler``.

        Args:
            rcnn_test_cfg (ConfigDict, optional): ``test_cfg`` of the RoI
                head; its ``sampler`` dict (missing keys take
                :data:`DEFAULT_SAMPLER`). None: the defaults.

        Returns:
            SamplerSettings: The settings :meth:`predict` samples with.

        Raises:
            ValueError: a bad key or value (one line naming it).
        """
        sampler = dict((rcnn_test_cfg or {}).get('sampler') or {})
        sampler.update(self.deprecated_test_sampler)
        return parse_sampler_settings(sampler, self.num_timesteps)

    def set_sampler(self, **settings) -> None:
        """Removed: the sampler has one home, ``model.test_cfg.rcnn.sampler``.

        Raises:
            AttributeError: always, naming the replacement.
        """
        raise AttributeError(
            'DiffusionMaskHead.set_sampler was removed: the test-time '
            f'sampler lives in {SAMPLER_HOME} (a loaded model: '
            'mmdet_maskdiff.apis.set_test_sampler(model, ...))')

    @property
    def num_timesteps(self) -> int:
        """T of the training diffusion."""
        return self.diffusion.num_timesteps

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args,
                              **kwargs) -> None:
        """Load strictly, whatever the caller asks: mmdet and mmengine load
        checkpoints with ``strict=False`` (``init_detector``, ``load_from``,
        the inferencers), which would leave a tensor of another shape — e.g.
        the first convolution after ``num_shots`` changed — at its random
        initial value and produce masks silently wrong. A checkpoint with no
        tensor of this head at all (stage 1b → stage 2, where the head is
        new) is fine.

        Raises:
            ValueError: the checkpoint has some of this head's tensors but
                not all, or one with another shape.
        """
        own = {prefix + key: value for key, value in self.state_dict().items()}
        if any(key in state_dict for key in own):
            # only this head's keys: the rest of the model is not ours
            present = {k: state_dict[k] for k in own if k in state_dict}
            diff = StateDictDiff.between(own, present)
            problems = diff.lines(own, present)  # present ⊆ own: no extras
            if problems:
                raise ValueError(
                    f'DiffusionMaskHead: {first_and_count(problems)}; '
                    + _mismatch_cause(present, own, diff.reshaped))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ #
    # conditioning
    # ------------------------------------------------------------------ #
    def build_condition(self,
                        condition: MaskCondition) -> Tuple[Tensor, Tensor]:
        """Turn a :class:`MaskCondition` into the denoiser's inputs.

        Args:
            condition (MaskCondition): Inputs for N RoIs.

        Returns:
            tuple[Tensor, Tensor | None]: The channel concatenation [x, k] of
            shape (N, cond_channels, m, m) and the prototype vector (N, D) or
            None.
        """
        size = (self.mask_size, self.mask_size)
        parts: List[Tensor] = []
        if self.uses_region_image:
            parts.append(condition.region_image)
        if self.uses_region_features:
            feats = self.region_proj(condition.region_feats)
            parts.append(
                F.interpolate(
                    feats, size=size, mode='bilinear', align_corners=False))
        shots = condition.shots  # (N, K, 4, m, m)
        if shots.shape[1] != self.num_shots:
            raise ValueError(f'expected {self.num_shots} support shots per '
                             f'RoI, got {shots.shape[1]}')
        if self.shot_fusion == 'concat':
            parts.append(shots.flatten(1, 2))
        else:
            parts.append(shots.mean(dim=1))
        cond_vector = condition.prototypes if self.use_prototypes else None
        return torch.cat(parts, dim=1), cond_vector

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    get_targets = FCNMaskHead.get_targets

    def loss_and_target(self, condition: MaskCondition,
                        sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """Diffusion loss on the positive RoIs of a batch.

        Args:
            condition (MaskCondition): Conditioning of the P positive RoIs, in
                the order of ``sampling_results``.
            sampling_results (list[SamplingResult]): Assigned RoIs per image.
            batch_gt_instances (list[InstanceData]): Ground truth with masks.
            rcnn_train_cfg (ConfigDict): ``train_cfg`` of the RoI head; its
                ``mask_size`` must equal this head's.

        Returns:
            dict: ``loss_mask`` (dict with key ``loss_mask``) and
            ``mask_targets`` (P, m, m) in {0, 1}.
        """
        if rcnn_train_cfg.mask_size != self.mask_size:
            raise ValueError(
                f'train_cfg.mask_size ({rcnn_train_cfg.mask_size}) must equal '
                f'DiffusionMaskHead.mask_size ({self.mask_size})')
        mask_targets = self.get_targets(sampling_results, batch_gt_instances,
                                        rcnn_train_cfg)
        if len(condition) == 0:
            return self._zero_loss(mask_targets)
        cond, cond_vector = self.build_condition(condition)
        rois = (cond, cond_vector, condition.labels, mask_targets[:, None])
        if condition.train_rois is not None:
            rois = _take(rois, condition.train_rois.nonzero().flatten())
            if len(rois[2]) == 0:
                return self._zero_loss(mask_targets)
        if self.max_train_rois and len(rois[2]) > self.max_train_rois:
            rois = _take(
                rois,
                torch.randperm(len(rois[2]),
                               device=rois[2].device)[:self.max_train_rois])
        cond, cond_vector, labels, x0 = rois
        labels = drop_labels(labels, self.class_dropout_prob, self.num_classes)
        loss = self.diffusion_loss(cond, cond_vector, labels, x0 * 2 - 1)
        loss = loss.mean() * self.loss_weight
        return dict(loss_mask=dict(loss_mask=loss), mask_targets=mask_targets)

    def diffusion_loss(self, cond: Tensor, cond_vector: Optional[Tensor],
                       labels: Tensor, x0: Tensor) -> Tensor:
        """(N,) float32 simple losses of N RoIs at random timesteps:
        :func:`~mmdet_maskdiff.diffusion.denoiser_loss` of this head's
        denoiser and diffusion (the same arguments, shapes and
        mixed-precision rule)."""
        return denoiser_loss(self.denoiser, self.diffusion, cond, cond_vector,
                             labels, x0)

    def _zero_loss(self, mask_targets: Tensor) -> dict:
        """A zero loss that keeps every parameter in the graph (DDP)."""
        zero = sum(p.sum() for p in self.parameters()) * 0.
        return dict(loss_mask=dict(loss_mask=zero), mask_targets=mask_targets)

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    @torch.inference_mode()
    def predict(
            self,
            condition: MaskCondition,
            rcnn_test_cfg: Optional[ConfigDict] = None) -> Dict[str, Tensor]:
        """Sample masks for N RoIs with the sampler of ``rcnn_test_cfg``.

        All RoIs (and all samples per RoI) go through one batched reverse
        chain per chunk (:class:`RoIMaskSampler`); the condition's share of
        the first convolution is computed once and reused at every step.

        Args:
            condition (MaskCondition): Conditioning of the N RoIs.
            rcnn_test_cfg (ConfigDict, optional): ``test_cfg`` of the RoI
                head; its ``sampler`` holds the sampler settings (None: the
                defaults).

        Returns:
            dict: ``probs`` (N, 1, m, m) — the fraction of samples that are
            foreground at each pixel (binary when ``num_samples == 1``) — and
            ``uncertainty`` (N, m, m), the per-pixel variance of the binary
            samples (zeros for a single sample).
        """
        settings = self.sampler_settings(rcnn_test_cfg)
        cond, cond_vector = self.build_condition(condition)
        fg_count, self.last_trajectory = self.sampler.sample(
            self.denoiser,
            cond,
            cond_vector,
            condition.labels,
            condition.noise_keys,
            settings,
            trajectory_every=self.trajectory_every,
            groups=condition.num_per_image)
        probs = fg_count / settings.num_samples
        uncertainty = (probs * (1 - probs))[:, 0]
        return dict(probs=probs, uncertainty=uncertainty)

    _predict_by_feat_single = FCNMaskHead._predict_by_feat_single

    def predict_by_feat(self,
                        mask_preds: Tuple[Tensor],
                        results_list: InstanceList,
                        batch_img_metas: List[dict],
                        rcnn_test_cfg: ConfigDict,
                        rescale: bool = False,
                        activate_map: bool = True) -> InstanceList:
        """Paste per-RoI foreground probabilities into the images.

        Pasting, thresholding (``rcnn_test_cfg.mask_thr_binary``) and the
        zero-detection path are FCNMaskHead's own code, so a MaskDiff model
        and a Mask R-CNN produce masks in exactly the same format.

        Args:
            mask_preds (tuple[Tensor]): Per image, foreground probabilities of
                shape (n, 1, m, m) from :meth:`predict`.
            results_list (list[InstanceData]): Detections per image.
            batch_img_metas (list[dict]): Image meta information.
            rcnn_test_cfg (ConfigDict): ``test_cfg`` of the RoI head.
            rescale (bool): Paste at ``ori_shape`` instead of the resized
                image. Defaults to False.
            activate_map (bool): Kept for API compatibility; the
                probabilities are never passed through a sigmoid.

        Returns:
            list[InstanceData]: ``results_list`` with ``masks`` (n, H, W) bool.
        """
        with warnings.catch_warnings():
            # FCNMaskHead copies activated maps with `new_tensor`
            warnings.filterwarnings(
                'ignore', message='To copy construct from a tensor')
            return FCNMaskHead.predict_by_feat(
                self,
                mask_preds,
                results_list,
                batch_img_metas,
                rcnn_test_cfg,
                rescale=rescale,
                activate_map=True)

    def forward(
            self,
            condition: MaskCondition,
            rcnn_test_cfg: Optional[ConfigDict] = None) -> Dict[str, Tensor]:
        """Alias of :meth:`predict`, so the head can be called like any
        module (e.g. for FLOP counting)."""
        return self.predict(condition, rcnn_test_cfg)
