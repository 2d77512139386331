"""The one check that a seed's K-shot split files are on disk.

:func:`split_folder_problem` holds the rule and its one message; two places
ask it:

* :func:`check_split_folders`, on a config before anything is built
  (``tools/train.py``, ``tools/test.py``,
  :class:`~mmdet_maskdiff.engine.runner.FewShotRunner`): raises
  :class:`~mmdet_maskdiff.utils.cli_checks.InputError`;
* :class:`~mmdet_maskdiff.datasets.FewShotCocoDataset` in K-shot mode (and
  so ``SupportSetHook``'s support set) when it loads: raises
  ``FileNotFoundError``.

A missing seed folder is named as a folder, not as the first file missing
from it.
"""
import glob
import os.path as osp
from typing import Iterable, Optional

from mmengine.config import Config

from mmdet_maskdiff.utils.cli_checks import InputError
from .sample import run_k_shot_datasets
from .split_paths import SPLIT_FILE_TEMPLATE, split_folder


def split_folder_problem(root: str, seed: int,
                         shots: Iterable[int]) -> Optional[str]:
    """The one-line message when the folder of seed ``seed`` under ``root``
    does not hold a split file of every K in ``shots``, else None (also for
    a remote ``root``, whose missing files the dataset reports).

    Args:
        root (str): the split directory, joined to ``data_root`` already.
        seed (int): the split seed.
        shots (Iterable[int]): the K values read from it (0 is skipped).

    Returns:
        str | None: e.g. ``few-shot split folder <root>/seed7 (seed=7, K=1):
        no such folder; make it with ...``.
    """
    if '://' in root:
        return None
    folder = split_folder(root, seed)
    for k in sorted(set(shots) - {0}):
        pattern = SPLIT_FILE_TEMPLATE.format(shots=k, name='*')
        if not glob.glob(osp.join(glob.escape(folder), pattern)):
            where = ('no such folder'
                     if not osp.isdir(folder) else f'no {pattern} in it')
            return (f'few-shot split folder {folder} (seed={seed}, K={k}): '
                    f'{where}; make it with tools/dataset_converters/'
                    f'prepare_few_shot_splits.py --seeds {seed} or copy '
                    'TFA\'s cocosplit (docs/data.md)')
    return None


def _split_root(node: dict) -> str:
    """``few_shot_root`` of a dataset config, joined to its ``data_root``
    as the dataset joins it."""
    root = node['few_shot_root']
    data_root = node.get('data_root') or ''
    if data_root and not osp.isabs(root) and '://' not in root:
        root = osp.join(data_root, root)
    return root


def check_split_folders(cfg: Config) -> None:
    """Raise when a K-shot dataset of ``cfg`` has no split files of its K
    in its seed's folder (before any model or dataset is built).

    Raises:
        InputError: the message of :func:`split_folder_problem`.
    """
    for _, node in run_k_shot_datasets(cfg):
        problem = split_folder_problem(
            _split_root(node), node.get('seed', 0),
            [node.get(key) or 0
             for key in ('num_base_shots', 'num_novel_shots')])
        if problem is not None:
            raise InputError(problem)
