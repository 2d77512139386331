"""The README's main command, ``tools/run_demo.py`` (what ``make demo``
runs), end to end at a few iterations: it generates the embedded dataset,
trains every stage through the COCO configs (with ``--with-twin`` also the
regression twin), tests the mask heads under numbered step headers and
writes the tables (last),
``results.json`` and the trajectory PNG."""
import json
import os.path as osp

import pytest
from _tool_helpers import describe, run_tool
from mmengine.config import Config

pytestmark = pytest.mark.slow

SPLITS = ('base', 'novel', 'all')
#: the trained mask heads (--with-twin adds the regression twin)
METHODS = ('MaskDiff', 'FCNMaskHead', 'regression twin')


def test_run_demo_end_to_end(tmp_path):
    work_dir = tmp_path / 'work_dir'
    data_root = tmp_path / 'demo_fsis'
    proc = run_tool(
        'run_demo.py', [
            '--work-dir', str(work_dir), '--data-root', str(data_root),
            '--base-iters', '2', '--ft-iters', '2', '--mask-iters', '2',
            '--steps', '1', '--no-untrained', '--no-draw', '--with-twin'
        ],
        cwd=str(tmp_path),
        timeout=600)
    assert proc.returncode == 0, describe(proc)

    # the dataset it generated, and one checkpoint per stage
    assert (data_root / 'annotations' / 'instances_test.json').is_file()
    for stage in ('base_det', 'ft_det', 'maskdiff', 'fcn', 'twin'):
        assert (work_dir / stage / 'iter_2.pth').is_file(), stage
    # each run logged into its own stage's folder (the runners share a
    # process): the config the visualizer saved there is that run's
    for stage in ('base_det', 'ft_det', 'maskdiff', 'fcn', 'twin',
                  'oracle_maskdiff', 'oracle_fcn', 'oracle_twin'):
        logged = list((work_dir / stage).glob('*/vis_data/config.py'))
        assert logged, stage
        for path in logged:
            assert Config.fromfile(str(path)).work_dir == str(
                work_dir / stage), path
    # stage 1b started from TFA's novel-row initialisation of stage 1a
    assert (work_dir / 'ft_det' / 'iter_2_novel-init.pth').is_file()
    assert 'novel init: removed roi_head.bbox_head.fc_cls.bias' in proc.stdout

    # one numbered header per step, in order; the tables come last
    lines = proc.stdout.splitlines()
    headers = [line for line in lines if line.startswith('== [')]
    assert len(headers) == 14, headers
    assert headers[0] == '== [1/14] synthetic dataset (easy): ' \
        f'{data_root} =='
    assert '== [7/14] stage 2: regression twin mask head (2 iters) ==' in (
        headers)
    assert headers[-1] == '== [14/14] results =='
    assert lines.index(headers[-1]) > lines.index(headers[-2])

    # loading stage 1b into a model with a mask head: one line each, not
    # mmengine's list of the head's weights
    # (the untrained diffusion head's test gets the same line: test_demo/)
    for note in ('MaskDiff before training', 'FCNMaskHead before training',
                 'regression twin before training'):
        expected = [
            line for line in lines if line.startswith(f'[demo] {note}: ')
            and line.endswith('mask-head weights not in the checkpoint, as '
                              'expected (they keep their initialisation)')
        ]
        assert len(expected) == 1, (note, describe(proc))
    missing = [
        line for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith('missing keys in source state_dict')
    ]
    assert missing, 'the other stage-1 loads report their missing keys'
    assert not any('roi_head.mask_head.' in line for line in missing)

    # the printed table: every head, every split
    header = [
        i for i, line in enumerate(lines)
        if line.startswith('| method | split | bbox AP')
    ]
    assert len(header) == 1, describe(proc)
    table = lines[header[0]:header[0] + 2 + len(METHODS) * len(SPLITS)]
    for method in METHODS:
        for split in SPLITS:
            assert any(
                line.startswith(f'| {method} | {split} |') for line in table)
    assert not any('untrained' in line for line in table)  # --no-untrained
    # the oracle-box table of both heads, below the end-to-end one
    oracle = [
        i for i, line in enumerate(lines)
        if line.startswith('| method | split | AP | AP50 | AP75 | AP85 |')
    ]
    assert len(oracle) == 1 and oracle[0] > header[0], describe(proc)
    table = lines[oracle[0]:oracle[0] + 2 + len(METHODS) * len(SPLITS)]
    for method in METHODS:
        for split in SPLITS:
            assert any(
                line.startswith(f'| {method} | {split} |') for line in table)
    assert table[-1] == lines[-1]  # the tables end the output

    report = json.loads((work_dir / 'results.json').read_text())
    assert set(report['summary']) == set(METHODS)
    for method, by_split in report['summary'].items():
        assert set(by_split) == set(SPLITS), method
        for split, columns in by_split.items():
            assert 0.0 <= columns['segm_mAP'] <= 100.0, (method, split)
    assert set(report['oracle_summary']) == set(METHODS)
    for method, by_split in report['oracle_summary'].items():
        assert list(by_split) == list(SPLITS), method
        for split, columns in by_split.items():
            assert 0.0 <= columns['segm_mAP_95'] <= columns['segm_mAP_50']
            assert 0.0 <= columns['mIoU'] <= 100.0, (method, split)
    assert report['configs']['maskdiff'] == osp.join(
        'configs', 'maskdiff', 'coco_5shot.py')
    assert report['settings']['mask_iters'] == 2
    # --steps reached model.test_cfg.rcnn.diffusion_sampling; the hook logs it
    assert report['metrics']['MaskDiff']['diffusion_sampling/steps'] == 1
    assert (work_dir / 'trajectory.png').is_file()
