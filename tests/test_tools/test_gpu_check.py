"""tools/analysis_tools/gpu_check.py (and fast_path_check.py, whose rows it
runs): the CPU smoke run of every section, the run without OpenMMLab, the
COCO sizes it reads without mmengine, and its one-line input errors."""
import itertools
import json
import os
import os.path as osp
import shutil
import sys
from importlib.util import find_spec

import pytest
import torch
from _tool_helpers import REPO, TOOLS, describe, run, run_tool_here
from mmengine.config import Config, ConfigDict

import mmdet_maskdiff  # noqa: F401  (registers the head)
from mmdet.registry import MODELS
from mmdet_maskdiff.networks import MaskDenoisingUNet

sys.path.insert(0, osp.join(TOOLS, 'analysis_tools'))
from fast_path_check import AMPS, VARIANTS, coco_setups  # noqa: E402
from gpu_check import PAIRS, SECTIONS, SMOKE  # noqa: E402

NO_CUDA = 'skipped: no CUDA'


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """One ``--smoke`` run on the CPU: its report and Markdown."""
    out = tmp_path_factory.mktemp('gpu_check')
    proc = run_tool_here(
        'analysis_tools/gpu_check.py',
        ['--smoke', '--device', 'cpu', '--out',
         str(out)],
        cwd=str(out))
    assert proc.returncode == 0, describe(proc)
    with open(out / 'gpu_check.json') as f:
        report = json.load(f)
    return report, (out / 'gpu_check.md').read_text()


def test_smoke_report_has_every_section(smoke):
    report, markdown = smoke
    assert report['complete'] and set(report['sections']) == set(SECTIONS)
    assert report['environment']['device'] == 'CPU'
    assert report['settings']['smoke'] and report['settings']['repeats'] == 1
    assert 0 < report['elapsed_s']
    for heading in ('## Whole-detector reference', '## Sampler: 6 RoIs',
                    '## Host syncs in the sampling loop',
                    '## Stage-2 training step'):
        assert heading in markdown
    assert report['sections']['host_sync'] == dict(status=NO_CUDA)


def test_smoke_sampler_rows(smoke):
    rows = smoke[0]['sections']['sampler']['rows']
    keys = [(r['denoiser'], r['sampler'], r['variant'], r['amp'])
            for r in rows]
    assert sorted(keys) == sorted(
        (d, s, v, a)
        for (d, s), v, a in itertools.product(PAIRS, VARIANTS, AMPS))
    for row in rows:
        if row['variant'] in ('eager', 'bucket') and row['amp'] == 'off':
            assert row['status'] == 'ok', row
            assert row['ms'] > 0 and row['first_call_s'] > 0
            assert row['promised_bit_equal']
            assert 0.9 <= row['mean_iou'] <= 1 and row['min_iou'] <= 1
        else:  # compiled, CUDA graphs, bf16 autocast: CUDA only
            assert row['status'] == NO_CUDA, row
        if row['variant'] == 'eager' and row['amp'] == 'off':
            # the fp32 eager path against its own reference call
            assert row['bit_equal'] and row['differing_pixels'] == 0.0
            assert row['mean_iou'] == row['min_iou'] == 1.0


def test_smoke_stage2_rows(smoke):
    rows = smoke[0]['sections']['stage2_step']['rows']
    assert [(r['denoiser'], r['with_cp'], r['amp']) for r in rows] == list(
        itertools.product(('paper', 'lite'), (False, True), AMPS))
    count = {}
    for row in rows:
        assert row['status'] == 'ok', row
        assert row['rois'] == SMOKE['train_rois'] and row['ms'] > 0
        assert row['memory'] == NO_CUDA
        assert 0 < row['cpu_count_activations_mib'] < row['cpu_count_mib']
        count[row['denoiser'], row['with_cp'],
              row['amp']] = row['cpu_count_activations_mib']
    for name, amp in itertools.product(('paper', 'lite'), AMPS):
        # checkpointing keeps block inputs only (plus one block again)
        assert count[name, True, amp] < count[name, False, amp]


def test_smoke_detector_reference(smoke):
    detector = smoke[0]['sections']['detector']
    if find_spec('torchvision') is None:
        assert detector == dict(status='skipped: torchvision is not installed')
        assert smoke[0]['environment']['torchvision'] is None
        return
    if detector['status'].startswith('skipped: torchvision does not'):
        return  # e.g. a CUDA build of torchvision beside a CPU torch
    fp32, bf16 = detector['rows']
    assert fp32['status'] == 'ok' and fp32['ms'] > 0
    assert fp32['detections'] == 100 and bf16['status'] == NO_CUDA


