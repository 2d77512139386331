"""Which package may import which, checked on the source (ast).

``mmdet_maskdiff.utils`` holds generic helpers: no module in it imports a
sibling package of ``mmdet_maskdiff`` (models, datasets, engine, diffusion,
structures, few_shot, ...), so that any package may use it. Only the stack
fixes of ``compat``, which import nothing of the package, lie below it. The
few_shot rules that the datasets use import nothing above utils.
"""
import ast
import glob
import os.path as osp

import pytest

PACKAGE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'mmdet_maskdiff')
UTILS = osp.join(PACKAGE, 'utils')
#: packages below utils: they import nothing of mmdet_maskdiff
#: (:func:`test_packages_below_utils_import_nothing_of_the_package`)
BELOW = {'compat'}
#: modules still allowed to import a sibling package, each with its reason
EXCEPTIONS = {
    # the --cfg-options key check reads the sampler key table
    # (mmdet_maskdiff.diffusion.sampler_settings) and the few_shot keys
    # (mmdet_maskdiff.few_shot.config_keys); its sampler table is being
    # reworked elsewhere, so it stays here until then
    'config_overrides.py': {'diffusion', 'few_shot'},
}


def _subpackages():
    return {
        osp.basename(osp.dirname(path))
        for path in glob.glob(osp.join(PACKAGE, '*', '__init__.py'))
    }


def _siblings():
    """The subpackages of mmdet_maskdiff that utils may not import."""
    return _subpackages() - {'utils'} - BELOW


def sibling_imports(path, siblings):
    """The sibling packages ``path`` imports (absolute or relative, at any
    depth of the module: function-level imports included)."""
    tree = ast.parse(open(path, encoding='utf-8').read(), filename=path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2:  # from ..models import x
                names = [f'mmdet_maskdiff.{node.module or ""}']
                if not node.module:  # from .. import models
                    names = [f'mmdet_maskdiff.{a.name}' for a in node.names]
            elif node.level == 1:  # inside utils
                continue
            elif node.module == 'mmdet_maskdiff':  # import a subpackage
                names = [f'mmdet_maskdiff.{a.name}' for a in node.names]
            else:
                names = [node.module or '']
        else:
            continue
        for name in names:
            parts = name.split('.')
            if (len(parts) > 1 and parts[0] == 'mmdet_maskdiff'
                    and parts[1] in siblings):
                found.add(parts[1])
    return found


MODULES = sorted(glob.glob(osp.join(UTILS, '*.py')))


def test_the_checker_sees_every_kind_of_import(tmp_path):
    siblings = _siblings()
    assert {'models', 'datasets', 'engine', 'diffusion', 'structures',
            'few_shot'} <= siblings
    source = tmp_path / 'probe.py'
    source.write_text('import mmdet_maskdiff.models.denoisers\n'
                      'from mmdet_maskdiff.datasets import x\n'
                      'from mmdet_maskdiff import engine\n'
                      'from ..structures import y\n'
                      'from .. import diffusion\n'
                      'from .cli_checks import InputError\n'
                      'import mmdet.registry\n'
                      'def f():\n'
                      '    from mmdet_maskdiff.few_shot.sample import z\n')
    assert sibling_imports(str(source), siblings) == {
        'models', 'datasets', 'engine', 'structures', 'diffusion', 'few_shot'
    }


@pytest.mark.parametrize('path', MODULES, ids=osp.basename)
def test_utils_imports_no_sibling_package(path):
    found = sibling_imports(path, _siblings())
    allowed = EXCEPTIONS.get(osp.basename(path), set())
    assert found <= allowed, (
        f'{osp.relpath(path, osp.dirname(PACKAGE))} imports '
        f'mmdet_maskdiff.{sorted(found - allowed)}: utils/ is for generic '
        'helpers; put the module next to what it needs')


def test_packages_below_utils_import_nothing_of_the_package():
    for package in BELOW:
        for path in glob.glob(osp.join(PACKAGE, package, '*.py')):
            assert sibling_imports(path, _subpackages()) == set(), path


def test_exceptions_are_still_needed():
    """An exception that no longer imports its sibling is removed."""
    for name, allowed in EXCEPTIONS.items():
        assert sibling_imports(osp.join(UTILS, name), _siblings()) == allowed


def test_few_shot_rules_the_datasets_use_import_only_utils():
    """The datasets import few_shot's split paths and split-folder check,
    so the modules its ``__init__`` imports stay below the datasets
    (data_check and novel_head_init, which build datasets and models, are
    imported by module path)."""
    few_shot = osp.join(PACKAGE, 'few_shot')
    init = ast.parse(open(osp.join(few_shot, '__init__.py')).read())
    exported = {
        node.module
        for node in ast.walk(init)
        if isinstance(node, ast.ImportFrom) and node.level == 1
    }
    assert 'split_paths' in exported and 'data_check' not in exported
    for module in exported:
        path = osp.join(few_shot, f'{module}.py')
        assert sibling_imports(path, _subpackages()) <= {'utils'}, module
