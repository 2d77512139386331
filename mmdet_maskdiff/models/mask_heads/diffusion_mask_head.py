"""The MaskDiff mask head: a conditional diffusion model over binary masks."""
from typing import Dict, Optional

import torch
from mmengine.config import ConfigDict
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, InstanceList, OptMultiConfig
from mmdet_maskdiff.diffusion import (GaussianDiffusion, denoiser_loss,
                                      drop_labels, get_beta_schedule)
from mmdet_maskdiff.diffusion.roi_sampler import RoIMaskSampler
from mmdet_maskdiff.diffusion.sampler_settings import (SAMPLER_HOME,
                                                       SamplerSettings,
                                                       parse_sampler_settings)
from .conditioned_mask_head import ConditionedMaskHead
from .mask_condition import MaskCondition


def _check_class_dropout(class_dropout_prob: float) -> None:
    """Raise a one-line ``ValueError`` on a bad ``class_dropout_prob``."""
    if not 0.0 <= class_dropout_prob < 1.0:
        raise ValueError('class_dropout_prob must be in [0, 1), got '
                         f'{class_dropout_prob}')


@MODELS.register_module()
class DiffusionMaskHead(ConditionedMaskHead):
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
        num_timesteps (int): T. Defaults to 1000.
        beta_schedule (str): ``'linear'`` or ``'cosine'``. Defaults to
            ``'linear'``.
        prediction_type (str): ``'epsilon'``, ``'x0'`` or ``'v'``. Defaults to
            ``'epsilon'``.
        class_dropout_prob (float): Probability of training a RoI with the
            null class (classifier-free guidance). Defaults to 0.1.
        loss_weight (float): Weight of the diffusion loss. Defaults to 1.0.
        **kwargs: The network and what it is conditioned on (``num_classes``,
            ``mask_size``, ``denoiser``, ``region_source``, ``num_shots``,
            ``max_train_rois``, ...) and ``init_cfg``: the arguments of
            :class:`ConditionedMaskHead`, with its defaults.
    """

    def __init__(self,
                 num_timesteps: int = 1000,
                 beta_schedule: str = 'linear',
                 prediction_type: str = 'epsilon',
                 class_dropout_prob: float = 0.1,
                 loss_weight: float = 1.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_class_dropout(class_dropout_prob)
        self.class_dropout_prob = class_dropout_prob
        self.loss_weight = loss_weight
        self.diffusion = GaussianDiffusion(
            get_beta_schedule(beta_schedule, num_timesteps),
            prediction_type=prediction_type)
        self.sampler = RoIMaskSampler(self.diffusion, self.num_classes)

    # ------------------------------------------------------------------ #
    # configuration
    # ------------------------------------------------------------------ #
    def parse_test_cfg(
            self, rcnn_test_cfg: Optional[ConfigDict]) -> SamplerSettings:
        """The validated test-time sampler of
        ``rcnn_test_cfg.diffusion_sampling`` (called once, when the RoI head
        is built).

        Args:
            rcnn_test_cfg (ConfigDict, optional): ``test_cfg`` of the RoI
                head; its ``diffusion_sampling`` dict (missing keys take the
                defaults of :class:`SamplerSettings`). None: the defaults.

        Returns:
            SamplerSettings: The settings :meth:`predict` is given.

        Raises:
            ValueError: a bad key or value (one line naming it).
        """
        sampling = (rcnn_test_cfg or {}).get('diffusion_sampling')
        return parse_sampler_settings(sampling, self.num_timesteps,
                                      SAMPLER_HOME)

    @property
    def num_timesteps(self) -> int:
        """T of the training diffusion."""
        return self.diffusion.num_timesteps

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    def roi_losses(self, cond: Tensor, cond_vector: Optional[Tensor],
                   labels: Tensor, targets: Tensor) -> Dict[str, Tensor]:
        """The diffusion loss of n training RoIs (classes dropped to the
        null class with probability ``class_dropout_prob``).

        Args:
            cond (Tensor): (n, cond_channels, m, m) condition [x, k].
            cond_vector (Tensor, optional): (n, D) prototypes, or None.
            labels (Tensor): (n, ) long classes.
            targets (Tensor): (n, 1, m, m) target masks in {0, 1}.

        Returns:
            dict: ``loss_mask``, the mean of :meth:`diffusion_loss` times
            ``loss_weight``.
        """
        labels = drop_labels(labels, self.class_dropout_prob, self.num_classes)
        loss = self.diffusion_loss(cond, cond_vector, labels, targets * 2 - 1)
        return dict(loss_mask=loss.mean() * self.loss_weight)

    def diffusion_loss(self, cond: Tensor, cond_vector: Optional[Tensor],
                       labels: Tensor, x0: Tensor) -> Tensor:
        """(N,) float32 simple losses of N RoIs at random timesteps:
        :func:`~mmdet_maskdiff.diffusion.denoiser_loss` of this head's
        denoiser and diffusion (the same arguments, shapes and
        mixed-precision rule)."""
        return denoiser_loss(self.denoiser, self.diffusion, cond, cond_vector,
                             labels, x0)

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    @torch.inference_mode()
    def predict(self,
                condition: MaskCondition,
                sampling: Optional[SamplerSettings] = None,
                trajectory_every: Optional[int] = None) -> Dict[str, Tensor]:
        """Sample masks for N RoIs.

        All RoIs (and all samples per RoI) go through one batched reverse
        chain per chunk (:class:`RoIMaskSampler`); the condition's share of
        the first convolution is computed once and reused at every step.

        Args:
            condition (MaskCondition): Conditioning of the N RoIs.
            sampling (SamplerSettings, optional): The sampler settings (the
                RoI head's parsed ``test_cfg.diffusion_sampling``); None: the
                defaults.
            trajectory_every (int, optional): Also return the reverse chain
                of the first chunk, every n-th step (None: not kept).

        Returns:
            dict: ``probs`` (N, 1, m, m) — with the sampler's
            ``output='binary'`` (default) the fraction of samples that are
            foreground at each pixel (binary when ``num_samples == 1``), with
            ``output='soft'`` the mean of the samples' (x̂_0 + 1) / 2 — and
            ``uncertainty`` (N, m, m) = probs · (1 − probs): the per-pixel
            variance of the binary samples (zeros for a single binary
            sample); with ``trajectory_every``, ``trajectory``: a dict with
            ``steps``, ``x_t`` and ``pred_x0`` (see
            :func:`~mmdet_maskdiff.visualization.trajectory_panel`).
        """
        if sampling is None:
            sampling = self.parse_test_cfg(None)
        cond, cond_vector = self.build_condition(condition)
        fg_count, trajectory = self.sampler.sample(
            self.denoiser,
            cond,
            cond_vector,
            condition.labels,
            condition.noise_keys,
            sampling,
            trajectory_every=trajectory_every,
            groups=condition.num_per_image)
        probs = fg_count / sampling.num_samples
        uncertainty = (probs * (1 - probs))[:, 0]
        out = dict(probs=probs, uncertainty=uncertainty)
        if trajectory is not None:
            out['trajectory'] = trajectory
        return out
