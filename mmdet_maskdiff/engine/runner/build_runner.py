"""The runner a tool builds for a config, checked before it runs."""
from mmengine.config import Config
from mmengine.runner import Runner

from mmdet.registry import RUNNERS
from mmdet_maskdiff.datasets.num_classes_check import check_num_classes
from mmdet_maskdiff.utils.cli_checks import (check_dataloaders,
                                             check_evaluators)
from mmdet_maskdiff.utils.config_text import FormattedOnceConfig


def build_runner(cfg: Config) -> Runner:
    """Build the default runner, or ``cfg.runner_type`` when given (from
    mmdet's registry, as mmdet's ``tools/train.py`` does), and check what can
    be checked before it runs (:func:`check_dataloaders`,
    :func:`check_evaluators`; FewShotRunner checks ``num_classes`` itself,
    so that mmdet's tools check it too)."""
    check_dataloaders(cfg)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        check_num_classes(cfg)
        runner = Runner.from_cfg(FormattedOnceConfig.of(cfg))
    model = runner.model
    check_evaluators(cfg, getattr(model, 'module', model))
    return runner
