"""``mmdet_maskdiff.demo.cpu_scale`` moved to
``mmdet_maskdiff.testing.small_scale``: the old import paths keep working for
one release, warn, and give the very same objects."""
import importlib
import subprocess
import sys

import pytest

from mmdet_maskdiff.testing import small_scale

OLD_MODULE = 'mmdet_maskdiff.demo.cpu_scale'


def test_old_module_warns_and_reexports_the_same_objects(monkeypatch):
    # the warning is given on import: import it afresh
    monkeypatch.delitem(sys.modules, OLD_MODULE, raising=False)
    with pytest.warns(DeprecationWarning,
                      match='mmdet_maskdiff.testing.small_scale'):
        old = importlib.import_module(OLD_MODULE)
    assert old.__all__, 'the shim re-exports nothing'
    for name in old.__all__:
        assert getattr(old, name) is getattr(small_scale, name), name
    for name in ('cpu_scale_options', 'to_cfg_options_args', 'MODEL_SIZES',
                 'DIFFUSION_HEAD_SIZES', 'FCN_HEAD_SIZES', 'IMAGE_SCALE',
                 'NUM_CLASSES'):
        assert name in old.__all__, name


@pytest.mark.parametrize('name',
                         ['cpu_scale_options', 'to_cfg_options_args'])
def test_old_package_names_warn_and_are_the_same(name):
    import mmdet_maskdiff.demo as demo
    with pytest.warns(DeprecationWarning,
                      match=f'mmdet_maskdiff.testing.{name}'):
        old = getattr(demo, name)
    assert old is getattr(small_scale, name)


def test_other_demo_names_are_not_aliased():
    import mmdet_maskdiff.demo as demo
    with pytest.raises(AttributeError, match='no_such_name'):
        demo.no_such_name  # noqa: B018


def test_new_paths_do_not_warn():
    """The package, its demo pipeline and the new module import without the
    deprecation (a fresh interpreter: the warnings fire on first import);
    then, in the same interpreter, the old path does raise it (the check
    works)."""
    code = ('import mmdet_maskdiff.testing.small_scale\n'
            'import mmdet_maskdiff.demo.pipeline\n'
            'from mmdet_maskdiff.testing import cpu_scale_options\n'
            'print("new paths imported")\n'
            'import mmdet_maskdiff.demo.cpu_scale\n')
    proc = subprocess.run(
        [sys.executable, '-W', 'error:mmdet_maskdiff.demo:DeprecationWarning',
         '-c', code],
        capture_output=True,
        text=True)
    assert proc.stdout.strip() == 'new paths imported', proc.stderr
    assert proc.returncode != 0
    assert 'DeprecationWarning: mmdet_maskdiff.demo.cpu_scale moved' in (
        proc.stderr)
