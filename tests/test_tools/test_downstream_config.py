"""A downstream project inherits a MaskDiff config by absolute path and
overrides fields; the overrides win, everything else is inherited."""
import os.path as osp

from mmengine.config import Config

from mmdet_maskdiff.few_shot.sample import support_set_config
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


# docs/protocols.md, "Inheriting the configs in your project": every data
# path moved
DOWNSTREAM_DATA = f"""\
_base_ = [{BASE!r}]

data_root = {MY_ROOT!r}
# `_base_.<name>` reads a variable of the inherited config
few_shot_set = dict(_base_.few_shot_set, data_root=data_root)
train_dataloader = dict(
    dataset=dict(datasets=[
        dict(_base_.base_train_dataset, data_root=data_root),
        dict(few_shot_set, num_base_shots=0),
    ]))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
"""


def _strings(node):
    if isinstance(node, dict):
        for child in node.values():
            yield from _strings(child)
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from _strings(child)
    elif isinstance(node, str):
        yield node


def test_downstream_moves_every_data_root(tmp_path):
    config = tmp_path / 'my_project' / 'my_coco_1shot.py'
    config.parent.mkdir()
    config.write_text(DOWNSTREAM_DATA)
    base = Config.fromfile(BASE).to_dict()
    cfg = load_config(str(config))
    resolved = cfg.to_dict()

    # the base config's data paths are all gone from what the runner reads
    # (data loaders, hooks, metrics; unused variables may keep them)
    used = ('train_dataloader', 'val_dataloader', 'test_dataloader',
            'custom_hooks', 'val_evaluator', 'test_evaluator')
    assert any('data/coco/' in s for key in used for s in _strings(base[key]))
    assert not any(
        'data/coco/' in s for key in used for s in _strings(resolved[key]))
    # and nothing else changed: the same structure with the new root
    base_set, novel_set = cfg.train_dataloader.dataset.datasets
    assert base_set.data_root == novel_set.data_root == MY_ROOT
    assert base_set.ann_classes == 'BASE'
    assert (novel_set.num_base_shots, novel_set.num_novel_shots) == (0, 1)
    hooks = [hook.type for hook in cfg.custom_hooks]
    assert hooks == ['SupportSetHook', 'DiffusionSamplerHook']
    # the support set follows the training set's K-shot member
    assert cfg.custom_hooks[0].get('dataset') is None
    support = support_set_config(cfg)
    assert support['data_root'] == MY_ROOT
    assert (support['num_base_shots'], support['num_novel_shots']) == (1, 1)
    assert cfg.test_dataloader.dataset.test_mode is True
    assert cfg.test_evaluator.ann_file.startswith(MY_ROOT)
