"""Bad inputs stop the tools with one line naming the file, key or class, and
exit status 2 — never exit 0 with wrong results (issue "Same answer however
it is run"). The first cases check the checks themselves; the tool cases
run ``tools/test.py`` / ``tools/train.py`` on the tiny MaskDiff config, in
this process (their command lines have their own subprocess tests in
test_train_test_tools.py).
"""
import types

import pytest
import torch
from _tiny_maskdiff import save_checkpoint, tiny_config
from _tool_helpers import TINY_CONFIG, describe, run_tool_here, tool_env
from mmengine.config import Config

from mmdet_maskdiff.engine.hooks.support_set_hook import SupportSetHook
from mmdet_maskdiff.models.mask_heads import ConditionSpec
from mmdet_maskdiff.structures import SupportBank
from mmdet_maskdiff.utils import InputError, run_cli
from mmdet_maskdiff.utils.cli_checks import (DEBUG_ENV, check_at_least,
                                             check_evaluators)

# --------------------------------------------------------------------- #
# in-process: the checks
# --------------------------------------------------------------------- #


def test_check_at_least_names_the_first_option_below_the_minimum():
    args = types.SimpleNamespace(batch_size=None, warmup=0, max_iters=-2)
    check_at_least(args, 0, 'batch_size', 'warmup')  # None and 0 pass
    with pytest.raises(InputError) as info:
        check_at_least(args, 0, 'warmup', 'max_iters')
    assert str(info.value) == '--max-iters must be >= 0, got -2'


def fake_runner(num_shots=5, shot_fusion='concat'):
    spec = ConditionSpec(mask_size=16, num_shots=num_shots, region_image=True)
    head = types.SimpleNamespace(condition_spec=spec, shot_fusion=shot_fusion)
    model = types.SimpleNamespace(
        roi_head=types.SimpleNamespace(mask_head=head))
    return types.SimpleNamespace(model=model)


def support_hook(seed=0, shots=5, check_sample=True):
    hook = SupportSetHook(dataset={}, check_sample=check_sample)
    from mmdet_maskdiff.datasets import FewShotCocoDataset
    support = FewShotCocoDataset.__new__(FewShotCocoDataset)
    support.seed, support.few_shot_root = seed, 'few_shot'
    support.num_base_shots = support.num_novel_shots = shots
    hook._support_set = support
    return hook


@pytest.mark.parametrize(
    'shots,num_shots,fusion,error',
    [
        (5, 5, 'concat', None),
        (1, 5, 'concat', 'K=1 .*num_shots=5'),
        (10, 5, 'concat', 'K=10 .*num_shots=5'),
        (1, 5, 'mean', None),  # a 'mean' head averages any number of shots
    ])
def test_support_k_must_equal_num_shots(shots, num_shots, fusion, error):
    hook = support_hook(shots=shots)
    runner = fake_runner(num_shots, fusion)
    if error is None:
        hook.before_run(runner)
    else:
        with pytest.raises(ValueError, match=error):
            hook.before_run(runner)


@pytest.mark.parametrize('base_shots,error', [(1, None),
                                              (0, r"6 class.*'circle'")])
def test_support_set_must_cover_the_predicted_classes(synthetic_data,
                                                      base_shots, error):
    support = dict(
        type='FewShotCocoDataset',
        data_root=synthetic_data['root'],
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        class_splits='synthetic',
        few_shot_root='few_shot',
        num_base_shots=base_shots,
        num_novel_shots=1,
        pipeline=[])
    hook = SupportSetHook(dataset=support)
    runner = fake_runner(num_shots=1)
    runner.model.roi_head.bbox_head = types.SimpleNamespace(num_classes=8)
    if error is None:
        hook.before_run(runner)
    else:
        with pytest.raises(ValueError, match=error):
            hook.before_run(runner)


def test_init_detector_refuses_a_checkpoint_of_another_num_shots(
        tmp_path, synthetic_data):
    """mmdet's init_detector loads non-strictly; the mask head does not."""
    from mmdet.apis import init_detector
    root = synthetic_data['root']
    five = tiny_config(tmp_path, root)
    checkpoint = save_checkpoint(five, str(tmp_path / 'k5.pth'))
    three = tiny_config(
        tmp_path,
        root,
        name='tiny_3shot.py',
        **{'model.roi_head.mask_head.num_shots': 3})
    with pytest.raises(ValueError, match=r'in_conv_cond\.weight has shape'):
        init_detector(three, checkpoint, device='cpu')
    init_detector(five, checkpoint, device='cpu')  # the right config loads


def test_segm_evaluator_needs_a_mask_head():
    cfg = Config(
        dict(
            val_dataloader=dict(batch_size=1),
            val_evaluator=dict(type='CocoMetric', metric=['bbox', 'segm']),
            test_dataloader=None,
            test_evaluator=dict(metric='segm')))
    with pytest.raises(InputError, match="val_evaluator asks for 'segm'"):
        check_evaluators(cfg, types.SimpleNamespace(with_mask=False))
    check_evaluators(cfg, types.SimpleNamespace(with_mask=True))
    cfg.val_evaluator.metric = 'bbox'  # the test evaluator has no loader
    check_evaluators(cfg, types.SimpleNamespace(with_mask=False))


