"""docs/custom_dataset.md: the example downstream configs of the three
stages (``configs/custom/my_fsis_base.py``, ``my_fsis_tfa_1shot.py``,
``my_fsis_stage2.py``), copied into a project outside the package and pointed
at the synthetic dataset (8 classes), parse with their own class splits,
train 1a -> TFA novel init -> 1b -> 2 with the tools, each stage loading the
previous one's checkpoint, and a ``num_classes`` that does not match the
classes stops with one line."""
import os.path as osp
import re
from typing import Optional

import pytest
import torch
from _tool_helpers import REPO, describe, run_tool_here
from mmengine.config import Config

from mmdet_maskdiff.datasets.num_classes_check import check_num_classes
from mmdet_maskdiff.datasets.synthetic_class_splits import \
    SYNTHETIC_CLASS_SPLITS
from mmdet_maskdiff.few_shot.sample import support_set_config
from mmdet_maskdiff.testing import cpu_scale_options, to_cfg_options_args
from mmdet_maskdiff.utils.config_tree import iter_config_dicts
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

EXAMPLE_DIR = osp.join(REPO, 'configs', 'custom')
#: the examples in training order: 1a, 1b (K = 1), 2 (K = 1)
STAGES = ('my_fsis_base', 'my_fsis_tfa_1shot', 'my_fsis_stage2')
#: the heads that read num_classes in each example
HEADS = dict(my_fsis_base=1, my_fsis_tfa_1shot=1, my_fsis_stage2=2)
ITERS = 2
#: what cpu_scale_options sets that the example must set itself
OWN_KEYS = ('.data_root', '.ann_file', '.data_prefix.img', '.few_shot_root',
            '.class_splits', 'num_classes')
#: a frozen backbone weight and the box classifier (frozen in stage 2)
BACKBONE = 'backbone.conv1.weight'
CLASSIFIER = 'roi_head.bbox_head.fc_cls.weight'
SPLITS = dict(
    base=list(SYNTHETIC_CLASS_SPLITS['base']),
    novel=list(SYNTHETIC_CLASS_SPLITS['novel']))


def code_lines(text: str) -> list:
    return [
        line for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith('#')
    ]


def write_project_config(tmp_path,
                         data_root: str,
                         num_classes: int = 8,
                         name: str = 'my_fsis_stage2') -> str:
    """The example ``name`` in ``<tmp>/my_project/configs/``: ``_base_``
    relative to it, the synthetic data root, class names and
    ``num_classes``."""
    project = tmp_path / 'my_project' / 'configs'
    project.mkdir(parents=True, exist_ok=True)
    text = open(osp.join(EXAMPLE_DIR, f'{name}.py')).read()

    def rebase(match: re.Match) -> str:
        entry = osp.join(REPO, 'configs', 'maskdiff', match[1])
        return f'_base_ = [{osp.relpath(entry, str(project))!r}]'

    text, n_base = re.subn(r"^_base_ = \['\.\./maskdiff/([^']+)'\]$",
                           rebase, text, flags=re.M)
    splits = f'class_splits = dict(base={SPLITS["base"]!r}, ' \
        f'novel={SPLITS["novel"]!r})'
    text, n_splits = re.subn(
        r'^class_splits = dict\(.*?\)$', splits, text, flags=re.M | re.S)
    text, n_root = re.subn(
        r'^data_root = .*$', f'data_root = {data_root + "/"!r}', text,
        flags=re.M)
    text, n_classes = re.subn(
        r'^num_classes = \d+', f'num_classes = {num_classes}', text,
        flags=re.M)
    assert n_base == n_splits == n_root == n_classes == 1
    config = project / f'{name}.py'
    config.write_text(text)
    return str(config)


@pytest.mark.parametrize('name', STAGES)
def test_example_is_short(name):
    text = open(osp.join(EXAMPLE_DIR, f'{name}.py')).read()
    assert '_delete_' not in text
    assert len(code_lines(text)) <= 30
    # num_classes written once (no number anywhere else), used by the heads
    assert len(re.findall(r'^num_classes = \d+', text, flags=re.M)) == 1
    assert len(re.findall(r'num_classes\s*=\s*\d', text)) == 1
    assert text.count('num_classes=num_classes') == HEADS[name]


