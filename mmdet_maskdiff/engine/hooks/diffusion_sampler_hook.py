"""Test-time settings of the diffusion sampler, and trajectory panels."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.hooks import Hook

from mmdet.registry import HOOKS
from mmdet_maskdiff.visualization import roi_labels, trajectory_panel
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

    def _after_first_batch(self,
                           runner,
                           batch_idx: int,
                           mode: str,
                           outputs=None) -> None:
        if not self.save_trajectory or batch_idx != 0:
            return
        head = self._mask_head(runner)
        trajectory = head.last_trajectory
        head.set_sampler(trajectory_every=None)  # the rest runs at full speed
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

    @staticmethod
    def _row_labels(runner, mode: str, outputs) -> Optional[list]:
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
        chunk = unwrap_model(runner).roi_head.mask_head.sampler_cfg.get(
            'chunk_size')
        return roi_labels(labels.tolist()[:chunk],
                          scores.tolist()[:chunk], classes)

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
