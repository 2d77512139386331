"""Oracle-box mask quality: the config changes and the report tables.

Used by ``tools/analysis_tools/mask_quality.py`` and the demo. The run
itself is ``OracleBoxTestLoop`` (ground-truth boxes and labels, score 1, as
detections), evaluated by :class:`FewShotCocoMetric` (segm AP, AP50, AP75 and
AP at IoU 0.85 / 0.95), :class:`MaskIoUMetric` (mean mask IoU) and
:class:`MaskUncertaintyMetric` (whether the per-pixel uncertainty p(1 - p)
marks the wrong pixels).
"""
from typing import Callable, Dict, Mapping, Optional, Sequence

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from torch import nn

from ..diffusion.sampler_settings import SAMPLER_HOME
from .mask_uncertainty_metric import UNCERTAINTY_COLUMNS

#: segm AP items reported with oracle boxes: COCO's three plus two high-IoU
#: thresholds (MaskDiff's claim is strongest at high IoU)
MASK_QUALITY_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_85', 'mAP_95')
#: the table's columns: segm AP items, then the mean mask IoU
MASK_QUALITY_COLUMNS = tuple(f'segm_{item}'
                             for item in MASK_QUALITY_ITEMS) + ('mIoU', )
_COCO_METRICS = ('CocoMetric', 'FewShotCocoMetric')


#: the ``--cfg-options`` of a run with one sampled mask per RoI
ONE_SAMPLE_OPTIONS = {f'{SAMPLER_HOME}.num_samples': 1}


def samples_per_roi(model: nn.Module) -> Optional[int]:
    """Masks the mask head samples per RoI at test time.

    Args:
        model (nn.Module): A built detector (possibly wrapped by DDP).

    Returns:
        int | None: ``num_samples`` of the sampler settings of a sampling
        head (``DiffusionMaskHead``:
        ``model.test_cfg.rcnn.diffusion_sampling``); None
        for a head that does not sample (FCNMaskHead).
    """
    model = model.module if is_model_wrapper(model) else model
    settings = getattr(getattr(model, 'roi_head', None), 'diffusion_sampling',
                       None)
    return None if settings is None else settings.num_samples


def _metric_type(metric: Mapping) -> str:
    return str(metric.get('type', '')).split('.')[-1]


def apply_mask_quality(cfg: Config) -> None:
    """Turn a test config into an oracle-box mask-quality run, in place.

    ``test_cfg`` becomes ``OracleBoxTestLoop`` (``fp16`` kept) and
    ``test_evaluator`` becomes a segm-only :class:`FewShotCocoMetric` with
    :data:`MASK_QUALITY_ITEMS`, a :class:`MaskIoUMetric` and a
    :class:`MaskUncertaintyMetric`. The COCO metric takes the ``ann_file``
    and ``backend_args`` of the config's ``CocoMetric`` /
    ``FewShotCocoMetric``; all three take the latter's ``class_splits`` (a
    plain ``CocoMetric`` gives the ``all`` split only). IoU thresholds are
    COCO's 0.50:0.95, which hold 0.85 and 0.95.

    Args:
        cfg (Config): A test config (model, test data, test evaluator).

    Raises:
        ValueError: ``test_evaluator`` has no COCO metric.
    """
    evaluators = cfg.get('test_evaluator')
    if isinstance(evaluators, Mapping) and 'metrics' in evaluators:
        evaluators = evaluators['metrics']  # dict(type='Evaluator', ...)
    if isinstance(evaluators, Mapping):
        evaluators = [evaluators]
    coco = [m for m in evaluators or [] if _metric_type(m) in _COCO_METRICS]
    if not coco:
        found = [_metric_type(m) for m in evaluators or []]
        raise ValueError('test_evaluator has no CocoMetric or '
                         f'FewShotCocoMetric (found {found}); oracle-box AP '
                         'uses its ann_file')
    source = coco[0]
    class_splits = (
        source.get('class_splits')
        if _metric_type(source) == 'FewShotCocoMetric' else {})
    cfg.test_evaluator = [
        dict(
            type='FewShotCocoMetric',
            metric='segm',
            ann_file=source.get('ann_file'),
            backend_args=source.get('backend_args'),
            class_splits=class_splits,
            metric_items=list(MASK_QUALITY_ITEMS)),
        dict(type='MaskIoUMetric', class_splits=class_splits),
        dict(type='MaskUncertaintyMetric', class_splits=class_splits),
    ]
    fp16 = (cfg.get('test_cfg') or {}).get('fp16', False)
    cfg.test_cfg = dict(type='OracleBoxTestLoop', fp16=fp16)