@pytest.mark.parametrize('name', STAGES)
def test_every_stage_parses_with_its_own_classes(name, synthetic_data,
                                                 tmp_path):
    root = synthetic_data['root']
    cfg = Config.fromfile(write_project_config(tmp_path, root, name=name))
    loaders = {
        key: cfg[key]
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    }
    datasets = [
        node for _, node in iter_config_dicts(loaders)
        if node.get('type') == 'FewShotCocoDataset'
    ]
    assert len(datasets) >= 3  # training, validation and test sets
    for dataset in datasets:
        # the child's dict replaced the base's dict(base='coco', ...)
        assert dataset['class_splits'] == SPLITS
        assert dataset['data_root'] == root + '/'
    assert cfg.val_evaluator.ann_file == synthetic_data['test_ann']
    assert cfg.model.roi_head.bbox_head.num_classes == 8
    check_num_classes(cfg)  # 8 classes everywhere


def test_stages_load_the_previous_example():
    """1b loads the novel-init file of 1a's last checkpoint, 2 loads the
    last checkpoint of 1b of its seed, in the default work dirs."""
    cfgs = {
        name: Config.fromfile(osp.join(EXAMPLE_DIR, f'{name}.py'))
        for name in STAGES
    }
    assert cfgs['my_fsis_base'].get('load_from') is None
    iters_1a = cfgs['my_fsis_base'].train_cfg.max_iters
    assert cfgs['my_fsis_tfa_1shot'].load_from == (
        f'work_dirs/my_fsis_base/iter_{iters_1a}_novel-init.pth')
    iters_1b = cfgs['my_fsis_tfa_1shot'].train_cfg.max_iters
    assert cfgs['my_fsis_stage2'].load_from == (
        f'work_dirs/my_fsis_tfa_1shot/seed{{seed}}/iter_{iters_1b}.pth')


def test_stage2_example_trains_the_mask_head_on_base_and_shots(
        synthetic_data, tmp_path):
    cfg = Config.fromfile(
        write_project_config(tmp_path, synthetic_data['root']))
    base_set, few_shot_set = cfg.train_dataloader.dataset.datasets
    assert base_set.ann_classes == 'BASE'
    assert (few_shot_set.num_base_shots, few_shot_set.num_novel_shots) == (0,
                                                                          1)
    assert cfg.model.roi_head.mask_head.num_classes == 8
    assert cfg.model.roi_head.mask_head.type == 'DiffusionMaskHead'
    # the support set follows the training set's K-shot member
    assert support_set_config(cfg)['class_splits'] == SPLITS


def test_num_classes_mismatch_is_one_line(synthetic_data, tmp_path):
    cfg = Config.fromfile(
        write_project_config(tmp_path, synthetic_data['root'], 9))
    message = ('model.roi_head.bbox_head.num_classes=9 but '
               'train_dataloader.dataset.datasets.0 has 8 classes')
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        check_num_classes(cfg)
    assert '\n' not in str(error.value)
    # the mask head and a denoiser value written in the config too
    cfg.model.roi_head.bbox_head.num_classes = 8
    with pytest.raises(ValueError,
                       match=r'mask_head.num_classes=9 but .* 8 classes'):
        check_num_classes(cfg)
    cfg.model.roi_head.mask_head.num_classes = 8
    cfg.model.roi_head.mask_head.denoiser.num_classes = 80
    with pytest.raises(ValueError,
                       match=r'denoiser.num_classes=80 but .* 8 classes'):
        check_num_classes(cfg)


def cpu_options(config: str,
                data_root: str,
                load_from: Optional[str] = None,
                validate: bool = True) -> list:
    """CPU model sizes and a 2-iteration schedule; data paths, class splits
    and num_classes stay the example's own."""
    options = cpu_scale_options(
        Config.fromfile(config),
        data_root,
        max_iters=ITERS,
        load_from=load_from)
    options = {
        key: value
        for key, value in options.items() if not key.endswith(OWN_KEYS)
    }
    options['train_dataloader.batch_size'] = 2
    if not validate:
        options['train_cfg.val_interval'] = ITERS + 1
    return to_cfg_options_args(options)


