"""mmdet 3.3.0's own analysis tools on the plugin's configs and checkpoints.

Run as python runs them, in this process (``run_tool_here``; the seaborn
case in a fresh one): the scripts of the installed mmdet
(``<mmdet>/.mim/tools/analysis_tools/``, what ``mim run mmdet <tool>`` and a
mmdet checkout's ``tools/analysis_tools`` hold), unchanged. The configs'
``custom_imports`` registers the plugin; a stage-2 checkpoint carries its
support set, so no hook is needed where a tool builds the model itself.
``benchmark.py --task inference`` needs CUDA (mmdet moves the model with
``.cuda()``); its CPU tasks are tested here.
"""
import glob
import importlib.util
import os.path as osp
import sys

import pytest
from _tool_helpers import describe, run, run_tool_here, tool_env

pytestmark = pytest.mark.slow


def mmdet_tool(name: str) -> str:
    import mmdet
    path = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools', name)
    if not osp.isfile(path):
        pytest.skip(f'mmdet ships no tools/analysis_tools/{name}')
    return path


def run_mmdet_tool(name, args, cwd):
    return run_tool_here(mmdet_tool(name), args, str(cwd))


def test_get_flops(stage2_model, tmp_path):
    """FLOPs of the detector on dataset images (the diffusion head samples
    rather than computes a map, so FewShotRoIHead leaves it out of the
    traced ``tensor`` mode)."""
    proc = run_mmdet_tool('get_flops.py',
                          [stage2_model['config'], '--num-images', '2'],
                          tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert 'Flops: ' in proc.stdout and 'Params: ' in proc.stdout, (
        describe(proc))


@pytest.mark.parametrize('task', ['dataloader', 'dataset'])
def test_benchmark_cpu_tasks(stage2_model, tmp_path, task):
    proc = run_mmdet_tool('benchmark.py', [
        stage2_model['config'], '--task', task, '--max-iter', '3',
        '--log-interval', '1', '--num-warmup', '1'
    ], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert 'Overall fps' in proc.stdout + proc.stderr, describe(proc)


def test_browse_dataset(stage2_model, tmp_path):
    """The stage-2 training set (base set + K-shot novel instances)."""
    out = tmp_path / 'browse'
    proc = run_mmdet_tool(
        'browse_dataset.py',
        [stage2_model['config'], '--not-show', '--output-dir',
         str(out)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert len(glob.glob(str(out / '*.png'))) > 0, describe(proc)


def test_confusion_matrix(stage2_model, tmp_path):
    """From the predictions tools/test.py --out dumped."""
    proc = run_mmdet_tool('confusion_matrix.py', [
        stage2_model['config'], stage2_model['runner_pkl'],
        str(tmp_path), '--score-thr', '0'
    ], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert (tmp_path / 'confusion_matrix.png').is_file(), describe(proc)


def test_analyze_logs(stage2_model, tmp_path):
    """The json log of the training run (mmengine's scalars.json).

    The script imports seaborn (an optional mmdet dependency, absent from
    this project's environment) only to call ``sns.set_style``; without it a
    stub that does nothing stands in, since what is tested is that the
    plugin's logs parse and plot."""
    env = None
    if importlib.util.find_spec('seaborn') is None:
        (tmp_path / 'seaborn.py'
         ).write_text('def set_style(*args, **kwargs):\n    pass\n')
        env = tool_env(pythonpath=[str(tmp_path)])
    logs = glob.glob(
        osp.join(stage2_model['work_dir'], '*', 'vis_data', 'scalars.json'))
    assert len(logs) == 1, logs
    # a fresh process: the stub is found through PYTHONPATH
    proc = run([sys.executable, mmdet_tool('analyze_logs.py'),
                'cal_train_time', logs[0]], str(tmp_path), env=env)
    assert proc.returncode == 0, describe(proc)
    assert 'average iter time' in proc.stdout, describe(proc)
    out = tmp_path / 'loss.png'
    proc = run([
        sys.executable,
        mmdet_tool('analyze_logs.py'), 'plot_curve', logs[0], '--keys',
        'loss_mask', '--out',
        str(out)
    ], str(tmp_path), env=env)
    assert proc.returncode == 0, describe(proc)
    assert out.is_file(), describe(proc)