def raise_from_package():
    # a check of this package, raised through a deeper frame of it
    SupportBank._check_request(torch.zeros(2, 2), 1)


def test_run_cli_shows_package_errors_as_one_line(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(raise_from_package)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        'error: ValueError: labels must have shape (L,), got (2, 2) '
        f'({DEBUG_ENV}=1 shows the traceback)'
    ]
    # errors that do not come from the package keep their traceback
    with pytest.raises(ValueError, match='not ours'):
        run_cli(lambda: int('not ours'))
    monkeypatch.setenv(DEBUG_ENV, '1')
    with pytest.raises(ValueError, match='labels must have shape'):
        run_cli(raise_from_package)


# --------------------------------------------------------------------- #
# the tools: one line on stderr, exit status 2
# --------------------------------------------------------------------- #


def _truncated(tmp_path, root):
    config = tiny_config(tmp_path, root)
    good = save_checkpoint(config, str(tmp_path / 'good.pth'))
    with open(good, 'rb') as f:
        data = f.read()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    return [config, str(tmp_path / 'cut.pth')]


def _resume_from_truncated(tmp_path, root):
    (tmp_path / 'iter_9.pth').write_bytes(b'PK\x03\x04 cut short')
    return [TINY_CONFIG, '--resume', str(tmp_path / 'iter_9.pth')]


def _other_num_shots(tmp_path, root):
    """A 5-shot checkpoint tested with a num_shots=3 config (the mask head's
    first convolution has another shape)."""
    config = tiny_config(tmp_path, root)
    checkpoint = save_checkpoint(config, str(tmp_path / 'k5.pth'))
    three = tiny_config(
        tmp_path,
        root,
        name='tiny_3shot.py',
        **{'model.roi_head.mask_head.num_shots': 3})
    return [three, checkpoint]


def _support_k1_for_5shot_head(tmp_path, root):
    # the support set is the training set's K-shot member: a 1-shot member
    # gives a 1-shot support set, for a head built for 5 shots
    config = tiny_config(
        tmp_path, root,
        **{'train_dataloader.dataset.datasets.1.num_novel_shots': 1})
    return [config, save_checkpoint(config, str(tmp_path / 'w.pth'))]


def _support_seed1_for_seed0_model(tmp_path, root):
    trained = tiny_config(tmp_path, root)
    checkpoint = save_checkpoint(
        trained,
        str(tmp_path / 'seed0.pth'),
        meta=dict(cfg=Config.fromfile(trained).pretty_text))
    tested = tiny_config(
        tmp_path,
        root,
        name='tiny_seed1.py',
        **{'few_shot.seed': 1})
    return [tested, checkpoint]


def _segm_without_mask_head(tmp_path, root):
    config = tmp_path / 'no_mask_head.py'
    config.write_text(f'_base_ = [{TINY_CONFIG!r}]\n'
                      'model = dict(roi_head=dict(mask_roi_extractor=None, '
                      'mask_head=None))\n')
    return [str(config)]


# (tool, argument builder, words the error line must contain)
TOOL_CASES = {
    'test_truncated_checkpoint': ('test.py', _truncated,
                                  ['cannot read checkpoint', 'cut.pth']),
    'train_resume_from_truncated_checkpoint':
    ('train.py', _resume_from_truncated,
     ['cannot read checkpoint', 'iter_9.pth']),
    'test_checkpoint_of_other_num_shots':
    ('test.py', _other_num_shots,
     ['k5.pth', 'does not fit', 'in_conv_cond', 'num_shots']),
    'test_support_k_differs_from_num_shots':
    ('test.py', _support_k1_for_5shot_head,
     ['SupportSetHook', 'K=1', 'num_shots=5']),
    'test_support_seed_differs_from_training':
    ('test.py', _support_seed1_for_seed0_model,
     ['seed=0', 'seed=1', 'few_shot.check_checkpoint=False']),
    'train_segm_evaluator_without_mask_head':
    ('train.py', _segm_without_mask_head,
     ["val_evaluator asks for 'segm'", 'no mask head']),
}


@pytest.mark.slow  # ~3 s per case
@pytest.mark.parametrize('case', sorted(TOOL_CASES))
def test_tool_stops_with_one_line(case, tmp_path, synthetic_data):
    tool, make_args, words = TOOL_CASES[case]
    args = make_args(tmp_path, synthetic_data['root']) + [
        '--work-dir', str(tmp_path / 'work_dir')
    ]
    env = tool_env(synthetic_data['root'])
    env.update(OMP_NUM_THREADS='1')
    env.pop(DEBUG_ENV, None)
    proc = run_tool_here(tool, args, str(tmp_path), env=env)
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stdout + proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith('error: '), describe(proc)
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.slow
def test_debug_switch_shows_the_traceback(tmp_path, synthetic_data):
    args = _support_k1_for_5shot_head(tmp_path, synthetic_data['root'])
    env = tool_env(synthetic_data['root'])
    env.update({DEBUG_ENV: '1', 'OMP_NUM_THREADS': '1'})
    proc = run_tool_here(
        'test.py',
        args + ['--work-dir', str(tmp_path / 'work_dir')],
        str(tmp_path),
        env=env)
    assert proc.returncode not in (0, 2), describe(proc)
    assert 'Traceback' in proc.stderr and 'K=1' in proc.stderr
