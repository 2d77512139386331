"""The MaskDiff mask head: a conditional diffusion model over binary masks."""
import logging
import warnings
from typing import Dict, Optional

import torch
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, InstanceList, OptMultiConfig
from mmdet_maskdiff.diffusion import (GaussianDiffusion, denoiser_loss,
                                      drop_labels, get_beta_schedule)
from mmdet_maskdiff.diffusion.roi_sampler import RoIMaskSampler
from mmdet_maskdiff.diffusion.sampler_settings import (  # noqa: F401
    DEFAULT_SAMPLER, SAMPLER_HOME, SAMPLER_KEYS, SamplerSettings,
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
        test_sampler (dict, optional): Deprecated: the test-time sampler
            lives in ``model.test_cfg.rcnn.sampler`` (keys and checks:
            :mod:`mmdet_maskdiff.diffusion.sampler_settings`), which the RoI
            head passes to :meth:`predict`. Settings given here still apply
            for one release, over those of ``test_cfg``, with a
            ``DeprecationWarning``.
        **kwargs: The network and what it is conditioned on (``num_classes``,
            ``mask_size``, ``denoiser``, ``region_source``, ``num_shots``,
            ``max_train_rois``, ...) and ``init_cfg``: the arguments of
            :class:`ConditionedMaskHead`, with its defaults.
    """

    #: keep every n-th step of the next :meth:`predict`'s first chunk in
    #: ``last_trajectory`` (set by ``DiffusionSamplerHook``; None: off)
    trajectory_every: Optional[int] = None

    def __init__(self,
                 num_timesteps: int = 1000,
                 beta_schedule: str = 'linear',
                 prediction_type: str = 'epsilon',
                 class_dropout_prob: float = 0.1,
                 loss_weight: float = 1.0,
                 test_sampler: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_class_dropout(class_dropout_prob)
        self.class_dropout_prob = class_dropout_prob
        self.loss_weight = loss_weight
        self.diffusion = GaussianDiffusion(
            get_beta_schedule(beta_schedule, num_timesteps),
            prediction_type=prediction_type)
        self.sampler = RoIMaskSampler(self.diffusion, self.num_classes)
        self._take_deprecated_sampler(test_sampler)
        self.last_trajectory: Optional[dict] = None

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

    def check_test_cfg(self, rcnn_test_cfg: Optional[ConfigDict]) -> None:
        """Check the sampler of ``rcnn_test_cfg`` (:meth:`sampler_settings`).

        Raises:
            ValueError: a bad key or value (one line naming it).
        """
        self.sampler_settings(rcnn_test_cfg)

    def wants_noise_keys(self, rcnn_test_cfg: Optional[ConfigDict]) -> bool:
        """Whether the sampler draws each RoI's noise from its key: when it
        is seeded (``sampler.seed`` is not None)."""
        return self.sampler_settings(rcnn_test_cfg).seed is not None

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
            dict: ``probs`` (N, 1, m, m) — with the sampler's
            ``output='binary'`` (default) the fraction of samples that are
            foreground at each pixel (binary when ``num_samples == 1``), with
            ``output='soft'`` the mean of the samples' (x̂_0 + 1) / 2 — and
            ``uncertainty`` (N, m, m) = probs · (1 − probs): the per-pixel
            variance of the binary samples (zeros for a single binary
            sample).
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
