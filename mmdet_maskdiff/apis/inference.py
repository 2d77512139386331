"""Single-image inference helpers for ``tools/image_demo.py``.

* :func:`set_test_sampler` — change the test-time sampler of a loaded model
  (its one home: the RoI head's ``test_cfg.sampler``, from
  ``model.test_cfg.rcnn.sampler``) and the trajectory capture;
* :func:`check_weights_fit` — refuse, in one line, a checkpoint whose weights
  are not those of the config's model (mmengine loads non-strictly and only
  logs missing / unexpected keys, which would give silently wrong masks);
* :class:`MaskDiffInferencer` — mmdet's ``DetInferencer`` with that check.
"""
from typing import Mapping, Optional

from mmengine.config import ConfigDict

from mmdet.apis import DetInferencer

from mmdet_maskdiff.models.roi_heads.stored_support import (
    STATE_KEY, read_from_state_dict)


def set_test_sampler(model,
                     steps: Optional[int] = None,
                     guidance_weight: Optional[float] = None,
                     num_samples: Optional[int] = None,
                     trajectory_every: Optional[int] = None,
                     **settings) -> dict:
    """Change the test-time sampler of a loaded model; None keeps a setting.

    The settings are written to ``model.roi_head.test_cfg.sampler`` (what
    ``model.test_cfg.rcnn.sampler`` of the config built), checked first.

    Args:
        model (MaskDiffRCNN): A loaded model.
        steps (int, optional): Respaced DDIM / DDPM steps.
        guidance_weight (float, optional): Classifier-free guidance w.
        num_samples (int, optional): Masks sampled per RoI (> 1 gives
            ``mask_uncertainty``).
        trajectory_every (int, optional): Keep every n-th step of the first
            chunk's reverse chain in ``mask_head.last_trajectory``.
        **settings: Other sampler keys (``seed``, ``chunk_size``, ``fast``,
            ...; see :mod:`mmdet_maskdiff.diffusion.sampler_settings`).

    Returns:
        dict: The sampler settings now in use.

    Raises:
        ValueError: the model has no diffusion mask head, or a key or value
            is bad (one line).
    """
    roi_head = getattr(model, 'roi_head', None)
    head = getattr(roi_head, 'mask_head', None)
    if not hasattr(head, 'sampler_settings'):
        raise ValueError('sampler settings need a model whose '
                         'roi_head.mask_head is a DiffusionMaskHead, got '
                         f'{type(head).__name__}')
    settings.update(
        steps=steps, guidance_weight=guidance_weight, num_samples=num_samples)
    test_cfg = roi_head.test_cfg
    if test_cfg is None:
        test_cfg = roi_head.test_cfg = ConfigDict()
    sampler = dict(test_cfg.get('sampler') or {})
    sampler.update({k: v for k, v in settings.items() if v is not None})
    head.sampler_settings(ConfigDict(sampler=sampler))  # check first
    test_cfg.sampler = sampler
    if trajectory_every is not None:
        head.trajectory_every = trajectory_every
    return get_test_sampler(model)


def get_test_sampler(model) -> dict:
    """The complete test-time sampler settings a loaded model samples with
    (defaults filled in)."""
    roi_head = model.roi_head
    return roi_head.mask_head.sampler_settings(roi_head.test_cfg).to_dict()


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
        **kwargs: Other arguments of ``DetInferencer``.
    """

    def __init__(self, model: str, weights: str, **kwargs) -> None:
        self._weights_path = weights
        super().__init__(model=model, weights=weights, **kwargs)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict],
                               cfg) -> None:
        if checkpoint is not None:
            state_dict = checkpoint.get('state_dict', checkpoint)
            if not isinstance(state_dict, Mapping):
                raise ValueError(f'checkpoint {self._weights_path} holds no '
                                 'state dict')
            # the support set first: its message names the config to use
            stored = read_from_state_dict(state_dict, 'roi_head.')
            roi_head = getattr(model, 'roi_head', None)
            if stored is not None and hasattr(roi_head, 'check_support_fits'):
                roi_head.check_support_fits(
                    stored, f'the support set of checkpoint '
                    f'{self._weights_path}')
            check_weights_fit(model, state_dict, self._weights_path)
        super()._load_weights_to_model(model, checkpoint, cfg)
