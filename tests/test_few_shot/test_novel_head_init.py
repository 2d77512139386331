"""TFA's novel-row initialisation (``tools/model_converters/tfa_novel_init.py``,
``mmdet_maskdiff.few_shot.novel_head_init``) on a tiny stage-1a checkpoint:
the real stage-1a / stage-1b configs shrunk by ``cpu_scale_options``."""
import copy
import glob
import os.path as osp

import pytest
import torch
from _tool_helpers import REPO, describe, run_tool, run_tool_here
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmdet_maskdiff  # noqa: F401  (registers the package's modules)
from mmdet.registry import MODELS
from mmdet_maskdiff.datasets.synthetic_class_splits import (
    SYNTHETIC_CLASS_SPLITS, SYNTHETIC_CLASSES)
from mmdet_maskdiff.few_shot.novel_head_init import (
    BoxPredictorLayout, NOVEL_WEIGHT_STD, default_output_path,
    layout_from_config, reinit_novel_rows, surgery_command, tfa_novel_init)
from mmdet_maskdiff.testing.small_scale import (cpu_scale_options,
                                                to_cfg_options_args)
from mmdet_maskdiff.utils.safe_checkpoint import load_checkpoint_file

CONFIG_DIR = osp.join(REPO, 'configs', 'maskdiff')
STAGE_1A = osp.join(CONFIG_DIR, 'maskdiff_r101_fpn_8xb2-110k_coco-base-det.py')
STAGE_1B = osp.join(CONFIG_DIR, 'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py')
FAKE_ROOT = '/nonexistent/synthetic_fsis'  # no data is read
CLS, REG = 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg'
NUM = len(SYNTHETIC_CLASSES)
NOVEL = [SYNTHETIC_CLASSES.index(c) for c in SYNTHETIC_CLASS_SPLITS['novel']]
BASE = [i for i in range(NUM) if i not in NOVEL]


def _cpu_cfg(path: str) -> Config:
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cpu_scale_options(cfg, FAKE_ROOT, load_from=None))
    return cfg


