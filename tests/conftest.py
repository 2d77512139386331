"""Shared fixtures of the test suite, and how ``make test`` spreads it over
pytest-xdist workers."""
import os

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


if os.environ.get('PYTEST_XDIST_WORKER'):
    # one worker per core (make test): each worker, and every tool it
    # starts, computes on one thread instead of all cores competing
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MKL_NUM_THREADS', '1')
    import torch
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config,
                                  items: list) -> None:
    """On xdist's workers (make test: ``--dist loadfile
    --no-loadscope-reorder``): test files with ``slow`` tests first, the
    rest in collection order. xdist hands whole files to the workers in this
    order, so the longest start first and the workers finish together;
    every worker collects the same order."""
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        return

    def path(item: pytest.Item) -> str:
        return item.nodeid.split('::')[0]

    slow = {path(item) for item in items
            if item.get_closest_marker('slow') is not None}
    items.sort(key=lambda item: path(item) not in slow)  # a stable sort
