"""The numbered headers of the demo's steps follow its settings."""
import pytest

from mmdet_maskdiff.demo.pipeline import (HEAD_ROWS, UNTRAINED_ROW,
                                          DemoSettings, mask_head_stages)
from mmdet_maskdiff.demo.steps import DemoSteps, plan_steps


def plan(**settings) -> DemoSteps:
    settings = DemoSettings(config_dir='configs/maskdiff', **settings)
    heads = {name: HEAD_ROWS[name] for name in mask_head_stages(settings)}
    return plan_steps(settings, heads, UNTRAINED_ROW)


def test_default_run_has_twelve_numbered_steps():
    steps = plan()
    assert [steps.header(step) for step in steps.titles] == [
        '== [1/12] synthetic dataset (easy): data/demo_fsis ==',
        '== [2/12] stage 1a: base detector (500 iters) ==',
        '== [3/12] stage 1b: TFA novel-row initialisation of the box '
        'predictor ==',
        '== [4/12] stage 1b: TFA fine-tuning on the 5-shot set '
        '(300 iters) ==',
        '== [5/12] stage 2: MaskDiff mask head (350 iters) ==',
        '== [6/12] stage 2: FCNMaskHead mask head (350 iters) ==',
        '== [7/12] test: MaskDiff, end to end ==',
        '== [8/12] test: FCNMaskHead, end to end ==',
        '== [9/12] test: untrained diffusion head (stage-1b weights), '
        'end to end ==',
        '== [10/12] test: MaskDiff, oracle boxes ==',
        '== [11/12] test: FCNMaskHead, oracle boxes ==',
        '== [12/12] results ==',
    ]


def test_the_flags_add_and_remove_steps():
    steps = plan(twin=True, untrained=False, oracle=False, mask_iters=2)
    assert list(steps.titles) == [
        'data', 'base_det', 'novel_init', 'ft_det', 'train_maskdiff',
        'train_fcn', 'train_twin', 'test_maskdiff', 'test_fcn', 'test_twin',
        'results'
    ]
    assert steps.header('train_twin') == (
        '== [7/11] stage 2: regression twin mask head (2 iters) ==')


def test_an_unplanned_step_is_named():
    with pytest.raises(KeyError, match="'test_untrained' is not planned"):
        plan(untrained=False).header('test_untrained')
