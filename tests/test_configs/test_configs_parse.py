"""Every config under configs/ parses, imports the plugin, chains its stages
through work_dirs, and can be shrunk to CPU scale; basenames are unique (mim
finds a config by its basename anywhere in the package)."""
import argparse
import copy
import glob
import os.path as osp
import re
from collections import Counter
from functools import lru_cache

import pytest
from mmengine.config import Config, DictAction

from mmdet_maskdiff.datasets import get_class_splits
from mmdet_maskdiff.few_shot.sample import (apply_few_shot_seed,
                                            support_set_config)
from mmdet_maskdiff.testing.small_scale import (cpu_scale_options,
                                                to_cfg_options_args)
from mmdet_maskdiff.utils.config_overrides import (file_variables,
                                                   merge_cfg_options)
from mmdet_maskdiff.utils.config_tree import iter_config_dicts

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs')
ALL_FILES = sorted(
    glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True))
CONFIGS = [
    p for p in ALL_FILES
    if '_base_' not in osp.relpath(p, CONFIG_DIR).split(osp.sep)
]
IDS = [osp.relpath(p, CONFIG_DIR) for p in CONFIGS]
BY_STEM = {osp.splitext(osp.basename(p))[0]: p for p in CONFIGS}
# a stage's final checkpoint, or TFA's novel-row initialisation of it
CHECKPOINT = re.compile(r'^work_dirs/(?P<stem>[^/]+)/(?P<seed>seed\{seed\}/)?'
                        r'iter_(?P<iter>\d+)(_novel-init)?\.pth$')
SHOTS = re.compile(r'(\d+)shot')
FAKE_ROOT = '/nonexistent/synthetic_fsis'


@lru_cache(maxsize=None)
def _parse(path: str) -> Config:
    return Config.fromfile(path)


def parsed(path: str) -> Config:
    """A private copy of the parsed config (parsing is the slow part)."""
    return copy.deepcopy(_parse(path))


def test_found_configs():
    # 1a + 6 x 1b + 6 x (diffusion, fcn), all-class and novel-only
    assert len(CONFIGS) >= 1 + 2 * (6 + 12)
    assert osp.join(CONFIG_DIR, 'maskdiff', 'coco_1shot.py') in CONFIGS


def test_basenames_unique():
    counts = Counter(osp.basename(p) for p in ALL_FILES)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    assert not duplicates, f'config basenames used twice: {duplicates}'


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_parses_and_imports_plugin(path):
    cfg = parsed(path)
    assert 'model' in cfg and 'train_dataloader' in cfg, path
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'mmdet_maskdiff' in imports, f'{path}: no custom_imports'
    assert cfg.custom_imports.get('allow_failed_imports') is False


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_load_from_names_previous_stage(path):
    cfg = parsed(path)
    load_from = cfg.get('load_from')
    if not load_from:
        return  # a first stage
    match = CHECKPOINT.match(load_from)
    assert match, (f'{path}: load_from {load_from!r} is not '
                   'work_dirs/<config>/iter_<N>.pth')
    stem = match['stem']
    assert stem in BY_STEM, f'{path}: no config {stem}.py makes {load_from}'
    assert BY_STEM[stem] != path, f'{path} loads its own work dir'
    previous = parsed(BY_STEM[stem])
    # a stage trained per K-shot sample is loaded from its seed's work dir
    assert bool(match['seed']) == ('few_shot' in previous), (
        f'{path}: {load_from} vs few_shot of {stem}')
    # the file the previous stage writes last
    assert int(match['iter']) == previous.train_cfg.max_iters, (
        f'{path}: {load_from} but {stem} trains '
        f'{previous.train_cfg.max_iters} iterations')
    # an earlier stage: the chain of load_from ends without coming back
    seen = {path}
    node = BY_STEM[stem]
    while node is not None:
        assert node not in seen, f'{path}: load_from chain loops at {node}'
        seen.add(node)
        prev_from = parsed(node).get('load_from')
        node = (
            BY_STEM.get(CHECKPOINT.match(prev_from)['stem'])
            if prev_from and CHECKPOINT.match(prev_from) else None)
    # the same K-shot sample in both stages
    this_k = SHOTS.findall(osp.basename(path))
    prev_k = SHOTS.findall(stem)
    if this_k and prev_k:
        assert this_k == prev_k, f'{path} ({this_k}) loads {stem}'


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_cpu_scale_options_apply(path):
    cfg = parsed(path)
    options = cpu_scale_options(cfg, FAKE_ROOT, max_iters=4)
    cfg.merge_from_dict(options)

    assert cfg.train_cfg.max_iters == 4
    assert cfg.model.backbone.depth == 18
    # the synthetic label space: 8 classes, or the 2 novel ones
    num_classes = 2 if 'novel' in osp.basename(path) else 8
    assert cfg.model.roi_head.bbox_head.num_classes == num_classes
    if cfg.model.roi_head.get('mask_head'):
        assert cfg.model.roi_head.mask_head.num_classes == num_classes
    assert cfg.model.backbone.init_cfg is None  # nothing is downloaded
    # the keys the run reads (variables of the files were read already)
    variables = file_variables(cfg)
    tree = {k: v for k, v in cfg.to_dict().items() if k not in variables}
    datasets = [
        d for _, d in iter_config_dicts(tree)
        if d.get('type') == 'FewShotCocoDataset'
    ]
    metrics = [
        d for _, d in iter_config_dicts(tree)
        if d.get('type') == 'FewShotCocoMetric'
    ]
    assert datasets and metrics, path
    for node in datasets + metrics:
        assert node['ann_file'].startswith(FAKE_ROOT), (path, node)
    for node in datasets:  # the named split of the synthetic data
        assert node['class_splits'] == 'synthetic', (path, node)
        assert get_class_splits(node['class_splits'])['NOVEL'] == (
            'crescent', 'heart')
    for node in metrics:  # 'BASE' / 'NOVEL' follow the dataset's split
        expected = (dict(novel='NOVEL') if '_novel' in path
                    or 'coco-novel' in path else dict(base='BASE',
                                                      novel='NOVEL'))
        assert node['class_splits'] == expected


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_cpu_scale_options_pass_the_command_line(path):
    """The same overrides as --cfg-options strings pass the key check and
    give the same config."""
    cfg = parsed(path)
    options = cpu_scale_options(cfg, FAKE_ROOT, max_iters=4, load_from=None)
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(['--cfg-options'] +
                             to_cfg_options_args(options))
    from_cli, direct = parsed(path), parsed(path)
    merge_cfg_options(from_cli, args.cfg_options)
    del options['param_scheduler']  # not passed on the command line
    direct.merge_from_dict(options)
    assert from_cli.to_dict() == direct.to_dict()


