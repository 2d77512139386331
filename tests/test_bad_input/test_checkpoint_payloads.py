"""Checkpoints that carry code (issue 20, item 1).

A ``.pth`` whose pickle holds a ``__reduce__`` payload — in ``meta``, inside
``state_dict``, or in a legacy (plain pickle) file — is refused on every path
that loads a checkpoint: one line naming the file and the global, exit status
2, and the payload never runs (it would write a marker file). Listing the
file in ``MMDET_MASKDIFF_TRUSTED_CHECKPOINTS`` loads it in full. Real
checkpoints of every stage still load: tests/test_tools/
test_train_test_tools.py (train, test, resume), test_tfa_novel_init.py,
test_custom_dataset_config.py and test_fsis_seeds_run.py read theirs with
:func:`load_checkpoint_file`.
"""
import os
import os.path as osp
import pickle
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

import mmdet_maskdiff  # noqa: F401  (registers the checkpoint loader)
from mmdet.registry import MODELS
from mmdet_maskdiff.few_shot.checkpoint_sample import checkpoint_sample
from mmdet_maskdiff.utils.safe_checkpoint import (TRUSTED_ENV,
                                                  UntrustedCheckpointError,
                                                  load_checkpoint_file,
                                                  stored_config_value)

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from _tiny_maskdiff import tiny_config  # noqa: E402
from _tool_helpers import (  # noqa: E402
    REPO, TINY_CONFIG, describe, run, run_tool, run_tool_here, tool_env)

STAGE_1B = osp.join(REPO, 'configs', 'maskdiff',
                    'maskdiff_r101_fpn_8xb2-tfa_coco-1shot-det.py')
SHAPES = ('meta', 'state_dict', 'legacy')


class Payload:
    """Unpickling it runs ``exec`` and writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("ran")', ))


class HistoryBufferMethod:
    """Pickles as ``getattr(HistoryBuffer, name)``: the form a checkpoint's
    message hub uses for HistoryBuffer.min/max/current/mean."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (getattr, (HistoryBuffer, self.name))


@pytest.fixture(scope='module')
def weights():
    """The weights of tests/data/tiny_mask_rcnn.py (a payload rides along
    with real weights, as in a tampered download)."""
    torch.manual_seed(0)
    return MODELS.build(Config.fromfile(TINY_CONFIG).model).state_dict()


def save_payload(folder, shape: str, weights: dict) -> tuple:
    """A checkpoint of ``weights`` with a :class:`Payload` in ``meta`` (zip),
    inside ``state_dict`` (zip) or in ``meta`` of a legacy file; returns
    (its path, the marker the payload would write)."""
    path, marker = str(folder / f'{shape}.pth'), str(folder / f'{shape}.ran')
    meta = dict(iter=2)
    state_dict = dict(weights)
    if shape == 'state_dict':
        state_dict['roi_head.extra'] = Payload(marker)
    else:
        meta['note'] = Payload(marker)
    torch.save(
        dict(meta=meta, state_dict=state_dict),
        path,
        _use_new_zipfile_serialization=shape != 'legacy')
    return path, marker


def refused(path: str, why: str) -> str:
    """The loader's line for ``path``, refused because ``why``."""
    return (f'checkpoint {path} is refused: {why}; if you trust the file, '
            f'load it anyway with {TRUSTED_ENV}={path} (docs/security.md)')


def refusal(path: str, name: str = 'builtins.exec') -> str:
    return refused(
        path, f'it holds {name}, which weights-only loading does not allow '
        '(a pickle global can run code)')


def load_error(path: str) -> str:
    """The message of the loader's refusal of ``path``."""
    with pytest.raises(UntrustedCheckpointError) as error:
        load_checkpoint_file(path)
    return str(error.value)


@pytest.mark.parametrize('shape', SHAPES)
def test_loader_refuses_a_payload_and_runs_it_only_when_trusted(
        shape, weights, tmp_path, monkeypatch):
    path, marker = save_payload(tmp_path, shape, weights)
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError) as error:
        load_checkpoint_file(path)
    assert str(error.value) == refusal(path)
    assert isinstance(error.value, pickle.UnpicklingError)
    assert not osp.exists(marker)
    # the allow-list held for that load only
    assert HistoryBuffer not in torch.serialization.get_safe_globals()

    # the opt-in names the file: another file stays refused
    monkeypatch.setenv(TRUSTED_ENV, str(tmp_path / 'other.pth'))
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint_file(path)
    assert not osp.exists(marker)
    monkeypatch.setenv(TRUSTED_ENV,
                       os.pathsep.join([str(tmp_path / 'other.pth'), path]))
    checkpoint = load_checkpoint_file(path)
    assert osp.exists(marker)  # trusted: unpickled in full
    assert torch.equal(checkpoint['state_dict']['rpn_head.rpn_cls.weight'],
                       weights['rpn_head.rpn_cls.weight'])


