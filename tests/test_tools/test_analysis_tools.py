"""tools/analysis_tools: the seed aggregation and the benchmarks.

Every tool runs at least once as ``python tools/...`` (``run_tool``); its
further bad-input cases run the same script in this process
(``run_tool_here``), which saves a fresh interpreter per case."""
import json
import math
import os.path as osp
import statistics

import pytest
import torch
from _tiny_maskdiff import save_checkpoint, tiny_config
from _tool_helpers import (REPO, TINY_CONFIG, describe, run_tool,
                           run_tool_here, tool_env)
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmdet_maskdiff  # noqa: F401
from mmdet.registry import MODELS
from mmdet_maskdiff.demo.report import (aggregate_seeds, format_table,
                                        summarize)
from mmdet_maskdiff.testing.small_scale import (cpu_scale_options,
                                                to_cfg_options_args)


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
    runs = {seed: {'novel': {'segm_mAP': v}} for seed, v in enumerate(values)}
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
        'analysis_tools/fsis_seeds.py',
        ['collect', *paths, '--out', str(out)],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    stats = json.loads((tmp_path / 'seeds.json').read_text())
    assert stats['model']['novel']['segm_mAP']['mean'] == pytest.approx(12.0)
    assert stats['model']['novel']['segm_mAP']['n'] == 2
    assert '12.0 ± 2.8' in (tmp_path / 'seeds.md').read_text()
    # and the 95 % interval, 1.96 * 2.83 / sqrt(2) = 3.92
    assert '| novel | ' in proc.stdout and '12.0 ± 3.9' in proc.stdout


