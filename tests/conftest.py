"""Shared fixtures of the test suite."""
import pytest

from mmdet_maskdiff.datasets.synthetic_fsis import (make_synthetic_fsis,
                                                    synthetic_paths)


@pytest.fixture(scope='session')
def synthetic_data(tmp_path_factory):
    """A tiny synthetic FSIS dataset (24 train / 8 test images, K in 1, 2, 5,
    seeds 0-1), written once per session.

    Returns:
        dict[str, str]: :func:`synthetic_paths` of its root (``root``,
        ``train_ann``, ``test_ann``, ``train_img_dir``, ``test_img_dir``,
        ``few_shot_root``, ``manifest``).
    """
    root = str(tmp_path_factory.mktemp('synthetic_fsis'))
    make_synthetic_fsis(
        root,
        num_train_images=24,
        num_test_images=8,
        shots=(1, 2, 5),
        seeds=(0, 1))
    return synthetic_paths(root)


@pytest.fixture(scope='session')
def coco_shaped_data(tmp_path_factory):
    """An annotation-only COCO-shaped dataset: COCO's 80 names and ids,
    3,000 training images at COCO's 7.3 instances per image, K-shot files
    for K in 1, 5 and seeds 0-1 under ``few_shot/`` (no image files).

    Returns:
        str: its root, laid out as ``configs/_base_/datasets`` expects under
        ``data_root``.
    """
    from mmdet_maskdiff.datasets import generate_few_shot_splits
    from mmdet_maskdiff.datasets.coco_shaped import \
        make_coco_shaped_annotations
    root = str(tmp_path_factory.mktemp('coco_shaped'))
    paths = make_coco_shaped_annotations(root, num_train_images=3000)
    generate_few_shot_splits(
        paths['train_ann'], f'{root}/few_shot', shots=(1, 5), seeds=(0, 1))
    return root
