"""Oracle-box mask quality: the config changes and the report table.

Used by ``tools/analysis_tools/mask_quality.py`` and the demo. The run
itself is ``OracleBoxTestLoop`` (ground-truth boxes and labels, score 1, as
detections), evaluated by :class:`FewShotCocoMetric` (segm AP, AP50, AP75 and
AP at IoU 0.85 / 0.95) and :class:`MaskIoUMetric` (mean mask IoU).
"""
from typing import Dict, List, Mapping

from mmengine.config import Config

#: segm AP items reported with oracle boxes: COCO's three plus two high-IoU
#: thresholds (MaskDiff's claim is strongest at high IoU)
MASK_QUALITY_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_85', 'mAP_95')
#: the table's columns: segm AP items, then the mean mask IoU
MASK_QUALITY_COLUMNS = tuple(f'segm_{item}'
                             for item in MASK_QUALITY_ITEMS) + ('mIoU', )
_COCO_METRICS = ('CocoMetric', 'FewShotCocoMetric')


def _metric_type(metric: Mapping) -> str:
    return str(metric.get('type', '')).split('.')[-1]


def apply_mask_quality(cfg: Config) -> None:
    """Turn a test config into an oracle-box mask-quality run, in place.

    ``test_cfg`` becomes ``OracleBoxTestLoop`` (``fp16`` kept) and
    ``test_evaluator`` becomes a segm-only :class:`FewShotCocoMetric` with
    :data:`MASK_QUALITY_ITEMS` plus a :class:`MaskIoUMetric`. Both take the
    ``ann_file`` and ``backend_args`` of the config's ``CocoMetric`` /
    ``FewShotCocoMetric``, and the latter's ``class_splits`` (a plain
    ``CocoMetric`` gives the ``all`` split only). IoU thresholds are COCO's
    0.50:0.95, which hold 0.85 and 0.95.

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
    ]
    fp16 = (cfg.get('test_cfg') or {}).get('fp16', False)
    cfg.test_cfg = dict(type='OracleBoxTestLoop', fp16=fp16)


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
    summary: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split('/')
        if len(parts) != 3 or parts[2] not in MASK_QUALITY_COLUMNS:
            continue
        if value is None or float(value) < 0:
            continue
        summary.setdefault(parts[1], {})[parts[2]] = round(
            100 * float(value), 1)
    order = ['base', 'novel', 'all']
    return {
        split: summary[split]
        for split in sorted(
            summary,
            key=lambda s: (order.index(s) if s in order else len(order), s))
    }


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
    lines: List[str] = [
        '| method | split | ' + ' | '.join(names) + ' |',
        '|' + ' --- |' * (len(names) + 2)
    ]
    for method, summary in summaries.items():
        for split, row in summary.items():
            cells = [
                f'{row[c]:.1f}' if c in row else '-'
                for c in MASK_QUALITY_COLUMNS
            ]
            lines.append(f'| {method} | {split} | ' + ' | '.join(cells) +
                         ' |')
    return '\n'.join(lines)
