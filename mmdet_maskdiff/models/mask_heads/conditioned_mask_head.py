"""What the MaskDiff mask heads share: the denoiser UNet, its conditioning on
the object region and the K-shot information, the training RoIs, strict
loading and FCNMaskHead's pasting.

Two heads build on it: :class:`~.DiffusionMaskHead` (MaskDiff: the mask is
sampled by a reverse diffusion chain) and :class:`~.RegressionMaskHead` (its
same-input regression twin: one forward pass of the same network). Both are
conditioned on exactly the same inputs, so the difference between them is
the diffusion alone.

The file is a little over 400 lines because it is one class, the contract
both heads share, about half of it docstrings; whether a checkpoint fits
lives in :mod:`.checkpoint_fit`.
"""
import copy
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, InstanceList, OptMultiConfig
from .checkpoint_fit import checkpoint_problem
from .mask_condition import ConditionSpec, MaskCondition

def _take(tensors: Tuple[Optional[Tensor], ...],
          index: Tensor) -> Tuple[Optional[Tensor], ...]:
    """The rows ``index`` of every tensor (None stays None)."""
    return tuple(None if t is None else t[index] for t in tensors)


def _check_head_args(head: str, region_source: str, shot_fusion: str,
                     num_shots: int, max_train_rois: Optional[int]) -> None:
    """Raise a one-line ``ValueError`` on a bad argument of the head class
    ``head``."""
    if region_source not in ('image', 'feature', 'both'):
        raise ValueError("region_source must be 'image', 'feature' or "
                         f"'both', got {region_source!r}")
    if shot_fusion not in ('concat', 'mean'):
        raise ValueError("shot_fusion must be 'concat' or 'mean', got "
                         f'{shot_fusion!r}')
    if num_shots < 1:
        raise ValueError(f'num_shots must be >= 1, got {num_shots}')
    rois_ok = max_train_rois is None or (type(max_train_rois) is int
                                         and max_train_rois >= 1)
    if not rois_ok:
        raise ValueError(f'{head}: max_train_rois must be None or an int '
                         f'>= 1, got {max_train_rois!r}')


