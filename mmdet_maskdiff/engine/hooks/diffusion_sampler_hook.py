"""Test-time settings of the diffusion sampler, and trajectory panels."""
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
import torch
from mmengine.hooks import Hook

from mmdet.registry import HOOKS
from .runner_model import unwrap_model


@HOOKS.register_module()
class DiffusionSamplerHook(Hook):
    """Set the sampler of a ``DiffusionMaskHead`` for validation and testing.

    Training is unaffected (the head samples only at test time). Before each
    val/test run the hook applies ``sampler`` to the head and drops the RoI
    head's cached support encoding (the weights may have changed); after the
    run it adds the settings to the metrics as ``sampler/<key>`` so they are
    logged and returned next to the AP they produced. With
    ``save_trajectory`` it writes a PNG panel of the reverse chain for the
    first RoIs of the first batch (rows: RoIs; columns: y_t from noise to the
    mask, as in the paper's Fig. 3) into ``<log_dir>/trajectory/``.

    Args:
        sampler (dict, optional): Settings for
            ``DiffusionMaskHead.set_sampler``: ``type``, ``steps``, ``eta``,
            ``guidance_weight``, ``num_samples``, ``seed``, ``chunk_size``.
        save_trajectory (bool): Save the trajectory panel. Defaults to False.
        num_trajectory_rois (int): RoIs (rows) in the panel. Defaults to 4.
        trajectory_every (int): Keep every n-th step. Defaults to 1.
        cell_size (int): Pixel side of one panel cell. Defaults to 56.
    """

    priority = 'HIGHEST'  # before RuntimeInfoHook logs the metrics

    def __init__(self,
                 sampler: Optional[dict] = None,
                 save_trajectory: bool = False,
                 num_trajectory_rois: int = 4,
                 trajectory_every: int = 1,
                 cell_size: int = 56) -> None:
        self.sampler = dict(sampler or {})
        self.save_trajectory = save_trajectory
        self.num_trajectory_rois = num_trajectory_rois
        self.trajectory_every = trajectory_every
        self.cell_size = cell_size
        self.saved_paths = []

    def _mask_head(self, runner):
        roi_head = getattr(unwrap_model(runner), 'roi_head', None)
        head = getattr(roi_head, 'mask_head', None)
        if not getattr(head, 'requires_condition', False):
            raise TypeError('DiffusionSamplerHook needs a model whose '
                            'roi_head.mask_head is a DiffusionMaskHead')
        return head

    def _before_run(self, runner) -> None:
        head = self._mask_head(runner)
        settings = dict(self.sampler)
        settings['trajectory_every'] = (
            self.trajectory_every if self.save_trajectory else None)
        head.set_sampler(**settings)
        roi_head = unwrap_model(runner).roi_head
        if hasattr(roi_head, 'invalidate_support_cache'):
            roi_head.invalidate_support_cache()
        runner.logger.info(f'DiffusionSamplerHook: {self._public(head)}')

    @staticmethod
    def _public(head) -> dict:
        return {
            k: v
            for k, v in head.sampler_cfg.items() if k != 'trajectory_every'
        }

    def _after_first_batch(self, runner, batch_idx: int, mode: str) -> None:
        if not self.save_trajectory or batch_idx != 0:
            return
        head = self._mask_head(runner)
        trajectory = head.last_trajectory
        head.set_sampler(trajectory_every=None)  # the rest runs at full speed
        if trajectory is None:
            return
        out_dir = osp.join(runner.log_dir, 'trajectory')
        path = osp.join(out_dir, f'{mode}_{runner.iter}.png')
        mmcv.imwrite(self.render(trajectory), path)
        self.saved_paths.append(path)
        runner.logger.info(f'DiffusionSamplerHook: trajectory saved to {path}')

    def render(self, trajectory: dict) -> np.ndarray:
        """Panel of y_t: (rows · cell, (steps + 1) · cell) uint8 grey image;
        the last column is the sampled mask (the x̂_0 of the final step, which
        is what the samplers return)."""
        rois = self.num_trajectory_rois
        noisy = trajectory['x_t'][:rois, :, 0]
        sampled = trajectory['pred_x0'][:rois, -1:, 0]
        x_t = torch.cat([noisy, sampled], dim=1)
        x_t = ((x_t.clamp(-1, 1) + 1) * 127.5).byte().cpu().numpy()
        rows, steps, side = x_t.shape[0], x_t.shape[1], x_t.shape[-1]
        scale = max(1, self.cell_size // side)
        cell = side * scale + 2
        panel = np.full((rows * cell, steps * cell), 255, np.uint8)
        for r in range(rows):
            for s in range(steps):
                tile = np.kron(x_t[r, s], np.ones((scale, scale), np.uint8))
                panel[r * cell:r * cell + cell - 2,
                      s * cell:s * cell + cell - 2] = tile
        return panel

    def _after_run(self, runner, metrics: Optional[dict]) -> None:
        if metrics is None:
            return
        for key, value in self._public(self._mask_head(runner)).items():
            if isinstance(value, (int, float)):
                metrics[f'sampler/{key}'] = value

    def before_val_epoch(self, runner) -> None:
        self._before_run(runner)

    def before_test_epoch(self, runner) -> None:
        self._before_run(runner)

    def after_val_iter(self,
                       runner,
                       batch_idx,
                       data_batch=None,
                       outputs=None) -> None:
        self._after_first_batch(runner, batch_idx, 'val')

    def after_test_iter(self,
                        runner,
                        batch_idx,
                        data_batch=None,
                        outputs=None) -> None:
        self._after_first_batch(runner, batch_idx, 'test')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._after_run(runner, metrics)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._after_run(runner, metrics)
