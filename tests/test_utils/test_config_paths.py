"""The package's configs are found in a source checkout and in an installed
copy (``mmdet_maskdiff/.mim/configs``), not by computing the checkout's root
from ``__file__``."""
import os
import os.path as osp

import pytest

from mmdet_maskdiff.utils import config_paths
from mmdet_maskdiff.utils.config_paths import (display_config_path,
                                               package_config_path)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _touch(path) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    open(path, 'w').close()
    return str(path)


def test_checkout_configs():
    assert package_config_path('maskdiff') == osp.join(
        REPO, 'configs', 'maskdiff')
    path = package_config_path('maskdiff/coco_5shot.py')
    assert path == osp.join(REPO, 'configs', 'maskdiff', 'coco_5shot.py')
    assert display_config_path(path) == 'configs/maskdiff/coco_5shot.py'


def test_installed_layout(tmp_path, monkeypatch):
    """A site-packages copy: no checkout around it, configs under .mim."""
    package = tmp_path / 'site-packages' / 'mmdet_maskdiff'
    config = _touch(package / '.mim' / 'configs' / 'maskdiff' / 'a.py')
    # a stray configs/ next to the package is not a checkout (no setup.py)
    _touch(tmp_path / 'site-packages' / 'configs' / 'maskdiff' / 'b.py')
    monkeypatch.setattr(config_paths, 'PACKAGE_DIR', str(package))
    assert package_config_path('maskdiff') == osp.join(
        package, '.mim', 'configs', 'maskdiff')
    assert package_config_path('maskdiff/a.py') == config
    assert display_config_path(config) == 'configs/maskdiff/a.py'
    with pytest.raises(FileNotFoundError, match='maskdiff/b.py'):
        package_config_path('maskdiff/b.py')


def test_installed_copy_before_checkout(tmp_path, monkeypatch):
    """Both exist (a checkout with a built .mim): the installed copy wins,
    as in mim's lookup."""
    checkout = tmp_path / 'checkout'
    _touch(checkout / 'setup.py')
    _touch(checkout / 'configs' / 'maskdiff' / 'a.py')
    shipped = _touch(checkout / 'mmdet_maskdiff' / '.mim' / 'configs' /
                     'maskdiff' / 'a.py')
    checkout_only = _touch(checkout / 'configs' / 'maskdiff' / 'c.py')
    monkeypatch.setattr(config_paths, 'PACKAGE_DIR',
                        str(checkout / 'mmdet_maskdiff'))
    assert package_config_path('maskdiff/a.py') == shipped
    assert package_config_path('maskdiff/c.py') == checkout_only


def test_demo_settings_use_the_installed_configs(tmp_path, monkeypatch):
    from mmdet_maskdiff.demo.pipeline import DemoSettings
    package = tmp_path / 'site-packages' / 'mmdet_maskdiff'
    _touch(package / '.mim' / 'configs' / 'maskdiff' / 'coco_5shot.py')
    monkeypatch.setattr(config_paths, 'PACKAGE_DIR', str(package))
    settings = DemoSettings()
    assert settings.config_dir == osp.join(package, '.mim', 'configs',
                                           'maskdiff')
    assert settings.configs()['maskdiff'] == osp.join(
        settings.config_dir, 'coco_5shot.py')


def test_missing_configs_are_one_line(tmp_path, monkeypatch):
    package = tmp_path / 'site-packages' / 'mmdet_maskdiff'
    package.mkdir(parents=True)
    monkeypatch.setattr(config_paths, 'PACKAGE_DIR', str(package))
    with pytest.raises(FileNotFoundError) as info:
        package_config_path('maskdiff')
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith('configs/maskdiff of mmdet_maskdiff not found')
    assert osp.join(package, '.mim', 'configs', 'maskdiff') in message
    assert 'pip install .' in message
    from mmdet_maskdiff.demo.pipeline import DemoSettings
    with pytest.raises(FileNotFoundError, match='configs/maskdiff'):
        DemoSettings()


def test_display_of_other_paths_is_unchanged(tmp_path):
    other = str(tmp_path / 'my_configs' / 'x.py')
    assert display_config_path(other) == other
