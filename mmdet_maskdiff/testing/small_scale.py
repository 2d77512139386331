"""Config overrides that run the COCO configs small, on the synthetic dataset.

One home for the small-scale settings shared by the tests, the tools
(``tools/analysis_tools/*``) and the CPU demo (:mod:`mmdet_maskdiff.demo`):
they all use the *same* config files as the COCO benchmark, and
:func:`cpu_scale_options` returns the overrides (dotted keys, the format of
``--cfg-options``) that change only sizes and data:

* every ``FewShotCocoDataset`` in the config (wherever it sits: a data loader,
  a ``ConcatDataset``, a hook) is pointed at the synthetic dataset, with its
  class split (``class_splits='synthetic'``, or ``'synthetic_hard'`` for a
  set made with ``difficulty='hard'``) and a 128-px resize;
* every ``FewShotCocoMetric`` gets the synthetic annotation file (its
  base / novel split follows the dataset's);
* the model keeps its structure (MaskDiffRCNN, FewShotRoIHead, the same heads)
  with a ResNet-18 of 16 base channels, 64-channel FPN, 8 (hard set: 12)
  classes (the novel ones only for a novel-only config), a small UNet on
  28x28 masks, no ImageNet weights (nothing is downloaded);
* the schedule gets ``max_iters`` and a matching lr schedule.

Every value is a scalar, list or tuple, so :func:`to_cfg_options_args` can
also pass them on the command line (``tools/train.py CONFIG --cfg-options
...``).
"""
from typing import Any, Dict, List, Optional

from mmengine.config import Config

from mmdet_maskdiff.datasets.class_splits import resolve_classes
from mmdet_maskdiff.datasets.synthetic_class_splits import (
    SYNTHETIC_CLASSES, SYNTHETIC_SPLIT_NAMES)
from mmdet_maskdiff.datasets.synthetic_fsis import (synthetic_difficulty,
                                                    synthetic_paths)
from mmdet_maskdiff.utils.config_overrides import file_variables
from mmdet_maskdiff.utils.config_tree import iter_config_dicts

IMAGE_SCALE = (128, 128)
NUM_CLASSES = len(SYNTHETIC_CLASSES)

#: model sizes for CPU; keys are relative to ``model.``
MODEL_SIZES = {
    'backbone.depth': 18,
    'backbone.base_channels': 16,
    'backbone.frozen_stages': -1,
    'backbone.norm_eval': False,
    'backbone.init_cfg': None,
    'neck.in_channels': [16, 32, 64, 128],
    'neck.out_channels': 64,
    'rpn_head.in_channels': 64,
    'rpn_head.feat_channels': 64,
    'rpn_head.anchor_generator.scales': [4],
    'roi_head.bbox_roi_extractor.out_channels': 64,
    'roi_head.bbox_roi_extractor.roi_layer.sampling_ratio': 2,
    'roi_head.bbox_head.in_channels': 64,
    'roi_head.bbox_head.fc_out_channels': 256,
    'roi_head.bbox_head.num_classes': NUM_CLASSES,
    'train_cfg.rpn_proposal.nms_pre': 1000,
    'train_cfg.rpn_proposal.max_per_img': 300,
    'train_cfg.rcnn.sampler.num': 128,
    'test_cfg.rpn.nms_pre': 500,
    'test_cfg.rpn.max_per_img': 100,
    'test_cfg.rcnn.max_per_img': 20,
}
DIFFUSION_HEAD_SIZES = {
    'num_classes': NUM_CLASSES,
    'mask_size': 28,
    'prototype_dim': 64,
    # the CPU neck's width, read when region_source is 'feature' / 'both'
    'region_feat_channels': 64,
    'max_train_rois': 64,
    'denoiser.base_channels': 16,
    'denoiser.channel_mults': (1, 2, 2),
    'denoiser.attention_channels': (32, ),
    'denoiser.num_head_channels': 16,
    'denoiser.dropout': 0.0,
    # activation checkpointing saves GPU memory at COCO scale; the CPU model
    # is small, so it would only cost time (results are bit-equal)
    'denoiser.with_cp': False,
}
FCN_HEAD_SIZES = {
    'num_classes': NUM_CLASSES,
    'in_channels': 64,
    'conv_out_channels': 64,
}


def _dataset_options(path: str, dataset: dict, paths: Dict[str, str],
                     split: str, class_splits: str) -> Dict[str, Any]:
    ann = paths['train_ann'] if split == 'train' else paths['test_ann']
    img = paths['train_img_dir'] if split == 'train' else paths['test_img_dir']
    options = {
        f'{path}.data_root': '',
        f'{path}.ann_file': ann,
        f'{path}.data_prefix.img': img,
        f'{path}.class_splits': class_splits,
    }
    if dataset.get('few_shot_root'):
        options[f'{path}.few_shot_root'] = paths['few_shot_root']
    if 'filter_cfg' in dataset:
        options[f'{path}.filter_cfg.min_size'] = 4
    for i, transform in enumerate(dataset.get('pipeline', [])):
        if transform.get('type') == 'RandomChoiceResize':
            options[f'{path}.pipeline.{i}.scales'] = [IMAGE_SCALE]
        elif transform.get('type') == 'Resize':
            options[f'{path}.pipeline.{i}.scale'] = IMAGE_SCALE
    return options


def _num_classes(cfg: Config, class_splits: str) -> int:
    """Size of the synthetic label space of ``cfg``'s training set: all
    classes of the split ``class_splits``, or its novel ones for a
    novel-only config (``classes='NOVEL'``)."""
    for _, node in iter_config_dicts(cfg.to_dict().get('train_dataloader')):
        if node.get('type') == 'FewShotCocoDataset':
            classes = node.get('classes', 'ALL')
            return len(resolve_classes(classes, class_splits)
                       if isinstance(classes, str) else classes)
    return len(resolve_classes('ALL', class_splits))


