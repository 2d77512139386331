"""A non-editable install ships configs and tools in ``mmdet_maskdiff/.mim``,
and mim finds and runs them.

The package is installed with ``pip install --no-deps --target <tmp>`` from a
copy of the sources (so the build leaves nothing in the repository), and
``PYTHONPATH=<tmp>`` puts that copy in front of the development (editable)
install: mim's ``is_installed``/``get_installed_path`` then resolve to
``<tmp>/mmdet_maskdiff``, as they do for a regular ``pip install .`` into
site-packages.
"""
import os
import os.path as osp
import shutil
import sys

import pytest
from _tool_helpers import REPO, TINY_CONFIG, describe, run, tool_env

pytestmark = pytest.mark.slow

SOURCES = ('setup.py', 'setup.cfg', 'pyproject.toml', 'MANIFEST.in',
           'README.md', 'model-index.yml', 'mmdet_maskdiff', 'configs',
           'tools')
IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim', '*.egg-info',
                                'build', 'work_dirs')


def _mim() -> str:
    found = shutil.which('mim', path=osp.dirname(sys.executable))
    if found is None:
        pytest.skip('openmim is not installed in this environment')
    return found


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The package installed (non-editable) into a temporary target."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=IGNORE)
        elif osp.isfile(path):
            shutil.copy2(path, src / name)
    target = tmp_path_factory.mktemp('site')
    cmd = [
        sys.executable, '-m', 'pip', 'install', '--no-deps',
        '--no-build-isolation', '--no-index', '--disable-pip-version-check',
        '--target', str(target), str(src)
    ]
    proc = run(cmd, str(src), timeout=600)
    assert proc.returncode == 0, describe(proc)
    return str(target)


def _env(target: str, data_root=None) -> dict:
    env = tool_env(data_root, pythonpath=[target])
    # mim imports pkg_resources, which setuptools 80 warns about
    env['PYTHONWARNINGS'] = 'ignore::UserWarning'
    return env


def test_wheel_ships_configs_and_tools(installed):
    mim_dir = osp.join(installed, 'mmdet_maskdiff', '.mim')
    for rel in ('configs/maskdiff/coco_1shot.py',
                'configs/_base_/models/maskdiff_r101_fpn.py', 'tools/train.py',
                'tools/test.py', 'tools/dist_train.sh', 'tools/dist_test.sh'):
        assert osp.isfile(osp.join(mim_dir, rel)), rel
    # every config of the repository is shipped
    for root, _, names in os.walk(osp.join(REPO, 'configs')):
        for name in names:
            if name.endswith('.py'):
                rel = osp.relpath(osp.join(root, name), REPO)
                assert osp.isfile(osp.join(mim_dir, rel)), rel


def test_mim_resolves_installed_copy(installed, tmp_path):
    """mim's lookup and Python's import both find the installed copy (so
    the shipped tools import it, not the source tree)."""
    code = ('from mim.utils import get_installed_path, is_installed\n'
            "print(is_installed('mmdet_maskdiff'))\n"
            "print(get_installed_path('mmdet_maskdiff'))\n"
            'import mmdet_maskdiff\n'
            'print(mmdet_maskdiff.__file__)\n')
    cmd = [sys.executable, '-c', code]
    proc = run(cmd, str(tmp_path), env=_env(installed))
    assert proc.returncode == 0, describe(proc)
    found, path, module = proc.stdout.split()[-3:]
    package = osp.realpath(osp.join(installed, 'mmdet_maskdiff'))
    assert found == 'True'
    assert osp.realpath(path) == package
    assert osp.realpath(module) == osp.join(package, '__init__.py')


def test_installed_demo_finds_shipped_configs(installed, tmp_path):
    """The CPU demo of the installed copy reads the configs shipped in
    ``.mim/configs``: it does not need the checkout."""
    code = ('from mmdet_maskdiff.demo.pipeline import DemoSettings\n'
            "print(DemoSettings().configs()['maskdiff'])\n")
    proc = run([sys.executable, '-c', code],
               str(tmp_path),
               env=_env(installed))
    assert proc.returncode == 0, describe(proc)
    config = osp.join(installed, 'mmdet_maskdiff', '.mim', 'configs',
                      'maskdiff', 'coco_5shot.py')
    assert osp.realpath(proc.stdout.split()[-1]) == osp.realpath(config)


def test_mim_search_lists_every_config(installed, tmp_path):
    """``mim search mmdet_maskdiff`` reads the shipped model-index.yml and
    lists one model per config of configs/maskdiff (no weights yet)."""
    proc = run([_mim(), 'search', 'mmdet_maskdiff'],
               str(tmp_path),
               env=_env(installed))
    assert proc.returncode == 0, describe(proc)
    listed = sorted(line.split(':', 1)[1].strip()
                    for line in proc.stdout.splitlines()
                    if line.startswith('config id:'))
    configs = sorted(name[:-3] for name in os.listdir(
        osp.join(REPO, 'configs', 'maskdiff')) if name.endswith('.py'))
    expected = sorted(
        name if name.startswith('maskdiff_') else f'maskdiff_{name}'
        for name in configs)
    assert listed == expected, describe(proc)
    assert 'weight' not in proc.stdout  # the fields are empty for now


def test_mim_test_finds_config_by_name(installed, tmp_path):
    """``mim test mmdet_maskdiff coco_1shot.py`` picks the shipped config and
    runs the shipped tools/test.py, which stops at the missing checkpoint."""
    cmd = [
        _mim(), 'test', 'mmdet_maskdiff', 'coco_1shot.py', '--checkpoint',
        'x.pth', '--launcher', 'none'
    ]
    proc = run(cmd, str(tmp_path), env=_env(installed))
    output = proc.stdout + proc.stderr
    config = osp.join(installed, 'mmdet_maskdiff', '.mim', 'configs',
                      'maskdiff', 'coco_1shot.py')
    script = osp.join(installed, 'mmdet_maskdiff', '.mim', 'tools', 'test.py')
    assert f'will use {config}' in output, describe(proc)
    assert f'{script} {config} x.pth --launcher none' in output, describe(proc)
    # the shipped test.py ran and rejected the checkpoint in one line
    assert 'error: checkpoint file x.pth does not exist' in proc.stderr, (
        describe(proc))
    assert proc.returncode != 0


def test_mim_train_then_test(installed, synthetic_data, tmp_path):
    """``mim train`` / ``mim test`` run the shipped tools end to end."""
    env = _env(installed, synthetic_data['root'])
    work_dir = str(tmp_path / 'work_dir')
    cmd = [
        _mim(), 'train', 'mmdet_maskdiff', TINY_CONFIG, '--work-dir', work_dir,
        '--launcher', 'none'
    ]
    proc = run(cmd, str(tmp_path), env=env)
    script = osp.join(installed, 'mmdet_maskdiff', '.mim', 'tools', 'train.py')
    assert proc.returncode == 0, describe(proc)
    assert f'Training command is {sys.executable} {script}' in proc.stdout, (
        describe(proc))
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)

    cmd = [
        _mim(), 'test', 'mmdet_maskdiff', TINY_CONFIG, '--checkpoint', ckpt,
        '--work-dir', str(tmp_path / 'test_dir'), '--launcher', 'none'
    ]
    proc = run(cmd, str(tmp_path), env=env)
    assert proc.returncode == 0, describe(proc)
    output = proc.stdout + proc.stderr
    assert 'coco/bbox_mAP' in output and 'coco/segm_mAP' in output, (
        describe(proc))
    assert 'Testing finished successfully' in output, describe(proc)
