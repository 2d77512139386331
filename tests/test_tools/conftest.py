"""Fixtures of the tool tests: one tiny trained MaskDiff stage-2 model."""
import os.path as osp
import pickle
import shutil

import pytest
from _tool_helpers import describe, run_tool_here, write_config


@pytest.fixture(scope='session')
def stage2_model(tmp_path_factory):
    """coco_1shot.py at CPU scale on its own synthetic dataset, trained 2
    iterations with tools/train.py and tested with tools/test.py --out, both
    in this process (test_train_test_tools.py runs their command lines).

    Returns:
        dict: ``base`` (the folder), ``data_root``, ``config``, ``work_dir``
        (of the training run), ``checkpoint``, ``runner_pkl`` (the test
        loop's predictions) and ``image`` (a copy of the first test image,
        the first prediction's).
    """
    from mmdet_maskdiff.datasets.synthetic_fsis import make_synthetic_fsis
    base = tmp_path_factory.mktemp('stage2')
    data_root = str(base / 'data')
    make_synthetic_fsis(
        data_root,
        num_train_images=16,
        num_test_images=4,
        shots=(1, ),
        seeds=(0, ))
    config = write_config(str(base / 'tiny_coco_1shot.py'), data_root)
    work_dir = str(base / 'work_dir')
    proc = run_tool_here(
        'train.py', [config, '--work-dir', work_dir], cwd=str(base))
    assert proc.returncode == 0, describe(proc)
    # FewShotRunner puts a K-shot sample's run in <work-dir>/seed<N>/
    run_dir = osp.join(work_dir, 'seed0')
    checkpoint = osp.join(run_dir, 'iter_2.pth')

    dump = str(base / 'runner.pkl')
    proc = run_tool_here(
        'test.py', [
            config, checkpoint, '--out', dump, '--work-dir',
            str(base / 'test_dir')
        ],
        cwd=str(base))
    assert proc.returncode == 0, describe(proc)
    with open(dump, 'rb') as f:
        first = pickle.load(f)[0]
    image = str(base / 'query.png')
    shutil.copy(first['img_path'], image)
    return dict(
        base=base,
        data_root=data_root,
        config=config,
        work_dir=run_dir,
        checkpoint=checkpoint,
        runner_pkl=dump,
        image=image)
