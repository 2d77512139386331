"""FormattedOnceConfig: the text of mmengine's Config, formatted once per
content, and FewShotRunner's runs format their config once."""
import copy
import os.path as osp
import sys

import pytest
from mmengine.config import Config
from mmengine.config import config as mmengine_config

import mmdet_maskdiff  # noqa: F401
from mmdet_maskdiff.utils.config_text import FormattedOnceConfig

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from _tool_helpers import REPO  # noqa: E402

STAGE_2 = osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py')


@pytest.fixture
def format_calls(monkeypatch):
    """The texts yapf formats through mmengine's Config from now on."""
    calls = []
    original = mmengine_config.FormatCode

    def counting(text, *args, **kwargs):
        calls.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(mmengine_config, 'FormatCode', counting)
    return calls


def test_text_equals_config_text_and_is_formatted_once(format_calls):
    plain = Config.fromfile(STAGE_2)
    once = FormattedOnceConfig.of(Config.fromfile(STAGE_2))
    assert once.pretty_text == plain.pretty_text
    assert len(format_calls) == 2
    assert once.pretty_text == plain.pretty_text
    assert len(format_calls) == 3  # the plain one again, not `once`
    # a change after the first access is never served stale
    once.train_cfg.max_iters = 7
    plain.train_cfg.max_iters = 7
    changed = plain.pretty_text
    assert 'max_iters=7' in changed and once.pretty_text == changed
    # deepcopy (what Runner.__init__ does) keeps the class and the text
    copied = copy.deepcopy(once)
    assert type(copied) is FormattedOnceConfig
    calls = len(format_calls)
    assert copied.pretty_text == changed
    assert len(format_calls) == calls
    # the config's contents are untouched: no key was added by the cache
    assert set(once.keys()) == set(plain.keys())


def test_few_shot_runner_formats_its_config_once(synthetic_data, tmp_path,
                                                 format_calls):
    from mmdet_maskdiff.engine.runner import build_runner
    from test_few_shot_runner import synthetic_cfg
    cfg = synthetic_cfg('configs/maskdiff/coco_1shot.py', synthetic_data, 0,
                        str(tmp_path))
    runner = build_runner(cfg)
    runner.dump_config()  # what train() and test() do first
    # the log, the visualizer's copy and the dumped config: one formatting
    assert len(format_calls) == 1
    dumped = osp.join(runner.work_dir, osp.basename(cfg.filename))
    assert Config.fromfile(dumped).to_dict() == runner.cfg.to_dict()
    assert runner.cfg.pretty_text == Config(runner.cfg.to_dict()).pretty_text