def test_fsis_seeds_collect_demo_results_with_oracle_rows(tmp_path):
    """A demo results.json gives the end-to-end rows and, from its
    oracle_summary, '<method>, oracle boxes' rows with AP85/AP95/mIoU."""
    paths = []
    for seed, miou in enumerate([70.0, 80.0]):
        path = tmp_path / f'results{seed}.json'
        path.write_text(
            json.dumps(
                dict(
                    summary=dict(MaskDiff=dict(novel=dict(segm_mAP=10.0))),
                    oracle_summary=dict(
                        MaskDiff=dict(
                            novel=dict(segm_mAP_95=5.0 + seed, mIoU=miou))))))
        paths.append(str(path))
    proc = run_tool_here(
        'analysis_tools/fsis_seeds.py',
        ['collect', *paths, '--out', str(tmp_path / 'seeds')],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    stats = json.loads((tmp_path / 'seeds.json').read_text())
    assert set(stats) == {'MaskDiff', 'MaskDiff, oracle boxes'}
    oracle = stats['MaskDiff, oracle boxes']['novel']
    assert oracle['mIoU']['mean'] == pytest.approx(75.0)
    assert oracle['segm_mAP_95']['mean'] == pytest.approx(5.5)
    table = (tmp_path / 'seeds.md').read_text()
    assert '| split | segm_mAP_95 | mIoU |' in table
    assert '| novel | 5.5 ± 0.7 | 75.0 ± 7.1 |' in table


def test_fsis_seeds_collect_rejects_files_without_metrics(tmp_path):
    path = tmp_path / 'other.json'
    path.write_text(json.dumps({'loss': 1.0}))
    proc = run_tool_here(
        'analysis_tools/fsis_seeds.py',
        ['collect', str(path), '--out',
         str(tmp_path / 's')],
        cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'no FewShotCocoMetric results' in proc.stderr


@pytest.mark.slow
def test_benchmark_quick_mode(tmp_path):
    out = tmp_path / 'bench'
    proc = run_tool_here(
        'analysis_tools/benchmark_mask_head.py',
        ['--quick', '--device', 'cpu', '--out',
         str(out)],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    report = json.loads((tmp_path / 'bench.json').read_text())
    assert report['num_rois'] == 20
    rows = report['rows']
    assert rows[0]['head'] == 'FCNMaskHead' and rows[0]['ratio'] == 1.0
    diffusion = [r for r in rows if r['head'] == 'DiffusionMaskHead']
    assert len(diffusion) == 3 * 2 * 2  # steps x guidance x samples
    assert all(r['seconds'] > 0 for r in rows)
    for row in diffusion:
        assert row['ratio'] == pytest.approx(row['seconds'] /
                                             rows[0]['seconds'])
    assert '| FCNMaskHead |' in (tmp_path / 'bench.md').read_text()


@pytest.mark.parametrize('args, words', [
    (['--num-rois', '0'], ['--num-rois must be >= 1']),  # python tools/...
    (['--steps', '1', '0'], ['--steps must all be >= 1', '[1, 0]']),
    (['--samples', '0'], ['--samples must all be >= 1']),
    (['--repeats', '0'], ['--repeats must be >= 1']),
    (['--warmup', '-1'], ['--warmup must be >= 0']),
    (['--guidance', '-1'], ['--guidance must all be >= 0']),
    (['--budget', '0'], ['--budget must be > 0']),
])
def test_benchmark_mask_head_bad_input_is_one_line(args, words, tmp_path):
    runner = run_tool if args[0] == '--num-rois' else run_tool_here
    proc = runner('analysis_tools/benchmark_mask_head.py',
                  ['--device', 'cpu'] + args, cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / 'work_dirs').exists()


@pytest.mark.parametrize('args, words', [
    (['--iters', '0'], ['--iters must be >= 1']),  # python tools/...
    (['--detections', '0'], ['--detections must be >= 1']),
    (['--warmup', '-1'], ['--warmup must be >= 0']),
    (['--synthetic', 'no_such_dir'], ['no_such_dir', 'make_synthetic_fsis']),
    (['--baseline', 'no_such.py'], ['config file no_such.py does not exist']),
])
def test_benchmark_bad_input_is_one_line(args, words, tmp_path):
    config = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
    runner = run_tool if args[0] == '--iters' else run_tool_here
    proc = runner(
        'analysis_tools/benchmark.py', [config] + args, cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.slow
def test_whole_model_benchmark_cpu_mode(synthetic_data, tmp_path):
    """Both configs of K = 1 through the Runner at CPU scale, one run."""
    config = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
    out = tmp_path / 'whole'
    proc = run_tool_here(
        'analysis_tools/benchmark.py', [
            config, '--synthetic', synthetic_data['root'], '--iters', '2',
            '--warmup', '0', '--detections', '5', '--work-dir',
            str(tmp_path / 'work'), '--out',
            str(out)
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    report = json.loads((tmp_path / 'whole.json').read_text())
    base, maskdiff = report['rows']
    assert (base['mask_head'], maskdiff['mask_head']) == ('FCNMaskHead',
                                                          'DiffusionMaskHead')
    assert base['time_ratio'] == 1.0 and base['memory_ratio'] == 1.0
    assert maskdiff['time_ratio'] == pytest.approx(
        maskdiff['seconds_per_batch'] / base['seconds_per_batch'])
    for row in (base, maskdiff):
        assert row['batches'] == 2 and row['images_per_batch'] == 1
        assert row['images_per_second'] == pytest.approx(
            1 / row['seconds_per_batch'])
        assert 0 < row['mask_share'] <= 1 and row['peak_rss_mb'] > 0
    table = (tmp_path / 'whole.md').read_text()
    assert '| coco_1shot_fcn.py | FCNMaskHead |' in table


@pytest.mark.parametrize('args, words', [
    (['--rois', '0'], ['--rois must be >= 1']),  # python tools/...
    ([osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot_fcn.py')
      ], ['coco_1shot_fcn.py', 'FCNMaskHead, not DiffusionMaskHead']),
])
def test_stage2_memory_bad_input_is_one_line(args, words, tmp_path):
    if not args[0].endswith('.py'):
        args = [osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')] + args
    runner = run_tool if '--rois' in args else run_tool_here
    proc = runner('analysis_tools/stage2_memory.py', args, cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.slow
def test_mask_quality_on_the_fcn_baseline_config(synthetic_data, tmp_path):
    """tools/analysis_tools/mask_quality.py on the FCNMaskHead baseline
    config of the COCO benchmark, at CPU scale through --cfg-options: the
    oracle-box table (base / novel / all) is printed and written."""
    init_default_scope('mmdet')
    config = osp.join(REPO, 'configs', 'maskdiff', 'coco_5shot_fcn.py')
    cfg = Config.fromfile(config)
    options = cpu_scale_options(cfg, synthetic_data['root'], load_from=None)
    cfg.merge_from_dict(options)
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'fcn.pth')
    torch.save(
        dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), ckpt)
    out = tmp_path / 'quality.json'
    proc = run_tool_here(
        'analysis_tools/mask_quality.py', [
            config, ckpt, '--work-dir',
            str(tmp_path / 'work'), '--out',
            str(out), '--cfg-options'
        ] + to_cfg_options_args(options),
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    assert '| coco_5shot_fcn.py | novel |' in proc.stdout, describe(proc)
    report = json.loads(out.read_text())
    assert list(report['summary']) == ['base', 'novel', 'all']
    for row in report['summary'].values():
        assert set(row) == {
            'segm_mAP', 'segm_mAP_50', 'segm_mAP_75', 'segm_mAP_85',
            'segm_mAP_95', 'mIoU'
        }
        assert all(0 <= v <= 100 for v in row.values())
    assert report['metrics']['oracle/all/mIoU'] * 100 == pytest.approx(
        report['summary']['all']['mIoU'], abs=0.05)


@pytest.mark.slow
def test_mask_quality_samples_and_uncertainty(synthetic_data, tmp_path):
    """mask_quality.py on a tiny MaskDiff model whose samples differ (random
    weights, noise-dependent output layer): with num_samples=4 the AP table
    has the mean of 4 samples and one sample, and the uncertainty columns
    are filled and in range; with num_samples=1 AUROC and Spearman read
    n/a and there is no one-sample pass."""
    config = tiny_config(tmp_path, synthetic_data['root'])
    ckpt = save_checkpoint(
        config, str(tmp_path / 'random.pth'), noise_dependent=True)
    name = osp.basename(config)
    out = tmp_path / 'four.json'
    proc = run_tool_here(
        'analysis_tools/mask_quality.py', [
            config, ckpt, '--work-dir',
            str(tmp_path / 'work'), '--out',
            str(out), '--cfg-options',
            'model.test_cfg.rcnn.diffusion_sampling.num_samples=4'
        ],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    for row in (f'| {name} (mean of 4 samples) | novel |',
                f'| {name} (one sample) | novel |'):
        assert proc.stdout.count(row) == 1 + ('mean' in row), describe(proc)
    report = json.loads(out.read_text())
    assert report['num_samples'] == 4
    assert list(report['uncertainty']) == ['base', 'novel', 'all']
    for row in report['uncertainty'].values():
        assert 0 <= row['pixel_error'] <= 1
        assert 0 < row['mean_uncertainty'] <= 0.25
        assert 0 <= row['error_auroc'] <= 1
        assert -1 <= row['iou_spearman'] <= 1
    one = report['one_sample']
    assert list(one['summary']) == ['base', 'novel', 'all']
    assert one['metrics']['uncertainty/all/mean_uncertainty'] == 0.0
    assert one['metrics']['diffusion_sampling/num_samples'] == 1

    out = tmp_path / 'one.json'
    proc = run_tool_here(
        'analysis_tools/mask_quality.py',
        [config, ckpt, '--work-dir',
         str(tmp_path / 'work'), '--out',
         str(out)],
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    # one row in the AP table, one in the uncertainty table
    assert proc.stdout.count(f'| {name} | novel |') == 2, describe(proc)
    assert '| n/a | n/a |' in proc.stdout
    assert 'n/a with num_samples=1' in proc.stdout
    report = json.loads(out.read_text())
    assert report['num_samples'] == 1 and report['one_sample'] is None
    assert set(report['uncertainty']['all']) == {
        'pixel_error', 'mean_uncertainty'
    }


@pytest.mark.slow
def test_mask_quality_input_errors(synthetic_data, tmp_path):
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    env = tool_env(synthetic_data['root'])
    proc = run_tool(
        'analysis_tools/mask_quality.py',
        [TINY_CONFIG, str(ckpt), '--out', 'table.txt'],
        cwd=str(tmp_path),
        env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: --out table.txt: the output file must be a .json')
    proc = run_tool_here(
        'analysis_tools/mask_quality.py', [
            TINY_CONFIG,
            str(ckpt), '--cfg-options', 'test_evaluator.type=VOCMetric'
        ],
        cwd=str(tmp_path),
        env=env)
    assert proc.returncode == 2
    assert 'has no CocoMetric or FewShotCocoMetric' in proc.stderr, describe(
        proc)
