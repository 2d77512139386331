"""The same-input regression twin of the MaskDiff mask head: the diffusion
head's network and conditioning, one forward pass, trained on the mask."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType
from .checkpoint_fit import TWIN_STATE_KEY
from .conditioned_mask_head import ConditionedMaskHead
from .mask_condition import MaskCondition


@MODELS.register_module()
class RegressionMaskHead(ConditionedMaskHead):
    """MaskDiff's mask head without the diffusion: a point estimate from the
    very same network and inputs.

    The ablation a diffusion mask head is measured against. It keeps
    everything of :class:`DiffusionMaskHead` that is not diffusion — the
    denoiser UNet (built from the same ``denoiser`` config, same tensors),
    the same conditioning (region crop x, the K support crops and masks k,
    the prototype, the class embedding; :class:`ConditionedMaskHead`), the
    same targets, training RoIs and pasting — and replaces the rest:

    * input: the y_t channel is fixed at 0 and the timestep at
      ``T − 1 = 999`` (:attr:`FIXED_TIMESTEP`, kept in the checkpoint as the
      buffer ``fixed_timestep``). That is what the diffusion head's
      one-step DDIM sampler feeds the same network, with the noise y_T
      replaced by its mean 0: the twin is the regressor that such a sampler
      would be if the noise carried no information;
    * training: the network's output is read as mask logits and trained
      directly on the target mask with sigmoid cross-entropy + Dice (both
      weights are config keys; the default 1 : 1 is Mask2Former's, Cheng et
      al. 2022, naive Dice with eps 1 as there). No class dropout: the class
      conditions every RoI (there is no guidance to train for);
    * testing: one forward pass per image (a pass never mixes two images,
      as the diffusion sampler does), ``probs = sigmoid(logits)`` pasted as
      soft probabilities exactly like :class:`FCNMaskHead`, and
      ``uncertainty = p(1 − p)``, the Bernoulli variance of the predicted
      pixel — free, and the baseline a sampled uncertainty must beat.

    Test-time settings of the diffusion head (``test_cfg.diffusion_sampling``) do not
    apply and are ignored, as by ``FCNMaskHead``.

    Loading is strict (:meth:`ConditionedMaskHead._load_from_state_dict`): a
    MaskDiff checkpoint, which has the same network tensors but no
    ``fixed_timestep``, is refused with one line naming it, and so is a twin
    checkpoint by :class:`DiffusionMaskHead`.

    Args:
        loss_mask (dict): Per-pixel loss on the logits. Defaults to sigmoid
            cross-entropy, weight 1.
        loss_dice (dict, optional): Dice loss on the logits (None: none).
            Defaults to naive Dice (eps 1), weight 1.
        **kwargs: The network and what it is conditioned on (``num_classes``,
            ``mask_size``, ``denoiser``, ``region_source``, ``num_shots``,
            ``max_train_rois``, ...) and ``init_cfg``: the arguments of
            :class:`ConditionedMaskHead`, with its defaults (those of
            :class:`DiffusionMaskHead`).
    """

    #: t of every forward pass: T − 1 of the configs' T = 1000 chain, where
    #: the diffusion head's one-step sampler evaluates the same network
    FIXED_TIMESTEP = 999

    def __init__(self,
                 loss_mask: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=True,
                     loss_weight=1.0),
                 loss_dice: Optional[ConfigType] = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     naive_dice=True,
                     eps=1.0,
                     loss_weight=1.0),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = (
            MODELS.build(loss_dice) if loss_dice is not None else None)
        self.register_buffer(TWIN_STATE_KEY,
                             torch.tensor(self.FIXED_TIMESTEP))

    # ------------------------------------------------------------------ #
    # the network
    # ------------------------------------------------------------------ #
    def mask_logits(self, cond: Tensor, cond_vector: Optional[Tensor],
                    labels: Tensor) -> Tensor:
        """One forward pass of the denoiser from the fixed input.

        Args:
            cond (Tensor): (N, cond_channels, m, m) condition [x, k].
            cond_vector (Tensor, optional): (N, D) prototypes, or None.
            labels (Tensor): (N, ) long classes.

        Returns:
            Tensor: (N, 1, m, m) mask logits, in the dtype the denoiser
            computes in (e.g. bfloat16 under autocast).
        """
        num = cond.shape[0]
        fixed_input = cond.new_zeros((num, 1, self.mask_size, self.mask_size))
        timesteps = getattr(self, TWIN_STATE_KEY).expand(num)
        encoding = self.denoiser.encode_condition(cond, cond_vector)
        return self.denoiser(fixed_input, timesteps, encoding, labels)

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    @property
    def loss_names(self) -> Tuple[str, ...]:
        """``loss_mask`` and, with a Dice loss, ``loss_dice``."""
        return ('loss_mask', ) if self.loss_dice is None else ('loss_mask',
                                                               'loss_dice')

    def roi_losses(self, cond: Tensor, cond_vector: Optional[Tensor],
                   labels: Tensor, targets: Tensor) -> Dict[str, Tensor]:
        """Cross-entropy (+ Dice) of the mask logits of n training RoIs.

        The denoiser runs under the caller's autocast (``--amp``); the
        losses are computed in float32.

        Args:
            cond (Tensor): (n, cond_channels, m, m) condition [x, k].
            cond_vector (Tensor, optional): (n, D) prototypes, or None.
            labels (Tensor): (n, ) long classes (no dropout).
            targets (Tensor): (n, 1, m, m) target masks in {0, 1}.

        Returns:
            dict: ``loss_mask`` and, with a Dice loss, ``loss_dice``.
        """
        logits = self.mask_logits(cond, cond_vector, labels)
        with torch.autocast(logits.device.type, enabled=False):
            logits, targets = logits.float()[:, 0], targets.float()[:, 0]
            losses = dict(loss_mask=self.loss_mask(logits, targets))
            if self.loss_dice is not None:
                losses['loss_dice'] = self.loss_dice(logits, targets)
        return losses

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    @torch.inference_mode()
    def predict(self, condition: MaskCondition) -> Dict[str, Tensor]:
        """Foreground probabilities of N RoIs from one forward pass each.

        Args:
            condition (MaskCondition): Conditioning of the N RoIs; its
                ``num_per_image`` splits the passes by image (None: one
                pass). ``noise_keys`` are not used.

        Returns:
            dict: ``probs`` (N, 1, m, m) = sigmoid of the mask logits, and
            ``uncertainty`` (N, m, m) = p(1 − p), the Bernoulli variance of
            each pixel under ``probs``.
        """
        cond, cond_vector = self.build_condition(condition)
        size = self.mask_size
        probs = cond.new_empty((len(condition), 1, size, size))
        start = 0
        for count in condition.num_per_image or [len(condition)]:
            rows = slice(start, start + count)
            start += count
            if count:
                logits = self.mask_logits(
                    cond[rows], None if cond_vector is None else
                    cond_vector[rows], condition.labels[rows])
                probs[rows] = logits.to(probs.dtype).sigmoid()
        return dict(probs=probs, uncertainty=(probs * (1 - probs))[:, 0])
