"""A downstream project inherits a MaskDiff config by absolute path and
overrides fields; the overrides win, everything else is inherited."""
import os.path as osp

from mmengine.config import Config

from mmdet_maskdiff.utils import load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
MY_ROOT = '/data/my_coco/'

DOWNSTREAM = f"""\
_base_ = [{BASE!r}]

my_root = {MY_ROOT!r}
train_cfg = dict(max_iters=123)
test_dataloader = dict(dataset=dict(data_root=my_root))
test_evaluator = dict(
    ann_file=my_root + 'annotations/instances_val2017.json')
"""


def test_downstream_inheritance(tmp_path):
    config = tmp_path / 'my_project' / 'my_coco_1shot.py'
    config.parent.mkdir()
    config.write_text(DOWNSTREAM)

    base = Config.fromfile(BASE)
    cfg = Config.fromfile(str(config))

    # the overrides
    assert cfg.train_cfg.max_iters == 123
    assert cfg.test_dataloader.dataset.data_root == MY_ROOT
    assert cfg.test_evaluator.ann_file == (
        MY_ROOT + 'annotations/instances_val2017.json')
    # merged, not replaced: sibling keys come from the base config
    assert cfg.train_cfg.val_interval == base.train_cfg.val_interval
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.test_dataloader.dataset.type == 'FewShotCocoDataset'
    assert (cfg.test_dataloader.dataset.ann_file ==
            base.test_dataloader.dataset.ann_file)
    assert cfg.test_evaluator.type == 'FewShotCocoMetric'
    assert cfg.test_evaluator.metric == ['bbox', 'segm']
    # untouched parts are inherited as they are
    assert cfg.model.type == 'MaskDiffRCNN'
    assert cfg.model.roi_head.mask_head.type == 'DiffusionMaskHead'
    assert cfg.load_from == base.load_from
    assert cfg.val_dataloader.dataset.data_root == 'data/coco/'
    assert cfg.custom_imports.imports == ['mmdet_maskdiff']
    # and the tools accept it (custom_imports is inherited)
    assert load_config(str(config)).train_cfg.max_iters == 123
