"""Denoising-trajectory panels and the sampler settings in the metrics."""
import logging
import os.path as osp
import warnings
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdet.registry import HOOKS
from mmdet_maskdiff.diffusion.sampler_settings import SAMPLER_HOME
from mmdet_maskdiff.models.mask_heads.diffusion_mask_head import \
    DiffusionMaskHead
from mmdet_maskdiff.visualization import roi_labels, trajectory_panel
from .runner_model import unwrap_model


@HOOKS.register_module()
class DiffusionSamplerHook(Hook):
    """Draw the reverse chain of a ``DiffusionMaskHead`` and log its sampler.

    The sampler itself is set in one place, ``model.test_cfg.rcnn.sampler``
    (e.g. ``--cfg-options model.test_cfg.rcnn.sampler.steps=8``); this hook
    does not change it. Training is unaffected. Before each val/test run the
    hook drops the RoI head's cached support encoding (the weights may have
    changed); after the run it adds the sampler settings to the metrics as
    ``sampler/<key>`` so they are logged and returned next to the AP they
    produced. With ``save_trajectory`` it writes a PNG panel of the reverse
    chain for the first RoIs of the first batch (rows: RoIs; columns: y_t from
    noise to the mask, as in the paper's Fig. 3) into
    ``<log_dir>/trajectory/``.

    Args:
        sampler (dict, optional): Deprecated (one release): settings that
            are merged into the RoI head's ``test_cfg.sampler`` before each
            run, with a ``DeprecationWarning``. Set
            ``model.test_cfg.rcnn.sampler`` instead.
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
        self.deprecated_sampler = dict(sampler or {})
        # the hook's own trajectory_every / save_trajectory decide capture
        self.deprecated_sampler.pop('trajectory_every', None)
        if self.deprecated_sampler:
            message = (
                'DiffusionSamplerHook: sampler is deprecated; move '
                f'{sorted(self.deprecated_sampler)} to {SAMPLER_HOME} '
                '(until then the hook copies them there before each run)')
            warnings.warn(message, DeprecationWarning)
            print_log(message, logger='current', level=logging.WARNING)
        self.save_trajectory = save_trajectory
        self.num_trajectory_rois = num_trajectory_rois
        self.trajectory_every = trajectory_every
        self.cell_size = cell_size
        self.saved_paths = []

    def _mask_head(self, runner):
        roi_head = getattr(unwrap_model(runner), 'roi_head', None)
        head = getattr(roi_head, 'mask_head', None)
        if not isinstance(head, DiffusionMaskHead):
            raise TypeError('DiffusionSamplerHook needs a model whose '
                            'roi_head.mask_head is a DiffusionMaskHead, got '
                            f'{type(head).__name__} (no sampler: remove the '
                            'hook from custom_hooks)')
        return head

    @staticmethod
    def _test_cfg(runner) -> Optional[ConfigDict]:
        return getattr(unwrap_model(runner).roi_head, 'test_cfg', None)

    def _settings(self, runner) -> dict:
        """The sampler settings the head samples with."""
        head = self._mask_head(runner)
        return head.sampler_settings(self._test_cfg(runner)).to_dict()

    def _before_run(self, runner) -> None:
        head = self._mask_head(runner)
        roi_head = unwrap_model(runner).roi_head
        if self.deprecated_sampler:  # the old home, for one release
            test_cfg = self._test_cfg(runner)
            if test_cfg is None:
                test_cfg = roi_head.test_cfg = ConfigDict()
            merged = dict(test_cfg.get('sampler') or {},
                          **self.deprecated_sampler)
            head.sampler_settings(ConfigDict(sampler=merged))  # validate
            test_cfg.sampler = merged
        head.trajectory_every = (
            self.trajectory_every if self.save_trajectory else None)
        if hasattr(roi_head, 'invalidate_support_cache'):
            roi_head.invalidate_support_cache()
        runner.logger.info(f'DiffusionSamplerHook: {self._settings(runner)}')

    def _after_first_batch(self,
                           runner,
                           batch_idx: int,
                           mode: str,
                           outputs=None) -> None:
        if not self.save_trajectory or batch_idx != 0:
            return
        head = self._mask_head(runner)
        trajectory = head.last_trajectory
        head.trajectory_every = None  # the rest runs at full speed
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
                metrics[f'sampler/{key}'] = value

    def before_run(self, runner) -> None:
        """Fail before training on a model without a diffusion head (not at
        its first validation)."""
        self._mask_head(runner)

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