class GetCwd:
    """Unpickling it calls ``os.getcwd`` (harmless: a global the loader must
    refuse and name)."""

    def __reduce__(self):
        return (os.getcwd, ())


def save_with_protocol(path: str, form: str, protocol: int, obj) -> None:
    """``obj`` as a zip or legacy ``torch.save`` file, or a plain pickle,
    written with pickle ``protocol``."""
    if form == 'pickle':
        with open(path, 'wb') as file:
            pickle.dump(obj, file, protocol=protocol)
    else:
        torch.save(obj, path, pickle_protocol=protocol,
                   _use_new_zipfile_serialization=form == 'zip')


@pytest.mark.parametrize('form', ('zip', 'legacy', 'pickle'))
@pytest.mark.parametrize('protocol', (2, 4, 5))
def test_refusal_names_the_global_whatever_the_protocol(
        form, protocol, tmp_path, monkeypatch):
    # torch's weights-only unpickler stops a protocol >= 4 pickle at its
    # first FRAME opcode, before any global: the name comes from the file
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    path = str(tmp_path / f'{form}{protocol}.pth')
    save_with_protocol(
        path, form, protocol,
        dict(meta=dict(note=GetCwd()), state_dict=dict(w=torch.ones(2))))
    names = f'{os.getcwd.__module__}.getcwd'
    if form == 'pickle':  # a tensor pickled outside torch.save: also refused
        names += ', torch.storage._load_from_bytes'
    assert load_error(path) == refusal(path, names)