def _by_split(metrics: Mapping[str, float], columns: Sequence[str],
              value: Callable[[float], float]) -> Dict[str, Dict[str, float]]:
    """Split -> column -> ``value(v)`` of the ``{prefix}/{split}/{column}``
    keys of ``metrics`` whose column is one of ``columns``; splits in the
    order base, novel, all, then any other."""
    summary: Dict[str, Dict[str, float]] = {}
    for key, raw in metrics.items():
        parts = key.split('/')
        if len(parts) != 3 or parts[2] not in columns or raw is None:
            continue
        summary.setdefault(parts[1], {})[parts[2]] = value(float(raw))
    order = ['base', 'novel', 'all']
    return {
        split: summary[split]
        for split in sorted(
            summary,
            key=lambda s: (order.index(s) if s in order else len(order), s))
    }


def summarize_mask_quality(
        metrics: Mapping[str, float]) -> Dict[str, Dict[str, float]]:
    """Split -> column -> value in percent (one decimal) of an oracle run.

    Args:
        metrics (Mapping): What ``runner.test()`` returned (keys
            ``coco/{split}/segm_mAP_85``, ``oracle/{split}/mIoU`` ...).

    Returns:
        dict: split -> column (:data:`MASK_QUALITY_COLUMNS`) -> percent;
        splits in the order base, novel, all, then any other; values of -1
        (no ground truth in the split) are left out.
    """
    summary = _by_split(metrics, MASK_QUALITY_COLUMNS,
                        lambda v: round(100 * v, 1))
    for split in list(summary):
        summary[split] = {c: v for c, v in summary[split].items() if v >= 0}
        if not summary[split]:
            del summary[split]
    return summary


def summarize_uncertainty(
        metrics: Mapping[str, float]) -> Dict[str, Dict[str, float]]:
    """Split -> column -> value of the uncertainty keys of an oracle run.

    Args:
        metrics (Mapping): What ``runner.test()`` returned (keys
            ``uncertainty/{split}/error_auroc`` ...).

    Returns:
        dict: split -> column (:data:`UNCERTAINTY_COLUMNS`, those the
        metric reported) -> value as reported (fractions, AUROC in [0, 1],
        Spearman's rho in [-1, 1]); splits ordered as
        :func:`summarize_mask_quality`'s.
    """
    return _by_split(metrics, UNCERTAINTY_COLUMNS, lambda v: v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = [
        '| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def format_mask_quality_table(
        summaries: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A Markdown table, one row per (method, split), values in percent.

    Args:
        summaries (Mapping): method -> :func:`summarize_mask_quality`.
    """
    names = [
        c.replace('segm_mAP', 'AP').replace('_', '')
        for c in MASK_QUALITY_COLUMNS
    ]
    rows = [[method, split] + [
        f'{row[c]:.1f}' if c in row else '-' for c in MASK_QUALITY_COLUMNS
    ] for method, summary in summaries.items()
            for split, row in summary.items()]
    return _table(['method', 'split'] + names, rows)


#: header and format of each uncertainty column
_UNCERTAINTY_CELLS = dict(
    pixel_error=('pixel error %', lambda v: f'{100 * v:.1f}'),
    mean_uncertainty=('mean p(1-p)', lambda v: f'{v:.4f}'),
    error_auroc=('AUROC p(1-p) vs error', lambda v: f'{v:.3f}'),
    iou_spearman=('Spearman mean p(1-p) vs 1-IoU', lambda v: f'{v:.3f}'))


def format_uncertainty_table(
        summaries: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A Markdown table of :func:`summarize_uncertainty` rows, one per
    (method, split); an undefined value reads ``n/a``.

    Args:
        summaries (Mapping): method -> :func:`summarize_uncertainty`.
    """
    rows = [[method, split] + [
        _UNCERTAINTY_CELLS[c][1](row[c]) if c in row else 'n/a'
        for c in UNCERTAINTY_COLUMNS
    ] for method, summary in summaries.items()
            for split, row in summary.items()]
    return _table(['method', 'split'] +
                  [_UNCERTAINTY_CELLS[c][0] for c in UNCERTAINTY_COLUMNS],
                  rows)