def train_stage(name: str, configs: dict, data_root: str, project,
                validate: bool):
    """``tools/train.py configs/<name>.py`` in ``project`` (its default work
    dir), loading what the example's ``load_from`` names, at the iteration
    count of this schedule."""
    config = configs[name]
    load_from = Config.fromfile(config).get('load_from')
    if load_from:
        load_from, n = re.subn(r'iter_\d+', f'iter_{ITERS}', load_from)
        assert n == 1, load_from
    proc = run_tool_here(
        'train.py',
        [osp.relpath(config, str(project)), '--cfg-options'] +
        cpu_options(config, data_root, load_from, validate),
        cwd=str(project))
    assert proc.returncode == 0, describe(proc)
    return proc


def weights(path) -> dict:
    assert path.is_file(), path
    return load_checkpoint_file(str(path), map_location='cpu')['state_dict']


@pytest.mark.slow  # four tool runs in this process, ~15 s
def test_example_trains_three_stages(synthetic_data, tmp_path):
    root = synthetic_data['root']
    configs = {
        name: write_project_config(tmp_path, root, name=name)
        for name in STAGES
    }
    project = tmp_path / 'my_project'
    work_dirs = project / 'work_dirs'

    # 1a: base training (validation only at the end of stage 2)
    train_stage('my_fsis_base', configs, root, project, validate=False)
    base = work_dirs / 'my_fsis_base' / f'iter_{ITERS}.pth'
    assert base.is_file()
    # TFA's novel-row initialisation, with the stage-1b example
    proc = run_tool_here(
        osp.join('model_converters', 'tfa_novel_init.py'), [
            osp.join('configs', 'my_fsis_tfa_1shot.py'),
            osp.relpath(str(base), str(project))
        ],
        cwd=str(project))
    assert proc.returncode == 0, describe(proc)
    novel_init = work_dirs / 'my_fsis_base' / f'iter_{ITERS}_novel-init.pth'
    # 1b: fine-tuning on the K-shot set of seed 0
    train_stage('my_fsis_tfa_1shot', configs, root, project, validate=False)
    tfa = work_dirs / 'my_fsis_tfa_1shot' / 'seed0' / f'iter_{ITERS}.pth'
    # 2: the diffusion mask head
    proc = train_stage('my_fsis_stage2', configs, root, project,
                       validate=True)
    assert 'loss_mask' in proc.stdout + proc.stderr, describe(proc)
    stage2 = work_dirs / 'my_fsis_stage2' / 'seed0' / f'iter_{ITERS}.pth'

    base, novel_init, tfa, stage2 = map(weights,
                                        (base, novel_init, tfa, stage2))
    # 1a's backbone, kept by the novel init and frozen in 1b and 2
    for later in (novel_init, tfa, stage2):
        assert torch.equal(later[BACKBONE], base[BACKBONE])
    # the classifier trained in 1b, and stage 2 has 1b's (frozen)
    assert not torch.equal(tfa[CLASSIFIER], novel_init[CLASSIFIER])
    assert torch.equal(stage2[CLASSIFIER], tfa[CLASSIFIER])
    assert any(key.startswith('roi_head.mask_head.') for key in stage2)


def test_train_tool_num_classes_mismatch(synthetic_data, tmp_path):
    root = synthetic_data['root']
    config = write_project_config(tmp_path, root, num_classes=9)
    proc = run_tool_here(
        'train.py',
        [config, '--work-dir',
         str(tmp_path / 'work_dir'), '--cfg-options'] +
        cpu_options(config, root),
        cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    # one line on stderr, naming the key and both values
    line, = proc.stderr.strip().splitlines()
    assert line.startswith('error: '), describe(proc)
    assert ('model.roi_head.bbox_head.num_classes=9 but '
            'train_dataloader.dataset.datasets.0 has 8 classes (its classes / '
            'class_splits); set num_classes = 8 in the config') in line
