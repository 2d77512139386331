"""docs/custom_dataset.md: the example downstream stage-2 config
``configs/custom/my_fsis_stage2.py``, copied into a project outside the
package and pointed at the synthetic dataset (8 classes), parses with its
own class splits, trains stage 2 with ``tools/train.py``, and a
``num_classes`` that does not match the classes stops with one line."""
import os.path as osp
import re

import pytest
from _tool_helpers import REPO, describe, run_tool
from mmengine.config import Config

from mmdet_maskdiff.datasets.synthetic_fsis import SYNTHETIC_CLASS_SPLITS
from mmdet_maskdiff.testing import cpu_scale_options, to_cfg_options_args
from mmdet_maskdiff.utils.few_shot_sample import support_set_config
from mmdet_maskdiff.utils.num_classes_check import check_num_classes

EXAMPLE = osp.join(REPO, 'configs', 'custom', 'my_fsis_stage2.py')
ENTRY = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')
ITERS = 2
#: what cpu_scale_options sets that the example must set itself
OWN_KEYS = ('.data_root', '.ann_file', '.data_prefix.img', '.few_shot_root',
            '.class_splits', 'num_classes')


def code_lines(text: str) -> list:
    return [
        line for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith('#')
    ]


def write_project_config(tmp_path, data_root: str,
                         num_classes: int = 8) -> str:
    """The example in ``<tmp>/my_project/configs/``: ``_base_`` relative to
    it, the synthetic data root, class names and ``num_classes``."""
    project = tmp_path / 'my_project' / 'configs'
    project.mkdir(parents=True)
    text = open(EXAMPLE).read()
    base = "_base_ = ['../maskdiff/coco_1shot.py']"
    assert base in text
    text = text.replace(base,
                        f'_base_ = [{osp.relpath(ENTRY, str(project))!r}]')
    base_names = list(SYNTHETIC_CLASS_SPLITS['base'])
    novel_names = list(SYNTHETIC_CLASS_SPLITS['novel'])
    splits = f'class_splits = dict(base={base_names!r}, novel={novel_names!r})'
    text, n_splits = re.subn(
        r'^class_splits = dict\(.*?\)$', splits, text, flags=re.M | re.S)
    text, n_root = re.subn(
        r'^data_root = .*$', f'data_root = {data_root + "/"!r}', text,
        flags=re.M)
    text, n_classes = re.subn(
        r'^num_classes = \d+', f'num_classes = {num_classes}', text,
        flags=re.M)
    assert n_splits == n_root == n_classes == 1
    config = project / 'my_fsis_stage2.py'
    config.write_text(text)
    return str(config)


def test_example_is_short():
    text = open(EXAMPLE).read()
    assert '_delete_' not in text
    assert len(code_lines(text)) <= 30
    # num_classes written once, used by the bbox and the mask head
    assert len(re.findall(r'^num_classes = ', text, flags=re.M)) == 1
    assert text.count('num_classes=num_classes') == 2


def test_example_parses_with_its_own_classes(synthetic_data, tmp_path):
    root = synthetic_data['root']
    cfg = Config.fromfile(write_project_config(tmp_path, root))
    splits = dict(
        base=list(SYNTHETIC_CLASS_SPLITS['base']),
        novel=list(SYNTHETIC_CLASS_SPLITS['novel']))
    base_set, few_shot_set = cfg.train_dataloader.dataset.datasets
    for dataset in (base_set, few_shot_set, cfg.val_dataloader.dataset,
                    cfg.test_dataloader.dataset):
        # the child's dict replaced the base's dict(base='coco', ...)
        assert dataset.class_splits == splits
        assert dataset.data_root == root + '/'
    assert base_set.ann_classes == 'BASE'
    assert (few_shot_set.num_base_shots, few_shot_set.num_novel_shots) == (0,
                                                                          1)
    assert cfg.model.roi_head.bbox_head.num_classes == 8
    assert cfg.model.roi_head.mask_head.num_classes == 8
    assert cfg.model.roi_head.mask_head.type == 'DiffusionMaskHead'
    assert cfg.val_evaluator.ann_file == synthetic_data['test_ann']
    assert support_set_config(cfg)['class_splits'] == splits
    check_num_classes(cfg)  # 8 classes everywhere


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


def cpu_options(config: str, data_root: str) -> list:
    """CPU model sizes and a 2-iteration schedule; data paths, class splits
    and num_classes stay the example's own."""
    options = cpu_scale_options(
        Config.fromfile(config), data_root, max_iters=ITERS, load_from=None)
    options = {
        key: value
        for key, value in options.items() if not key.endswith(OWN_KEYS)
    }
    options['train_dataloader.batch_size'] = 2
    return to_cfg_options_args(options)


@pytest.mark.slow
def test_example_trains_stage2(synthetic_data, tmp_path):
    root = synthetic_data['root']
    config = write_project_config(tmp_path, root)
    work_dir = tmp_path / 'work_dir'
    proc = run_tool(
        'train.py',
        [config, '--work-dir', str(work_dir), '--cfg-options'] +
        cpu_options(config, root),
        cwd=str(tmp_path),
        timeout=600)
    assert proc.returncode == 0, describe(proc)
    assert 'loss_mask' in proc.stdout + proc.stderr, describe(proc)
    # FewShotRunner: the run of K-shot sample 0 is in <work-dir>/seed0/
    assert (work_dir / 'seed0' / f'iter_{ITERS}.pth').is_file()


def test_train_tool_num_classes_mismatch(synthetic_data, tmp_path):
    root = synthetic_data['root']
    config = write_project_config(tmp_path, root, num_classes=9)
    proc = run_tool(
        'train.py',
        [config, '--work-dir',
         str(tmp_path / 'work_dir'), '--cfg-options'] +
        cpu_options(config, root),
        cwd=str(tmp_path),
        timeout=300)
    assert proc.returncode == 2, describe(proc)
    # one line on stderr, naming the key and both values
    line, = proc.stderr.strip().splitlines()
    assert line.startswith('error: '), describe(proc)
    assert ('model.roi_head.bbox_head.num_classes=9 but '
            'train_dataloader.dataset.datasets.0 has 8 classes (its classes / '
            'class_splits); set num_classes = 8 in the config') in line