class ConditionedMaskHead(BaseModule):
    """Base of the mask heads that run MaskDiff's denoiser UNet on the
    object region x and the K-shot information k of every RoI.

    It owns what does not depend on how a mask is produced from the
    network: the :class:`ConditionSpec` the RoI head gathers from, the
    denoiser built from ``denoiser`` with the condition's channel count, the
    channel concatenation [x, k] (:meth:`build_condition`), FCNMaskHead's
    targets, the subset of RoIs a batch trains on, a strict
    :meth:`_load_from_state_dict` and FCNMaskHead's pasting
    (:meth:`predict_by_feat`). Subclasses add :meth:`roi_losses` (the
    losses of the RoIs that train, named :attr:`loss_names`) and
    :meth:`predict` (``probs`` (N, 1, m, m) and ``uncertainty`` (N, m, m)).

    Args:
        num_classes (int): Number of object classes (the denoiser adds the
            null class of guidance). Defaults to 80.
        mask_size (int): Side m of the square mask; must equal
            ``train_cfg.mask_size`` of the RoI head. Defaults to 28.
        denoiser (dict): Config of the network. ``cond_channels``,
            ``num_classes``, ``mask_size`` and ``cond_vector_dim`` are filled
            in by the head. Defaults to a compact UNet (base 32, levels
            (1, 2, 2)).
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
        max_train_rois (int, optional): Train on at most this many positive
            RoIs per batch (per GPU), a random subset (bounds the denoiser's
            memory and time, which grow linearly with the RoI count). None
            uses all. Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config.

    Attributes:
        condition_spec (ConditionSpec): What the RoI head must gather for
            every RoI (m, K, region crop / features, prototype dimension);
            ``mask_size``, ``num_shots``, ``use_prototypes`` and
            ``uses_region_*`` read it.
    """

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
                 max_train_rois: Optional[int] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_head_args(
            type(self).__name__, region_source, shot_fusion, num_shots,
            max_train_rois)
        self.num_classes = num_classes
        self.region_source = region_source
        self.shot_fusion = shot_fusion
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

    # ------------------------------------------------------------------ #
    # configuration
    # ------------------------------------------------------------------ #
    @property
    def mask_size(self) -> int:
        """m, the side of the square mask the network runs on."""
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

    def parse_test_cfg(self, rcnn_test_cfg: Optional[ConfigDict]) -> None:
        """Parse this head's settings in the RoI head's ``test_cfg`` (called
        once, when the RoI head is built). The base head has none; a head
        that samples returns its :class:`SamplerSettings`.

        Raises:
            ValueError: a bad key or value (one line naming it).
        """
        return None

    # ------------------------------------------------------------------ #
    # loading
    # ------------------------------------------------------------------ #
    def checkpoint_problem(self, state_dict: dict,
                           prefix: str = '') -> Optional[str]:
        """Why ``state_dict`` cannot fill this head, or None when it can.

        Every tensor of the head must be there with its shape, and no other
        tensor under ``prefix``; a state dict with no tensor under
        ``prefix`` at all fits (stage 1b → stage 2, where the head is new).

        Args:
            state_dict (dict): Tensors by key, e.g. a checkpoint's.
            prefix (str): This head's key prefix in ``state_dict``, e.g.
                ``'roi_head.mask_head.'``.

        Returns:
            str | None: One line: the first problem, how many follow, and the
            likely cause.
        """
        return checkpoint_problem(self.state_dict(), state_dict, prefix)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args,
                              **kwargs) -> None:
        """Load strictly, whatever the caller asks: mmdet and mmengine load
        checkpoints with ``strict=False`` (``init_detector``, ``load_from``,
        the inferencers), which would leave a tensor of another shape — e.g.
        the first convolution after ``num_shots`` changed — at its random
        initial value and produce masks silently wrong, or fill the
        regression twin with MaskDiff's weights. A checkpoint with no tensor
        of this head at all (stage 1b → stage 2, where the head is new) is
        fine.

        Raises:
            ValueError: :meth:`checkpoint_problem` names a problem.
        """
        problem = self.checkpoint_problem(state_dict, prefix)
        if problem:
            raise ValueError(f'{type(self).__name__}: {problem}')
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

    #: the keys of :meth:`roi_losses` (subclasses)
    loss_names: Tuple[str, ...] = ('loss_mask', )

    def loss_and_target(self, condition: MaskCondition,
                        sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """Mask losses on the positive RoIs of a batch: :meth:`roi_losses`
        of those that train (:meth:`training_rois`), or zeros that keep
        every parameter in the graph (DDP) when none does.

        Args:
            condition (MaskCondition): Conditioning of the P positive RoIs, in
                the order of ``sampling_results``.
            sampling_results (list[SamplingResult]): Assigned RoIs per image.
            batch_gt_instances (list[InstanceData]): Ground truth with masks.
            rcnn_train_cfg (ConfigDict): ``train_cfg`` of the RoI head; its
                ``mask_size`` must equal this head's.

        Returns:
            dict: ``loss_mask`` (a dict with the keys :attr:`loss_names`)
            and ``mask_targets`` (P, m, m) in {0, 1}, FCNMaskHead's targets.

        Raises:
            ValueError: ``rcnn_train_cfg.mask_size`` differs from this
                head's.
        """
        if rcnn_train_cfg.mask_size != self.mask_size:
            raise ValueError(
                f'train_cfg.mask_size ({rcnn_train_cfg.mask_size}) must equal '
                f'{type(self).__name__}.mask_size ({self.mask_size})')
        mask_targets = self.get_targets(sampling_results, batch_gt_instances,
                                        rcnn_train_cfg)
        rois = self.training_rois(condition, mask_targets)
        if rois is None:
            zero = sum(p.sum() for p in self.parameters()) * 0.
            losses = {name: zero for name in self.loss_names}
        else:
            losses = self.roi_losses(*rois)
        return dict(loss_mask=losses, mask_targets=mask_targets)

    def roi_losses(self, cond: Tensor, cond_vector: Optional[Tensor],
                   labels: Tensor, targets: Tensor) -> Dict[str, Tensor]:
        """The losses of n training RoIs (subclasses), by
        :attr:`loss_names`.

        Args:
            cond (Tensor): (n, cond_channels, m, m) condition [x, k].
            cond_vector (Tensor, optional): (n, D) prototypes, or None.
            labels (Tensor): (n, ) long classes.
            targets (Tensor): (n, 1, m, m) target masks in {0, 1}.
        """
        raise NotImplementedError

    def training_rois(
        self, condition: MaskCondition, mask_targets: Tensor
    ) -> Optional[Tuple[Tensor, Optional[Tensor], Tensor, Tensor]]:
        """The RoIs a batch trains on: those of ``condition.train_rois``,
        then a random ``max_train_rois`` of them.

        Args:
            condition (MaskCondition): Conditioning of the P positive RoIs.
            mask_targets (Tensor): (P, m, m) their targets in {0, 1}.

        Returns:
            tuple | None: ``cond`` (n, cond_channels, m, m), ``cond_vector``
            (n, D) or None, ``labels`` (n, ) and ``targets`` (n, 1, m, m)
            in {0, 1}; None when no RoI trains.
        """
        if len(condition) == 0:
            return None
        cond, cond_vector = self.build_condition(condition)
        rois = (cond, cond_vector, condition.labels, mask_targets[:, None])
        if condition.train_rois is not None:
            rois = _take(rois, condition.train_rois.nonzero().flatten())
        num = len(rois[2])
        if num == 0:
            return None
        if self.max_train_rois and num > self.max_train_rois:
            rois = _take(
                rois,
                torch.randperm(num,
                               device=rois[2].device)[:self.max_train_rois])
        return rois

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    def predict(self, condition: MaskCondition, *args,
                **kwargs) -> Dict[str, Tensor]:
        """Foreground probabilities ``probs`` (N, 1, m, m) and a per-pixel
        ``uncertainty`` (N, m, m) of N RoIs (subclasses)."""
        raise NotImplementedError

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
        zero-detection path are FCNMaskHead's own code, so these heads and a
        Mask R-CNN produce masks in exactly the same format.

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

    def forward(self, condition: MaskCondition, *args,
                **kwargs) -> Dict[str, Tensor]:
        """Alias of :meth:`predict`, so the head can be called like any
        module (e.g. for FLOP counting)."""
        return self.predict(condition, *args, **kwargs)
