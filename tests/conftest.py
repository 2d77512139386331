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
