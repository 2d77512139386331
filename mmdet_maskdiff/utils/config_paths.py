"""Where this package's config files are, in a checkout or an installed copy.

A non-editable install (``pip install .``) ships ``configs/`` inside the
package, as ``mmdet_maskdiff/.mim/configs`` (``setup.py``, OpenMMLab's layout
that ``mim`` reads); a source checkout or an editable install has them next
to the package, in ``<checkout>/configs``. Code that needs a config of this
repository (the CPU demo) asks :func:`package_config_path` instead of
computing the checkout's root from ``__file__``.
"""
import os.path as osp
from typing import List

#: the installed (or checked-out) ``mmdet_maskdiff`` package directory
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_roots() -> List[str]:
    """The ``configs`` directories searched, in order: the installed copy
    (``mmdet_maskdiff/.mim/configs``), then the source checkout's
    (``<checkout>/configs``, recognised by its ``setup.py``)."""
    roots = [osp.join(PACKAGE_DIR, '.mim', 'configs')]
    checkout = osp.dirname(PACKAGE_DIR)
    if osp.isfile(osp.join(checkout, 'setup.py')):
        roots.append(osp.join(checkout, 'configs'))
    return roots


def package_config_path(relpath: str = '') -> str:
    """The path of ``configs/<relpath>`` (a file or a directory) of this
    package, wherever it is installed.

    Args:
        relpath (str): Path under ``configs/``, e.g. ``'maskdiff'`` or
            ``'maskdiff/coco_5shot.py'``; ``''`` is the ``configs``
            directory itself.

    Returns:
        str: An existing absolute path.

    Raises:
        FileNotFoundError: Neither the installed copy nor a source checkout
            has it (one line naming where it looked).
    """
    for root in config_roots():
        path = osp.normpath(osp.join(root, relpath))
        if osp.exists(path):
            return path
    looked = ' or '.join(
        osp.normpath(osp.join(root, relpath)) for root in config_roots())
    raise FileNotFoundError(
        f'configs/{relpath} of mmdet_maskdiff not found (looked in {looked}): '
        'install the package non-editable (pip install .), which ships the '
        'configs in mmdet_maskdiff/.mim/configs, or run from a source '
        'checkout')


def display_config_path(path: str) -> str:
    """``path`` as ``configs/<relpath>`` when it is one of this package's
    configs (the same name in a checkout and an installed copy), else
    unchanged."""
    path = osp.abspath(path)
    for root in config_roots():
        root = osp.abspath(root)
        if osp.commonpath([root, path]) == root:
            return osp.join('configs', osp.relpath(path, root))
    return path
