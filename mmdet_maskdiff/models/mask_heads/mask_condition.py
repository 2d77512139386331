"""What a diffusion mask head is conditioned on, per RoI, and what it asks
the RoI head to gather for it."""
from dataclasses import dataclass
from typing import List, Optional

from torch import Tensor


@dataclass(frozen=True)
class ConditionSpec:
    """What a conditioned mask head needs the RoI head to supply per RoI.

    A mask head that is conditioned on the object region and the K-shot
    information (:class:`~mmdet_maskdiff.models.DiffusionMaskHead`) exposes
    one as its ``condition_spec`` attribute; an unconditioned head (mmdet's
    ``FCNMaskHead``) has none. :class:`~mmdet_maskdiff.models.FewShotRoIHead`
    reads it once, when it is built (:func:`condition_spec_of`), and gathers
    a :class:`MaskCondition` with exactly these fields.

    Attributes:
        mask_size (int): m, the side of the region crop and of the shots.
        num_shots (int): K, the support shots given per RoI.
        region_image (bool): Whether x includes the RoIAlign crop of the
            normalised query image, (N, 3, m, m).
        region_feat_channels (int, optional): Channels of the neck RoI
            features the head reads as x, (N, C, r, r); None: it reads none.
        prototype_dim (int, optional): Dimension D of the support prototypes
            (N, D); None: the head uses no prototypes.
    """
    mask_size: int
    num_shots: int
    region_image: bool
    region_feat_channels: Optional[int] = None
    prototype_dim: Optional[int] = None

    @property
    def region_features(self) -> bool:
        """Whether x includes the neck's RoI features."""
        return self.region_feat_channels is not None

    @property
    def prototypes(self) -> bool:
        """Whether k includes the pooled support-feature prototype."""
        return self.prototype_dim is not None


def condition_spec_of(mask_head: object) -> Optional[ConditionSpec]:
    """The :class:`ConditionSpec` of ``mask_head``; None for an unconditioned
    head (no ``condition_spec``, e.g. ``FCNMaskHead``) or no head.

    Raises:
        TypeError: ``mask_head.condition_spec`` is set but is not a
            :class:`ConditionSpec`.
    """
    spec = getattr(mask_head, 'condition_spec', None)
    if spec is None or isinstance(spec, ConditionSpec):
        return spec
    raise TypeError(f'{type(mask_head).__name__}.condition_spec must be a '
                    f'ConditionSpec or None, got {type(spec).__name__}')


@dataclass
class MaskCondition:
    """Conditioning inputs of the mask distribution p(y | x, k, c).

    Built by :class:`~mmdet_maskdiff.models.FewShotRoIHead` for a batch of N
    RoIs from the head's :class:`ConditionSpec`; consumed by
    :class:`~mmdet_maskdiff.models.DiffusionMaskHead`. Fields the head does
    not ask for stay ``None``.

    Attributes:
        labels (Tensor): Class c of every RoI, shape (N, ): the ground-truth
            class in training, the detector's prediction at test time.
        region_image (Tensor, optional): The object region x as an RoIAlign
            crop of the normalised query image, shape (N, 3, m, m).
        region_feats (Tensor, optional): The object region x as RoI features
            of the neck, shape (N, C, r, r).
        shots (Tensor, optional): K-shot information k: for each RoI the K
            support shots of its class, each a normalised image crop and its
            binary mask in [-1, 1], shape (N, K, 4, m, m).
        prototypes (Tensor, optional): Mask-pooled neck features of the
            support shots, averaged over the K shots, shape (N, D).
        train_rois (Tensor, optional): bool (N, ), training only: the RoIs
            that enter the loss (None: all). False for RoIs that
            ``FewShotRoIHead`` drops because their class has no support
            instance outside the query batch (``support_fallback='drop'``).
        noise_keys (Tensor, optional): A stable int64 key in [0, 2^32) per
            RoI, shape (N, ), from the image id and the RoI's index in its
            image (:func:`~mmdet_maskdiff.diffusion.combine_keys`); the test
            sampler draws each RoI's noise from it and its seed, so a mask
            does not depend on the batch the RoI is in. ``None``: the RoI's
            index in this condition.
        num_per_image (list[int], optional): Test time: the RoI counts of
            consecutive images; the sampler never mixes two images in one
            pass of the denoiser (bit-identical masks whatever the batch).
    """
    labels: Tensor
    region_image: Optional[Tensor] = None
    region_feats: Optional[Tensor] = None
    shots: Optional[Tensor] = None
    prototypes: Optional[Tensor] = None
    train_rois: Optional[Tensor] = None
    noise_keys: Optional[Tensor] = None
    num_per_image: Optional[List[int]] = None

    def __len__(self) -> int:
        return self.labels.shape[0]