def documented_parts():
    """The paths of the ``tar czf`` command of docs/benchmarks.md ("GPU
    rows"): the torch-only parts a bare GPU box needs."""
    with open(osp.join(REPO, 'docs', 'benchmarks.md')) as f:
        commands = [line.split() for line in f
                    if line.startswith('tar czf gpu_check.tgz ')]
    assert len(commands) == 1, 'docs/benchmarks.md: one tar czf command'
    return commands[0][3:]


def test_documented_torch_only_parts_run_without_openmmlab(tmp_path):
    """The GPU box has torch only: a copy of the documented parts runs
    with mmdet, mmengine and mmcv unimportable (``sys.modules[name] =
    None``) and no PYTHONPATH; the package is the copy's."""
    copy = tmp_path / 'parts'
    for part in documented_parts():
        source, target = osp.join(REPO, part), str(copy / part)
        if osp.isdir(source):
            shutil.copytree(
                source, target,
                ignore=shutil.ignore_patterns('__pycache__'))
        else:
            os.makedirs(osp.dirname(target), exist_ok=True)
            shutil.copy(source, target)
    script = str(copy / 'tools' / 'analysis_tools' / 'gpu_check.py')
    code = (
        'import runpy, sys\n'
        "for name in ('mmdet', 'mmengine', 'mmcv'):\n"
        '    sys.modules[name] = None\n'
        f'sys.argv = [{script!r}, "--smoke", "--device", "cpu", '
        '"--sections", "detector", "host_sync", "--out", "out"]\n'
        f'sys.path.insert(0, {osp.dirname(script)!r})\n'
        f"runpy.run_path({script!r}, run_name='__main__')\n"
        "print('package', sys.modules['mmdet_maskdiff'].__file__)\n")
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = run([sys.executable, '-c', code], cwd=str(copy), env=env)
    assert proc.returncode == 0, describe(proc)
    package = copy / 'mmdet_maskdiff' / '__init__.py'
    assert f'package {package}' in proc.stdout, describe(proc)
    with open(copy / 'out' / 'gpu_check.json') as f:
        assert json.load(f)['complete']


@pytest.mark.parametrize('config, name', [('coco_1shot.py', 'paper'),
                                          ('coco_1shot_lite.py', 'lite')])
def test_sizes_read_without_mmengine_are_the_configs(config, name):
    """coco_setups (plain Python on the model file) gives the denoiser,
    diffusion, RoI cap and sampler that mmengine + the head build."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'maskdiff', config))
    setup = coco_setups()[name]
    with torch.device('meta'):
        head = MODELS.build(cfg.model.roi_head.mask_head)
        ours = MaskDenoisingUNet(**setup.denoiser)
    for attribute in ('cond_channels', 'num_classes', 'mask_size',
                      'cond_vector_dim', 'with_cp', 'widths',
                      'attention_channels', 'num_res_blocks'):
        assert getattr(ours, attribute) == getattr(head.denoiser, attribute)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape
        for k, v in head.denoiser.state_dict().items()
    }
    assert setup.denoiser['dropout'] == cfg.model.roi_head.mask_head.\
        denoiser.dropout
    assert setup.num_timesteps == head.num_timesteps
    assert setup.prediction_type == head.diffusion.prediction_type
    assert setup.max_train_rois == head.max_train_rois
    # the same settings once parsed (the config states only what differs
    # from the SamplerSettings defaults; the setup spells them all out)
    assert head.parse_test_cfg(ConfigDict(diffusion_sampling=setup.sampler)) \
        == head.parse_test_cfg(cfg.model.test_cfg.rcnn)


@pytest.mark.parametrize('args, message', [
    (['--device', 'cpu'], 'error: --device cpu is not CUDA: the full sizes '
     'would take hours on the CPU; add --smoke'),
    (['--smoke', '--device', 'cpu', '--budget', '0'],
     'error: --budget must be > 0, got 0.0'),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    proc = run_tool_here('analysis_tools/gpu_check.py',
                         args + ['--out', str(tmp_path)], cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == message


def test_fast_path_check_smoke(tmp_path):
    """fast_path_check.py alone: one denoiser, its own sampler, CPU."""
    out = str(tmp_path / 'fast')
    proc = run_tool_here('analysis_tools/fast_path_check.py', [
        '--smoke', '--device', 'cpu', '--denoiser', 'lite', '--num-rois',
        '5', '--repeats', '1', '--amp', 'off', '--out', out
    ],
                         cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    with open(out + '.json') as f:
        report = json.load(f)
    assert report['sampler']['steps'] == 1  # the lite configs' sampler
    assert [(r['variant'], r['status']) for r in report['rows']] == [
        ('eager', 'ok'), ('bucket', 'ok'), ('compile', NO_CUDA),
        ('cuda_graphs', NO_CUDA)
    ]
    assert report['rows'][0]['bit_equal']