@pytest.mark.parametrize('form', ('zip', 'legacy'))
def test_a_clean_checkpoint_of_protocol_4_is_refused_naming_the_protocol(
        form, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    path = str(tmp_path / 'clean.pth')
    save_with_protocol(path, form, 4, dict(state_dict=dict(w=torch.ones(2))))
    assert load_error(path) == refused(
        path, 'it is a pickle of protocol 4, which weights-only loading '
        'cannot read (it reads protocols up to 3; torch.save writes 2 unless '
        'given pickle_protocol)')
    monkeypatch.setenv(TRUSTED_ENV, path)
    assert torch.equal(load_checkpoint_file(path)['state_dict']['w'],
                       torch.ones(2))


def test_getattr_is_allowed_for_history_buffer_methods_only(tmp_path):
    path = str(tmp_path / 'hub.pth')
    torch.save(dict(meta=dict(f=HistoryBufferMethod('mean'))), path)
    assert load_checkpoint_file(path)['meta']['f'] is HistoryBuffer.mean
    torch.save(
        dict(meta=dict(f=HistoryBufferMethod('register_statistics'))), path)
    assert load_error(path) == refused(
        path, 'weights-only loading stopped at: '
        "getattr(HistoryBuffer, 'register_statistics') is not allowed "
        '(only HistoryBuffer.min/max/current/mean) (not a checkpoint, or one '
        'with more than weights)')


def test_stored_config_is_read_without_running_it(synthetic_data, tmp_path):
    """``meta['cfg']`` is Python text: the K-shot sample is read from it as
    literals, equal to what ``Config.fromstring`` gives for the text mmengine
    writes, and text that would run code is not run."""
    cfg = Config.fromfile(tiny_config(tmp_path, synthetic_data['root']))
    text = cfg.pretty_text
    checkpoint = dict(meta=dict(cfg=text))
    stored = Config.fromstring(text, '.py').to_dict()
    for name in stored:
        assert stored_config_value(checkpoint, name) == stored[name], name
    assert checkpoint_sample(checkpoint) == dict(seed=0, num_novel_shots=5)

    marker = tmp_path / 'cfg.ran'
    run_code = f"__import__('os').system('touch {marker}')"
    evil = ("train_dataloader = dict(dataset=dict(type='FewShotCocoDataset', "
            f"few_shot_root='few_shot', seed={run_code}, num_novel_shots=1))")
    assert checkpoint_sample(dict(meta=dict(cfg=evil))) is None
    assert stored_config_value(dict(meta=dict(cfg=f'x = {run_code}')),
                               'x') is None
    assert not marker.exists()


def _tool_cases(payload: str, tmp_path, data: dict) -> dict:
    """(tool, arguments) of every tool path that loads ``payload``
    (``data``: the ``synthetic_data`` fixture)."""
    work_dir = str(tmp_path / 'work_dir')
    image = osp.join(data['test_img_dir'],
                     sorted(os.listdir(data['test_img_dir']))[0])
    return {
        'test':
        ('test.py', [TINY_CONFIG, payload, '--work-dir', work_dir]),
        'image_demo': ('image_demo.py', [
            image, TINY_CONFIG, '--weights', payload, '--out-dir',
            str(tmp_path / 'out'), '--device', 'cpu'
        ]),
        'train_load_from': ('train.py', [
            TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
            f'load_from={payload}'
        ]),
        'train_resume':
        ('train.py', [TINY_CONFIG, '--work-dir', work_dir, '--resume',
                      payload]),
        'tfa_novel_init': ('model_converters/tfa_novel_init.py', [
            STAGE_1B, payload, '--out',
            str(tmp_path / 'novel-init.pth')
        ]),
        'check_fsis_data': ('analysis_tools/check_fsis_data.py', [
            tiny_config(tmp_path, data['root']), '--batches', '1',
            '--cfg-options', f'load_from={payload}'
        ]),
    }


TOOLS = ('test', 'image_demo', 'train_load_from', 'train_resume',
         'tfa_novel_init', 'check_fsis_data')
#: every tool with every payload shape; all but the first are slow (~5 s
#: each on 2 cores)
TOOL_CASES = [
    pytest.param(
        tool,
        shape,
        marks=() if (tool, shape) == ('test', 'meta') else pytest.mark.slow)
    for tool in TOOLS for shape in SHAPES
]


@pytest.mark.parametrize('tool,shape', TOOL_CASES)
def test_tool_refuses_a_payload(tool, shape, weights, synthetic_data,
                                tmp_path):
    path, marker = save_payload(tmp_path, shape, weights)
    script, args = _tool_cases(path, tmp_path, synthetic_data)[tool]
    proc = run_tool_here(
        script,
        args,
        cwd=str(tmp_path),
        env=tool_env(synthetic_data['root']))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip().splitlines() == [f'error: {refusal(path)}'
                                                ], describe(proc)
    assert not osp.exists(marker)


@pytest.mark.slow  # a fresh interpreter
def test_command_line_refuses_a_payload(weights, synthetic_data, tmp_path):
    """tools/test.py in a fresh interpreter."""
    path, marker = save_payload(tmp_path, 'meta', weights)
    proc = run_tool(
        'test.py', [TINY_CONFIG, path, '--work-dir',
                    str(tmp_path / 'w')],
        cwd=str(tmp_path),
        env=tool_env(synthetic_data['root']))
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip().splitlines() == [f'error: {refusal(path)}']
    assert not osp.exists(marker)


@pytest.mark.slow  # a fresh interpreter
def test_init_detector_with_a_package_config_refuses_a_payload(
        weights, synthetic_data, tmp_path):
    """mmdet's own ``init_detector`` in a fresh interpreter that imports
    only mmdet: the package config's ``custom_imports`` puts the loader in
    place before the checkpoint is read."""
    path, marker = save_payload(tmp_path, 'meta', weights)
    config = tiny_config(tmp_path, synthetic_data['root'])
    code = ('import sys\n'
            'from mmdet.apis import init_detector\n'
            'try:\n'
            f'    init_detector({config!r}, {path!r}, device="cpu")\n'
            'except Exception as exc:\n'
            '    print(type(exc).__name__, exc, file=sys.stderr)\n'
            '    sys.exit(3)\n')
    proc = run([sys.executable, '-c', code],
               cwd=str(tmp_path),
               env=tool_env(synthetic_data['root']))
    assert proc.returncode == 3, describe(proc)
    assert proc.stderr.strip().splitlines()[-1] == (
        f'UntrustedCheckpointError {refusal(path)}'), describe(proc)
    assert not osp.exists(marker)
