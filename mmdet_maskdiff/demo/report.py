"""Tables of base / novel / all AP from FewShotCocoMetric results."""
import math
from typing import Dict, List, Mapping

SPLITS = ('base', 'novel', 'all')
COLUMNS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP',
           'segm_mAP_50', 'segm_mAP_75')


def summarize(results: Mapping[str, Mapping[str, float]],
              prefix: str = 'coco') -> Dict[str, Dict[str, Dict[str, float]]]:
    """Pick the split AP columns out of each method's metrics.

    Args:
        results: method name -> metrics dict returned by ``runner.test()``
            (keys such as ``coco/novel/segm_mAP``).
        prefix: The metric prefix. Defaults to ``'coco'``.

    Returns:
        dict: method -> split -> column -> AP in percent (one decimal);
        columns a method does not report are left out.
    """
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    for method, metrics in results.items():
        summary[method] = {}
        for split in SPLITS:
            row = {}
            for column in COLUMNS:
                value = metrics.get(f'{prefix}/{split}/{column}')
                if value is not None:
                    row[column] = round(100 * float(value), 1)
            summary[method][split] = row
    return summary


def format_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]]
                 ) -> str:
    """A Markdown table: one row per (method, split), AP in percent."""
    header = '| method | split | ' + ' | '.join(
        c.replace('_mAP', ' AP').replace('_', '') for c in COLUMNS) + ' |'
    lines: List[str] = [header, '|' + ' --- |' * (len(COLUMNS) + 2)]
    for method, splits in summary.items():
        for split in SPLITS:
            row = splits.get(split, {})
            cells = [
                f'{row[c]:.1f}' if c in row else '-' for c in COLUMNS
            ]
            lines.append(f'| {method} | {split} | ' + ' | '.join(cells) +
                         ' |')
    return '\n'.join(lines)


def _columns_of(runs: Mapping[int, Mapping[str, Mapping[str, float]]]
                ) -> List[str]:
    """:data:`COLUMNS`, then any other column of ``runs`` (e.g. the oracle
    table's ``segm_mAP_85``, ``mIoU``) in the order first seen."""
    columns = list(COLUMNS)
    for run in runs.values():
        for row in run.values():
            columns += [c for c in row if c not in columns]
    return columns


def aggregate_seeds(runs: Mapping[int, Mapping[str, Mapping[str, float]]]
                    ) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean, std and 95% interval of split AP over seeds.

    The interval is 1.96·std/√n, the convention of MTFA/iMTFA; DCFS reports
    the std itself — both are given so numbers compare with either.

    Args:
        runs: seed -> split -> column -> AP (one method's ``summarize`` row,
            or an oracle-box ``summarize_mask_quality`` row).

    Returns:
        dict: split -> column -> dict(mean, std, ci95, n, min, max).
    """
    stats: Dict[str, Dict[str, Dict[str, float]]] = {}
    columns = _columns_of(runs)
    for split in SPLITS:
        for column in columns:
            values = [
                run[split][column] for run in runs.values()
                if column in run.get(split, {})
            ]
            if not values:
                continue
            n = len(values)
            mean = sum(values) / n
            std = math.sqrt(sum((v - mean)**2 for v in values) /
                            (n - 1)) if n > 1 else 0.0
            stats.setdefault(split, {})[column] = dict(
                mean=round(mean, 2),
                std=round(std, 2),
                ci95=round(1.96 * std / math.sqrt(n), 2),
                n=n,
                min=min(values),
                max=max(values))
    return stats


def format_seed_table(stats: Mapping[str, Mapping[str, Mapping[str, float]]]
                      ) -> str:
    """Markdown: one row per split, cells ``mean ± std``."""
    columns = [
        c for c in _columns_of({0: stats})
        if any(c in s for s in stats.values())
    ]
    lines = [
        '| split | ' + ' | '.join(columns) + ' |',
        '|' + ' --- |' * (len(columns) + 1)
    ]
    for split in SPLITS:
        if split not in stats:
            continue
        cells = []
        for column in columns:
            cell = stats[split].get(column)
            cells.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}"
                         if cell else '-')
        lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
