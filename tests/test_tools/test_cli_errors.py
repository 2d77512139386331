"""A user's mistake stops tools/train.py and tools/test.py with one line on
stderr (``error: ...``), exit status 2 and no traceback.

The cases of SUBPROCESS run ``python tools/<tool>`` (one per tool, and the
one that builds a Runner); the others run the same script in this process
(``run_tool_here``), which saves a fresh interpreter per case."""
import os.path as osp

import pytest
import torch
from _tool_helpers import (REPO, TINY_CONFIG, describe, run_tool,
                           run_tool_here, tool_env)

STAGE_1B = osp.join(REPO, 'configs', 'maskdiff',
                    'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py')


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _plugin_without_import(tmp_path) -> str:
    """Uses FewShotRoIHead (a plugin component) but has no custom_imports."""
    text = (f'_base_ = [{TINY_CONFIG!r}]\n'
            "model = dict(roi_head=dict(type='FewShotRoIHead'))\n")
    return _write(tmp_path, 'forgot_custom_imports.py', text)


def _misspelt(tmp_path) -> str:
    text = (f'_base_ = [{TINY_CONFIG!r}]\n'
            "model = dict(roi_head=dict(type='StandardRoIHeed'))\n")
    return _write(tmp_path, 'misspelt_type.py', text)


# (tool, argument builder, words the error line must contain)
CASES = {
    'train_missing_config':
    ('train.py', lambda tmp: [osp.join(str(tmp), 'no_such_config.py')],
     ['config file', 'no_such_config.py', 'does not exist']),
    'test_missing_config':
    ('test.py', lambda tmp: [osp.join(str(tmp), 'no_such_config.py'), 'x.pth'],
     ['config file', 'no_such_config.py', 'does not exist']),
    'train_forgot_custom_imports':
    ('train.py', lambda tmp: [_plugin_without_import(tmp)],
     ['FewShotRoIHead', 'mmdet_maskdiff', 'custom_imports']),
    'test_missing_checkpoint':
    ('test.py', lambda tmp:
     [TINY_CONFIG, osp.join(str(tmp), 'no_such_ckpt.pth')],
     ['checkpoint file', 'no_such_ckpt.pth', 'does not exist']),
    'train_misspelt_type': ('train.py', lambda tmp: [_misspelt(tmp)],
                            ['StandardRoIHeed', 'registry']),
    # stage 1b without its novel-init checkpoint: the command that makes it
    'train_missing_novel_init': ('train.py', lambda tmp: [STAGE_1B], [
        'checkpoint file', 'iter_110000_novel-init.pth', 'does not exist',
        'python tools/model_converters/tfa_novel_init.py ' + STAGE_1B +
        ' work_dirs/maskdiff_r101_fpn_8xb2-110k_coco-base-det/'
        'iter_110000.pth'
    ]),
}
if not torch.cuda.is_available():  # mmengine's AmpOptimWrapper would assert
    CASES['train_amp_on_cpu'] = ('train.py',
                                 lambda tmp: [TINY_CONFIG, '--amp'],
                                 ['mixed precision', '--amp', 'CUDA GPU'])
#: cases run in a fresh interpreter: each tool's command line once, and the
#: one that gets as far as building a Runner
SUBPROCESS = {'test_missing_checkpoint', 'train_misspelt_type'}


@pytest.mark.parametrize('case', sorted(CASES))
def test_one_line_error(case, tmp_path, synthetic_data):
    tool, make_args, words = CASES[case]
    args = make_args(tmp_path) + ['--work-dir', str(tmp_path / 'work_dir')]
    runner = run_tool if case in SUBPROCESS else run_tool_here
    proc = runner(
        tool, args, str(tmp_path), env=tool_env(synthetic_data['root']))
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stdout + proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith('error: '), describe(proc)
    for word in words:
        assert word in lines[0], lines[0]
