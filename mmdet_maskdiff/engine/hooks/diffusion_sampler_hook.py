"""Denoising-trajectory panels and the sampler settings in the metrics."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.hooks import Hook

from mmdet.registry import HOOKS
from mmdet_maskdiff.diffusion.sampler_settings import SAMPLER_HOME
from mmdet_maskdiff.models.mask_heads.diffusion_mask_head import \
    DiffusionMaskHead
from mmdet_maskdiff.models.roi_heads.few_shot_roi_head import (
    TRAJECTORY_REQUEST, TRAJECTORY_RESULT)
from mmdet_maskdiff.visualization import roi_labels, trajectory_panel
from .runner_model import unwrap_model


@HOOKS.register_module()
class DiffusionSamplerHook(Hook):
    """Draw the reverse chain of a ``DiffusionMaskHead`` and log its sampler.

    The sampler itself is set in one place,
    ``model.test_cfg.rcnn.diffusion_sampling`` (e.g. ``--cfg-options
    model.test_cfg.rcnn.diffusion_sampling.steps=8``); this hook does not
    change it, nor any other model state. Training is unaffected. After each
    val/test run it adds the sampler settings to the metrics as
    ``diffusion_sampling/<key>`` so they are logged and returned next to the
    AP they produced. With ``save_trajectory`` it writes a PNG panel of the
    reverse chain for the first RoIs of the first batch (rows: RoIs; columns:
    y_t from noise to the mask, as in the paper's Fig. 3) into
    ``<log_dir>/trajectory/``: the request travels with that batch (a meta
    key of its data samples) and the chain comes back with its predictions.

    Args:
        save_trajectory (bool): Save the trajectory panel. Defaults to False.
        num_trajectory_rois (int): RoIs (rows) in the panel. Defaults to 4.
        trajectory_every (int): Keep every n-th step. Defaults to 1.
        cell_size (int): Pixel side of one panel cell. Defaults to 56.
    """

    priority = 'HIGHEST'  # before RuntimeInfoHook logs the metrics

    def __init__(self,
                 save_trajectory: bool = False,
                 num_trajectory_rois: int = 4,
                 trajectory_every: int = 1,
                 cell_size: int = 56) -> None:
        if isinstance(trajectory_every, bool) or not (
                isinstance(trajectory_every, int) and trajectory_every >= 1):
            raise ValueError('DiffusionSamplerHook: trajectory_every must be '
                             f'an int >= 1, got {trajectory_every!r}')
        self.save_trajectory = save_trajectory
        self.num_trajectory_rois = num_trajectory_rois
        self.trajectory_every = trajectory_every
        self.cell_size = cell_size
        self.saved_paths = []

    @staticmethod
    def _roi_head(runner):
        roi_head = getattr(unwrap_model(runner), 'roi_head', None)
        head = getattr(roi_head, 'mask_head', None)
        if not isinstance(head, DiffusionMaskHead):
            raise TypeError('DiffusionSamplerHook needs a model whose '
                            'roi_head.mask_head is a DiffusionMaskHead, got '
                            f'{type(head).__name__} (no sampler: remove the '
                            'hook from custom_hooks)')
        return roi_head

    def _settings(self, runner) -> dict:
        """The sampler settings the head samples with."""
        return self._roi_head(runner).diffusion_sampling.to_dict()

    def _before_run(self, runner) -> None:
        runner.logger.info(f'DiffusionSamplerHook: {SAMPLER_HOME} = '
                           f'{self._settings(runner)}')

    def _request_trajectory(self, batch_idx: int, data_batch) -> None:
        """Ask for the first batch's reverse chain (a meta key of its data
        samples, which the RoI head reads)."""
        if not self.save_trajectory or batch_idx != 0:
            return
        samples = (data_batch or {}).get('data_samples') or []
        for sample in samples:
            sample.set_metainfo({TRAJECTORY_REQUEST: self.trajectory_every})

    def _after_first_batch(self,
                           runner,
                           batch_idx: int,
                           mode: str,
                           outputs=None) -> None:
        if not self.save_trajectory or batch_idx != 0 or not outputs:
            return
        instances = getattr(outputs[0], 'pred_instances', None)
        trajectory = None if instances is None else instances.metainfo.get(
            TRAJECTORY_RESULT)
        if trajectory is None:
            return
        out_dir = osp.join(runner.log_dir, 'trajectory')
        path = osp.join(out_dir, f'{mode}_{runner.iter}.png')
        mmcv.imwrite(
            self.render(trajectory, self._row_labels(runner, mode, outputs)),
            path)
        self.saved_paths.append(path)
        runner.logger.info(f'DiffusionSamplerHook: trajectory saved to {path}')

    def render(self,
               trajectory: dict,
               row_labels: Optional[Sequence[str]] = None) -> np.ndarray:
        """The labelled panel of :func:`trajectory_panel` (uint8 grey):
        rows x_t and predicted x_0 per RoI (titled ``row_labels``), columns
        the kept steps t and the final mask."""
        return trajectory_panel(
            trajectory,
            row_labels,
            num_rois=self.num_trajectory_rois,
            cell_size=self.cell_size)

    def _row_labels(self, runner, mode: str, outputs) -> Optional[list]:
        """Class and score of the RoIs in the order the head sampled them
        (the batch's detections, image after image)."""
        if not outputs:
            return None
        try:
            labels = torch.cat([s.pred_instances.labels for s in outputs])
            scores = torch.cat([s.pred_instances.scores for s in outputs])
        except (AttributeError, TypeError):
            return None
        classes = getattr(unwrap_model(runner), 'dataset_meta', None)
        classes = (classes or {}).get('classes')
        if classes is None:
            loader = getattr(runner, f'{mode}_dataloader', None)
            meta = getattr(getattr(loader, 'dataset', None), 'metainfo', {})
            classes = meta.get('classes')
        # the trajectory holds the first chunk of RoIs (then other samples)
        chunk = self._settings(runner)['chunk_size']
        return roi_labels(labels.tolist()[:chunk],
                          scores.tolist()[:chunk], classes)

    def _after_run(self, runner, metrics: Optional[dict]) -> None:
        if metrics is None:
            return
        for key, value in self._settings(runner).items():
            if isinstance(value, (int, float)):
                metrics[f'diffusion_sampling/{key}'] = value

    def before_run(self, runner) -> None:
        """Fail before training on a model without a diffusion head (not at
        its first validation)."""
        self._roi_head(runner)

    def before_val_epoch(self, runner) -> None:
        self._before_run(runner)

    def before_test_epoch(self, runner) -> None:
        self._before_run(runner)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._request_trajectory(batch_idx, data_batch)

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._request_trajectory(batch_idx, data_batch)

    def after_val_iter(self,
                       runner,
                       batch_idx,
                       data_batch=None,
                       outputs=None) -> None:
        self._after_first_batch(runner, batch_idx, 'val', outputs)

    def after_test_iter(self,
                        runner,
                        batch_idx,
                        data_batch=None,
                        outputs=None) -> None:
        self._after_first_batch(runner, batch_idx, 'test', outputs)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._after_run(runner, metrics)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._after_run(runner, metrics)
