"""Where the K-shot split files of a seed are: TFA's ``cocosplit`` layout.

::

    <root>/full_box_{K}shot_{class}_trainval.json          seed 0
    <root>/seed{N}/full_box_{K}shot_{class}_trainval.json  seed N >= 1

:func:`split_folder` is the one mapping from a seed to its folder; the split
generator (:mod:`mmdet_maskdiff.datasets.few_shot_splits`), the dataset
(:class:`~mmdet_maskdiff.datasets.FewShotCocoDataset`) and the split-folder
check (:mod:`.split_folder_check`) all go through it.
"""
import os.path as osp

#: the file name of one class's K-shot file (``name`` = the category name
#: as written in the annotation file, spaces included)
SPLIT_FILE_TEMPLATE = 'full_box_{shots}shot_{name}_trainval.json'


def split_folder(root: str, seed: int) -> str:
    """The folder of seed ``seed``'s K-shot files under ``root``.

    Args:
        root (str): the split directory (TFA's ``cocosplit``).
        seed (int): 0 (files directly in ``root``) or N >= 1
            (``root/seed{N}``).

    Returns:
        str: the folder.
    """
    return root if seed == 0 else osp.join(root, f'seed{seed}')


def few_shot_split_path(root: str, class_name: str, shots: int,
                        seed: int) -> str:
    """Path of the K-shot file of one class and seed (TFA layout).

    Args:
        root (str): the split directory (TFA's ``cocosplit``).
        class_name (str): category name as in the annotation file.
        shots (int): K.
        seed (int): 0 (files directly in ``root``) or N >= 1
            (``root/seed{N}``).

    Returns:
        str: the file path.

    Raises:
        ValueError: ``seed`` < 0.
    """
    if seed < 0:
        raise ValueError(f'seed must be >= 0, got {seed}')
    return osp.join(
        split_folder(root, seed),
        SPLIT_FILE_TEMPLATE.format(shots=shots, name=class_name))
