"""Single-image inference helpers for ``tools/image_demo.py``.

* :func:`set_diffusion_sampling` / :func:`get_diffusion_sampling` — change /
  read the test-time sampler of a loaded model (its one home:
  ``model.test_cfg.rcnn.diffusion_sampling``, parsed by the RoI head);
* :func:`check_weights_fit` — refuse, in one line, a checkpoint whose weights
  are not those of the config's model (mmengine loads non-strictly and only
  logs missing / unexpected keys, which would give silently wrong masks);
* :class:`MaskDiffInferencer` — mmdet's ``DetInferencer`` with that check,
  which can also ask for the reverse chain of each batch.
"""
from typing import Mapping, Optional

from mmdet.apis import DetInferencer

from mmdet_maskdiff.models.roi_heads.few_shot_roi_head import \
    TRAJECTORY_REQUEST
from mmdet_maskdiff.models.roi_heads.stored_support import (
    STATE_KEY, read_from_state_dict)
from mmdet_maskdiff.models.roi_heads.support_encoder import \
    support_encoder_of

#: where the support encoder's stored set lies in a detector's state dict
SUPPORT_PREFIX = 'roi_head.support_encoder.'


def _sampling_roi_head(model):
    """``model.roi_head`` when its mask head samples (``ValueError``
    otherwise, naming the mask head)."""
    roi_head = getattr(model, 'roi_head', None)
    if getattr(roi_head, 'diffusion_sampling', None) is None:
        head = getattr(roi_head, 'mask_head', None)
        raise ValueError('sampler settings need a model whose '
                         'roi_head.mask_head is a DiffusionMaskHead, got '
                         f'{type(head).__name__}')
    return roi_head


def set_diffusion_sampling(model, **changes) -> dict:
    """Change the test-time sampler of a loaded model.

    The changes are checked, then written to the RoI head's
    ``test_cfg.diffusion_sampling`` (what
    ``model.test_cfg.rcnn.diffusion_sampling`` of the config built) and
    parsed (:meth:`FewShotRoIHead.update_diffusion_sampling`).

    Args:
        model (MaskDiffRCNN): A loaded model.
        **changes: Sampler keys (``steps``, ``guidance_weight``,
            ``num_samples``, ``seed``, ``chunk_size``, ``fast``, ...; see
            :mod:`mmdet_maskdiff.diffusion.sampler_settings`).

    Returns:
        dict: The sampler settings now in use.

    Raises:
        ValueError: the model has no diffusion mask head, or a key or value
            is bad (one line).
    """
    roi_head = _sampling_roi_head(model)
    return roi_head.update_diffusion_sampling(**changes).to_dict()


def get_diffusion_sampling(model) -> dict:
    """The complete test-time sampler settings a loaded model samples with
    (defaults filled in).

    Raises:
        ValueError: the model has no diffusion mask head.
    """
    return _sampling_roi_head(model).diffusion_sampling.to_dict()


def check_weights_fit(model, state_dict: Mapping, checkpoint: str) -> None:
    """Raise ``ValueError`` (one line) unless ``state_dict`` has exactly the
    model's weights with the model's shapes.

    The stored support set (``*.support_set.*``) is not a weight and is
    checked by the RoI head when it is loaded.
    """

    def weights(keys):
        return {k for k in keys if f'.{STATE_KEY}.' not in k}

    own = model.state_dict()
    expected, given = weights(own), weights(state_dict)
    missing = sorted(expected - given)
    unexpected = sorted(given - expected)
    reshaped = sorted(k for k in expected & given
                      if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if not (missing or unexpected or reshaped):
        return
    problems = []
    for name, keys in (('missing', missing), ('unexpected', unexpected),
                       ('of another shape', reshaped)):
        if keys:
            problems.append(f'{len(keys)} {name} (e.g. {keys[0]})')
    raise ValueError(f'checkpoint {checkpoint} is not a checkpoint of this '
                     f'config\'s model: of {len(expected)} weights, '
                     f'{", ".join(problems)}')


class MaskDiffInferencer(DetInferencer):
    """``DetInferencer`` that refuses weights of another model (before
    loading them, so without mmengine's multi-line key listing).

    Args:
        model (str): Config file.
        weights (str): Checkpoint file.
        trajectory_every (int, optional): Keep every n-th step of each
            batch's reverse chain (None: off).
        **kwargs: Other arguments of ``DetInferencer``.
    """

    def __init__(self,
                 model: str,
                 weights: str,
                 trajectory_every: Optional[int] = None,
                 **kwargs) -> None:
        self._weights_path = weights
        self.trajectory_every = trajectory_every
        super().__init__(model=model, weights=weights, **kwargs)

    def forward(self, inputs, **kwargs):
        """Run the model; with ``trajectory_every`` ask for the reverse
        chain of each batch (it comes back in the first prediction's
        ``pred_instances.metainfo['mask_trajectory']``)."""
        if self.trajectory_every is not None and isinstance(inputs, dict):
            for sample in inputs.get('data_samples') or []:
                sample.set_metainfo(
                    {TRAJECTORY_REQUEST: self.trajectory_every})
        return super().forward(inputs, **kwargs)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict],
                               cfg) -> None:
        if checkpoint is not None:
            state_dict = checkpoint.get('state_dict', checkpoint)
            if not isinstance(state_dict, Mapping):
                raise ValueError(f'checkpoint {self._weights_path} holds no '
                                 'state dict')
            # the support set first: its message names the config to use
            stored = read_from_state_dict(state_dict, SUPPORT_PREFIX)
            if stored is not None:
                try:
                    encoder = support_encoder_of(model)
                except TypeError as exc:
                    raise ValueError(
                        f'checkpoint {self._weights_path}: {exc}') from None
                encoder.check_fits(
                    stored, f'the support set of checkpoint '
                    f'{self._weights_path}')
            check_weights_fit(model, state_dict, self._weights_path)
        super()._load_weights_to_model(model, checkpoint, cfg)
