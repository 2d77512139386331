"""Single-image inference helpers for ``tools/image_demo.py``.

* :func:`set_test_sampler` — the test-time sampler settings of a loaded
  model, in one place (so the demo can be re-pointed when the sampler gets a
  single home in the config);
* :func:`check_weights_fit` — refuse, in one line, a checkpoint whose weights
  are not those of the config's model (mmengine loads non-strictly and only
  logs missing / unexpected keys, which would give silently wrong masks);
* :class:`MaskDiffInferencer` — mmdet's ``DetInferencer`` with that check.
"""
from typing import Mapping, Optional

from mmdet.apis import DetInferencer

from mmdet_maskdiff.models.roi_heads.stored_support import (
    STATE_KEY, read_from_state_dict)


def set_test_sampler(model,
                     steps: Optional[int] = None,
                     guidance_weight: Optional[float] = None,
                     num_samples: Optional[int] = None,
                     trajectory_every: Optional[int] = None) -> dict:
    """Change the diffusion mask head's test-time sampler; None keeps a
    setting.

    Args:
        model (MaskDiffRCNN): A loaded model.
        steps (int, optional): Respaced DDIM / DDPM steps.
        guidance_weight (float, optional): Classifier-free guidance w.
        num_samples (int, optional): Masks sampled per RoI (> 1 gives
            ``mask_uncertainty``).
        trajectory_every (int, optional): Keep every n-th step of the first
            chunk's reverse chain in ``mask_head.last_trajectory``.

    Returns:
        dict: The sampler settings now in use.

    Raises:
        ValueError: the model has no diffusion mask head, or a value is out
            of range.
    """
    head = getattr(getattr(model, 'roi_head', None), 'mask_head', None)
    if not hasattr(head, 'set_sampler'):
        raise ValueError('sampler settings need a model whose '
                         'roi_head.mask_head is a DiffusionMaskHead, got '
                         f'{type(head).__name__}')
    settings = dict(
        steps=steps,
        guidance_weight=guidance_weight,
        num_samples=num_samples,
        trajectory_every=trajectory_every)
    head.set_sampler(**{k: v for k, v in settings.items() if v is not None})
    return dict(head.sampler_cfg)


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
