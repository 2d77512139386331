"""Package build hook: ship ``configs/`` and ``tools/`` inside the wheel.

``mim train/test mmdet_maskdiff <config>`` looks for configs and tools (and
``mim search`` for ``model-index.yml``) under
``<site-packages>/mmdet_maskdiff/.mim/`` (OpenMMLab's convention). The copy is
made in the build directory only, so the source tree keeps a single copy.
Editable installs (PEP 660) have no such directory: use a regular
``pip install .`` when you need mim (see docs/install.md, "Install modes").
"""
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_DIRS = ('configs', 'tools')
#: read by `mim search` from .mim/ (configs/*/metafile.yml come with configs)
MIM_FILES = ('model-index.yml', )


class BuildPyWithMim(build_py):
    """``build_py`` that also copies configs and tools into ``.mim/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        mim_root = osp.join(self.build_lib, 'mmdet_maskdiff', '.mim')
        for name in MIM_DIRS:
            target = osp.join(mim_root, name)
            if osp.exists(target):
                shutil.rmtree(target)
            shutil.copytree(
                osp.join(ROOT, name),
                target,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        for name in MIM_FILES:
            shutil.copy2(osp.join(ROOT, name), osp.join(mim_root, name))


setup(cmdclass={'build_py': BuildPyWithMim})