def _build(model_cfg):
    """Build a model in mmdet's scope without leaving it set for the next
    tests (some dataset tests need the default scope unset)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model_cfg)


def _reg_rows(labels):
    return [4 * c + i for c in labels for i in range(4)]


@pytest.fixture(scope='module')
def stage_1b_cfg():
    return _cpu_cfg(STAGE_1B)


@pytest.fixture(scope='module')
def base_checkpoint(tmp_path_factory):
    """Stage 1a's model (linear classifier with bias) at CPU scale, saved as
    an mmengine checkpoint with resume-only entries."""
    torch.manual_seed(0)
    model = _build(_cpu_cfg(STAGE_1A).model)
    state = model.state_dict()
    # distinct, non-random-looking values so that a copied row is exact
    state[f'{CLS}.bias'] = torch.arange(NUM + 1, dtype=torch.float32) + 1
    state[f'{REG}.bias'] = torch.arange(4 * NUM, dtype=torch.float32) + 1
    state[f'{CLS}.weight'] = state[f'{CLS}.weight'] + 1.0
    state[f'{REG}.weight'] = state[f'{REG}.weight'] - 1.0
    path = str(tmp_path_factory.mktemp('stage_1a') / 'iter_4.pth')
    torch.save(
        dict(
            meta=dict(iter=4),
            state_dict=state,
            optimizer=dict(state={}),
            message_hub=dict(log_scalars={})), path)
    return path, state


def test_layout_from_the_stage_1b_config(stage_1b_cfg):
    layout = layout_from_config(stage_1b_cfg)
    assert layout.class_names == SYNTHETIC_CLASSES
    assert list(layout.novel_labels) == NOVEL
    assert not layout.cls_has_bias  # CosineSimLinear
    assert not layout.reg_class_agnostic
    # stage 1a's classifier is mmdet's Linear
    assert layout_from_config(_cpu_cfg(STAGE_1A)).cls_has_bias
    # COCO: the 20 VOC classes of the 80-class label space
    coco = layout_from_config(Config.fromfile(STAGE_1B))
    assert len(coco.class_names) == 80 and len(coco.novel_labels) == 20
    assert coco.class_names[coco.novel_labels[-1]] == 'tv'


def test_surgery_of_a_tiny_checkpoint(base_checkpoint, stage_1b_cfg, tmp_path):
    path, state = base_checkpoint
    out, notes = tfa_novel_init(
        path, stage_1b_cfg, out=str(tmp_path / 'init.pth'))
    result = load_checkpoint_file(out)
    new = result['state_dict']

    cls_w, reg_w = state[f'{CLS}.weight'], state[f'{REG}.weight']
    # base rows and the background row copied exactly
    assert torch.equal(new[f'{CLS}.weight'][BASE + [NUM]], cls_w[BASE + [NUM]])
    assert torch.equal(new[f'{REG}.weight'][_reg_rows(BASE)],
                       reg_w[_reg_rows(BASE)])
    assert torch.equal(new[f'{REG}.bias'][_reg_rows(BASE)],
                       state[f'{REG}.bias'][_reg_rows(BASE)])
    # novel rows re-drawn: small zero-mean values, no longer the input's
    for key, rows in ((f'{CLS}.weight', NOVEL), (f'{REG}.weight',
                                                 _reg_rows(NOVEL))):
        drawn = new[key][rows]
        assert not torch.isclose(drawn, state[key][rows]).any(), key
        assert drawn.abs().max() < 6 * NOVEL_WEIGHT_STD, key
        assert drawn.std().item() == pytest.approx(NOVEL_WEIGHT_STD, rel=0.2)
    assert torch.equal(new[f'{REG}.bias'][_reg_rows(NOVEL)],
                       torch.zeros(4 * len(NOVEL)))
    # the cosine classifier has no bias: removed, and said so
    assert f'{CLS}.bias' not in new
    assert any(f'removed {CLS}.bias' in note for note in notes)
    # every other weight is the input's
    for key, value in state.items():
        if not key.startswith((CLS, REG)):
            assert torch.equal(new[key], value), key
    # resume-only entries dropped; meta records the surgery
    assert 'optimizer' not in result and 'message_hub' not in result
    assert result['meta']['iter'] == 4
    assert result['meta']['tfa_novel_init']['novel_classes'] == list(
        SYNTHETIC_CLASS_SPLITS['novel'])

    # the output fits the stage-1b model: nothing unexpected, and only the
    # cosine classifier's scale (a config setting) comes from the config
    model = _build(stage_1b_cfg.model)
    missing, unexpected = model.load_state_dict(new, strict=False)
    assert unexpected == []
    assert missing == [f'{CLS}.scale']

    # the seed fixes the draw
    again, _ = tfa_novel_init(
        path, stage_1b_cfg, out=str(tmp_path / 'again.pth'))
    other, _ = tfa_novel_init(
        path, stage_1b_cfg, out=str(tmp_path / 'other.pth'), seed=1)
    again = load_checkpoint_file(again)['state_dict']
    other = load_checkpoint_file(other)['state_dict']
    assert torch.equal(again[f'{CLS}.weight'], new[f'{CLS}.weight'])
    assert not torch.equal(other[f'{CLS}.weight'], new[f'{CLS}.weight'])


def test_rows_follow_the_class_split_and_bias_is_kept():
    """Novel labels anywhere in the label space; a linear classifier keeps
    its bias (novel entries 0, background copied); the draw has TFA's
    N(0, 0.01^2) statistics."""
    num, dim = 10, 2048
    novel = (1, 4, 8)
    base = [i for i in range(num) if i not in novel]
    generator = torch.Generator().manual_seed(0)
    state = {
        f'{CLS}.weight': torch.randn(num + 1, dim, generator=generator),
        f'{CLS}.bias': torch.randn(num + 1, generator=generator),
        f'{REG}.weight': torch.randn(4 * num, dim, generator=generator),
        f'{REG}.bias': torch.randn(4 * num, generator=generator),
        'backbone.conv1.weight': torch.randn(3, 3),
    }
    frozen = copy.deepcopy(state)
    layout = BoxPredictorLayout(
        class_names=tuple(f'c{i}' for i in range(num)),
        novel_labels=novel,
        cls_has_bias=True,
        reg_class_agnostic=False)
    new, notes = reinit_novel_rows(state, layout, torch.Generator())
    for key in state:
        assert torch.equal(state[key], frozen[key])  # input untouched
    cls_b = new[f'{CLS}.bias']
    assert torch.equal(cls_b[list(novel)], torch.zeros(3))
    assert torch.equal(cls_b[base + [num]], state[f'{CLS}.bias'][base + [num]])
    assert torch.equal(new[f'{CLS}.weight'][base + [num]],
                       state[f'{CLS}.weight'][base + [num]])
    rows = _reg_rows(novel)
    drawn = torch.cat([
        new[f'{CLS}.weight'][list(novel)].flatten(),
        new[f'{REG}.weight'][rows].flatten()
    ])
    n = drawn.numel()  # 15 rows x 2048
    assert abs(drawn.mean().item()) < 4 * NOVEL_WEIGHT_STD / n**0.5
    assert drawn.std().item() == pytest.approx(NOVEL_WEIGHT_STD, rel=0.03)
    assert torch.equal(new[f'{REG}.weight'][_reg_rows(base)],
                       state[f'{REG}.weight'][_reg_rows(base)])
    assert new['backbone.conv1.weight'] is state['backbone.conv1.weight']
    assert not any('removed' in note for note in notes)

    # a class-agnostic regressor (4 rows) is kept as it is
    agnostic = dict(state, **{f'{REG}.weight': state[f'{REG}.weight'][:4]})
    layout = BoxPredictorLayout(layout.class_names, novel, True, True)
    new, notes = reinit_novel_rows(agnostic, layout)
    assert torch.equal(new[f'{REG}.weight'], agnostic[f'{REG}.weight'])
    assert any('class-agnostic' in note for note in notes)


def test_class_count_mismatch(base_checkpoint, tmp_path):
    """The COCO stage-1b config (80 classes) on the 8-class checkpoint."""
    path, _ = base_checkpoint
    coco = Config.fromfile(STAGE_1B)
    with pytest.raises(ValueError) as info:
        tfa_novel_init(path, coco, out=str(tmp_path / 'x.pth'))
    message = str(info.value)
    assert '\n' not in message
    for words in (path, '9 rows (8 classes + background)', '80 classes'):
        assert words in message, message
    assert not (tmp_path / 'x.pth').exists()
    with pytest.raises(FileNotFoundError, match='no_such.pth does not exist'):
        tfa_novel_init(str(tmp_path / 'no_such.pth'), coco)
    with pytest.raises(ValueError, match='overwrite the input'):
        tfa_novel_init(path, coco, out=path)


def test_stage_1b_configs_load_the_surgery_output():
    """Every all-class TFA config starts from stage 1a's final checkpoint
    after the surgery; the missing-file hint names the command that makes
    it. (The novel-only ones, tfa_coco-novel-*, load stage 1a itself.)"""
    paths = sorted(
        glob.glob(osp.join(CONFIG_DIR, '*tfa_coco-[0-9]*shot-det.py')))
    assert len(paths) == 6
    stage_1a = Config.fromfile(STAGE_1A)
    source = ('work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/'
              f'iter_{stage_1a.train_cfg.max_iters}.pth')
    for path in paths:
        load_from = Config.fromfile(path).load_from
        assert load_from == default_output_path(source), path
        assert surgery_command(
            load_from,
            path) == ('python tools/model_converters/tfa_novel_init.py '
                      f'{path} {source}')
    assert surgery_command(source, STAGE_1B) is None


@pytest.mark.slow  # three tool runs, one in a fresh process
def test_command_line(base_checkpoint, tmp_path):
    path, state = base_checkpoint
    cfg = Config.fromfile(STAGE_1B)
    options = to_cfg_options_args(
        cpu_scale_options(cfg, FAKE_ROOT, load_from=None))
    proc = run_tool(
        'model_converters/tfa_novel_init.py',
        [STAGE_1B, path, '--cfg-options'] + options,
        cwd=str(tmp_path))
    assert proc.returncode == 0, describe(proc)
    out = default_output_path(path)
    assert f'wrote {out}' in proc.stdout
    assert f'note: removed {CLS}.bias' in proc.stdout
    new = load_checkpoint_file(out)['state_dict']
    assert torch.equal(new[f'{CLS}.weight'][BASE],
                       state[f'{CLS}.weight'][BASE])

    # bad input: one line naming both class counts and the file (in this
    # process; the command line is tested above)
    proc = run_tool_here(
        'model_converters/tfa_novel_init.py', [STAGE_1B, path],
        cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr
    assert lines[0].startswith(f'error: {path}:') and '80 classes' in lines[0]
    proc = run_tool_here(
        'model_converters/tfa_novel_init.py',
        [STAGE_1B, str(tmp_path / 'none.pth')],
        cwd=str(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == (f'error: checkpoint file '
                                   f"{tmp_path / 'none.pth'} does not exist")
