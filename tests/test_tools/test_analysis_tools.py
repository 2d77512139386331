"""tools/analysis_tools: the seed aggregation and the mask-head benchmark."""
import json
import math
import statistics

import pytest
from _tool_helpers import describe, run_tool

from mmdet_maskdiff.demo.report import (aggregate_seeds, format_table,
                                        summarize)


def _metrics(novel_segm: float, base_segm: float) -> dict:
    return {
        'coco/novel/segm_mAP': novel_segm,
        'coco/base/segm_mAP': base_segm,
        'coco/all/segm_mAP': (novel_segm + 3 * base_segm) / 4,
        'coco/novel/bbox_mAP': 0.5,
    }


def test_summarize_picks_split_columns_in_percent():
    summary = summarize({'m': _metrics(0.1234, 0.5)})
    assert summary['m']['novel']['segm_mAP'] == 12.3
    assert summary['m']['base']['segm_mAP'] == 50.0
    assert 'segm_mAP_50' not in summary['m']['novel']
    table = format_table(summary)
    assert '| m | novel | 50.0 | - | - | 12.3 | - | - |' in table


def test_aggregate_seeds_mean_std_interval():
    values = [2.0, 3.0, 7.0]
    runs = {
        seed: {'novel': {'segm_mAP': v}}
        for seed, v in enumerate(values)
    }
    cell = aggregate_seeds(runs)['novel']['segm_mAP']
    std = statistics.stdev(values)  # sample std, n - 1
    assert cell['mean'] == pytest.approx(4.0)
    assert cell['std'] == pytest.approx(round(std, 2))
    assert cell['ci95'] == pytest.approx(round(1.96 * std / math.sqrt(3), 2))
    assert (cell['n'], cell['min'], cell['max']) == (3, 2.0, 7.0)


def test_fsis_seeds_collect(tmp_path):
    paths = []
    for seed, novel in enumerate([0.10, 0.14]):
        path = tmp_path / f'seed{seed}.json'
        path.write_text(json.dumps(_metrics(novel, 0.3)))
        paths.append(str(path))
    out = tmp_path / 'seeds'
    proc = run_tool(
        'analysis_tools/fsis_seeds.py', ['collect', *paths, '--out',
                                         str(out)],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    stats = json.loads((tmp_path / 'seeds.json').read_text())
    assert stats['model']['novel']['segm_mAP']['mean'] == pytest.approx(12.0)
    assert stats['model']['novel']['segm_mAP']['n'] == 2
    assert '12.0 ± 2.8' in (tmp_path / 'seeds.md').read_text()
    # and the 95 % interval, 1.96 * 2.83 / sqrt(2) = 3.92
    assert '| novel | ' in proc.stdout and '12.0 ± 3.9' in proc.stdout


def test_fsis_seeds_collect_rejects_files_without_metrics(tmp_path):
    path = tmp_path / 'other.json'
    path.write_text(json.dumps({'loss': 1.0}))
    proc = run_tool('analysis_tools/fsis_seeds.py',
                    ['collect', str(path), '--out',
                     str(tmp_path / 's')], cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'no FewShotCocoMetric results' in proc.stderr


@pytest.mark.slow
def test_benchmark_quick_mode(tmp_path):
    out = tmp_path / 'bench'
    proc = run_tool(
        'analysis_tools/benchmark_mask_head.py',
        ['--quick', '--device', 'cpu', '--out', str(out)],
        cwd=str(tmp_path),
        timeout=300)
    assert proc.returncode == 0, describe(proc)
    report = json.loads((tmp_path / 'bench.json').read_text())
    assert report['num_rois'] == 20
    rows = report['rows']
    assert rows[0]['head'] == 'FCNMaskHead' and rows[0]['ratio'] == 1.0
    diffusion = [r for r in rows if r['head'] == 'DiffusionMaskHead']
    assert len(diffusion) == 3 * 2 * 2  # steps x guidance x samples
    assert all(r['seconds'] > 0 for r in rows)
    for row in diffusion:
        assert row['ratio'] == pytest.approx(
            row['seconds'] / rows[0]['seconds'])
    assert '| FCNMaskHead |' in (tmp_path / 'bench.md').read_text()