#: the diffusion head's sizes and keys, also those of its regression twin
#: (the same network on the same inputs)
_DENOISER_HEAD_OPTIONS = (DIFFUSION_HEAD_SIZES, {
    'model.train_cfg.rcnn.mask_size': DIFFUSION_HEAD_SIZES['mask_size']
})
#: per mask-head type: its sizes (keys relative to
#: ``model.roi_head.mask_head``) and the other model keys it needs
MASK_HEAD_OPTIONS = {
    'DiffusionMaskHead': _DENOISER_HEAD_OPTIONS,
    'RegressionMaskHead': _DENOISER_HEAD_OPTIONS,
    'FCNMaskHead': (FCN_HEAD_SIZES, {
        'model.roi_head.mask_roi_extractor.out_channels':
        FCN_HEAD_SIZES['in_channels']
    }),
}


def _model_options(model: dict, num_classes: int) -> Dict[str, Any]:
    options = {f'model.{k}': v for k, v in MODEL_SIZES.items()}
    options['model.roi_head.bbox_head.num_classes'] = num_classes
    mask_head = model.get('roi_head', {}).get('mask_head') or {}
    if not mask_head:
        return options
    head_sizes, other_keys = MASK_HEAD_OPTIONS.get(
        mask_head.get('type'), ({}, {}))
    options.update(
        {f'model.roi_head.mask_head.{k}': v
         for k, v in head_sizes.items()})
    # the head of another type keeps its sizes but gets the label space
    options['model.roi_head.mask_head.num_classes'] = num_classes
    options.update(other_keys)
    return options


def cpu_scale_options(cfg: Config,
                      data_root: str,
                      max_iters: Optional[int] = None,
                      lr: Optional[float] = None,
                      batch_size: int = 8,
                      load_from: Optional[str] = '') -> Dict[str, Any]:
    """Overrides that run ``cfg`` at CPU scale on the synthetic dataset.

    Args:
        cfg (Config): A MaskDiff config (any stage).
        data_root (str): Root written by ``make_synthetic_fsis``; its
            manifest's difficulty sets the class split (``'synthetic'`` or
            ``'synthetic_hard'``) and the number of classes.
        max_iters (int, optional): Training iterations; the lr schedule,
            validation and checkpoint intervals follow. None keeps them.
        lr (float, optional): Base learning rate. None keeps the config's.
        batch_size (int): Training batch size. Defaults to 8.
        load_from (str, optional): Checkpoint of the previous stage; ''
            keeps the config's value, None loads nothing.

    Returns:
        dict: Dotted keys for ``Config.merge_from_dict`` /
        ``--cfg-options``.
    """
    paths = synthetic_paths(data_root)
    difficulty = synthetic_difficulty(data_root)
    class_splits = SYNTHETIC_SPLIT_NAMES[difficulty]
    options: Dict[str, Any] = {}
    variables = file_variables(cfg)  # read already: setting them does nothing
    tree = {k: v for k, v in cfg.to_dict().items() if k not in variables}
    for path, node in iter_config_dicts(tree):
        kind = node.get('type')
        if kind == 'FewShotCocoDataset':
            split = 'test' if node.get('test_mode') else 'train'
            options.update(
                _dataset_options(path, node, paths, split, class_splits))
        elif kind == 'FewShotCocoMetric':
            options[f'{path}.ann_file'] = paths['test_ann']
        elif kind == 'SupportSetHook':
            options[f'{path}.max_train_per_class'] = 60
    options.update(_model_options(cfg.model, _num_classes(cfg, class_splits)))
    options.update({
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.batch_size': 8,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.batch_size': 8,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'default_hooks.logger.interval': 10,
        'log_processor.window_size': 10,
        'default_hooks.visualization.draw': False,
    })
    if max_iters is not None:
        options.update(_schedule_options(cfg, max_iters))
    if lr is not None:
        options['optim_wrapper.optimizer.lr'] = lr
    if load_from != '':
        options['load_from'] = load_from
    return options


def _schedule_options(cfg: Config, max_iters: int) -> Dict[str, Any]:
    """Scale the iteration schedule of ``cfg`` to ``max_iters``."""
    options: Dict[str, Any] = {
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': max_iters,
        'default_hooks.checkpoint.interval': max_iters,
    }
    old = cfg.train_cfg.max_iters
    schedulers: List[dict] = []
    for scheduler in cfg.get('param_scheduler', []):
        scheduler = dict(scheduler)
        if scheduler['type'] == 'LinearLR':
            scheduler['end'] = min(scheduler['end'], max(1, max_iters // 10))
        elif scheduler['type'] == 'MultiStepLR':
            scheduler['end'] = max_iters
            scheduler['milestones'] = [
                int(m * max_iters / old) for m in scheduler['milestones']
            ]
        schedulers.append(scheduler)
    options['param_scheduler'] = schedulers
    return options


def _format_value(value: Any) -> str:
    """``--cfg-options`` syntax of a scalar, list or tuple (no spaces)."""
    if isinstance(value, list):
        return '[' + ','.join(_format_value(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ','.join(_format_value(v) for v in value) + ',)'
    if isinstance(value, dict):
        raise TypeError('dict values cannot be passed with --cfg-options')
    return str(value)


def to_cfg_options_args(options: Dict[str, Any]) -> List[str]:
    """``key=value`` strings for ``tools/train.py ... --cfg-options``.

    ``param_scheduler`` (a list of dicts) is left out: the config's own
    schedule then applies, cut short by ``train_cfg.max_iters``.
    """
    return [
        f'{key}={_format_value(value)}' for key, value in options.items()
        if key != 'param_scheduler'
    ]