STAGE2 = [p for p in CONFIGS if re.fullmatch(r'coco_\d+shot\.py', osp.basename(p))]
TFA = [p for p in CONFIGS if re.search(r'tfa_coco-\d+shot-det\.py$', p)]


@pytest.mark.parametrize(
    'path', STAGE2, ids=[osp.basename(p) for p in STAGE2])
def test_stage2_uses_one_k_shot_sample(path):
    """The novel training shots, the support set k and the mask head agree on
    K and on the seed (per-K configs rebuild the lists from variables)."""
    k = int(SHOTS.search(osp.basename(path))[1])
    cfg = parsed(path)
    assert apply_few_shot_seed(cfg) == 0
    base_set, novel_set = cfg.train_dataloader.dataset.datasets
    assert base_set.ann_classes == 'BASE' and 'num_novel_shots' not in base_set
    assert (novel_set.num_base_shots, novel_set.num_novel_shots) == (0, k)
    hooks = {hook.type: hook for hook in cfg.custom_hooks}
    assert hooks['SupportSetHook'].get('dataset') is None  # derived
    support = support_set_config(cfg)
    assert (support['num_base_shots'], support['num_novel_shots']) == (k, k)
    assert support['seed'] == novel_set.seed == 0
    assert support['few_shot_root'] == novel_set.few_shot_root
    assert cfg.model.roi_head.mask_head.num_shots == k
    # the sampler has one home: the test_cfg, not the hook nor the head;
    # the configs state only what differs from the SamplerSettings defaults
    assert set(cfg.model.test_cfg.rcnn.diffusion_sampling) == {'fast'}
    assert 'sampler' not in hooks['DiffusionSamplerHook']
    assert 'test_sampler' not in cfg.model.roi_head.mask_head


@pytest.mark.parametrize('path', TFA, ids=[osp.basename(p) for p in TFA])
def test_tfa_stage_trains_on_balanced_k_shot_set(path):
    k = int(SHOTS.search(osp.basename(path))[1])
    dataset = parsed(path).train_dataloader.dataset
    assert dataset.type == 'FewShotCocoDataset'
    assert (dataset.num_base_shots, dataset.num_novel_shots) == (k, k)
    assert 'ann_classes' not in dataset  # not the base set it replaced
