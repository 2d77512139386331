"""mmengine's FileClient / HardDiskBackend deprecation messages, which its
CheckpointHook and LoggerHook log at every Runner (every stage of a run), are
filtered by mmdet_maskdiff.compat; other warnings still show."""
import logging
import os.path as osp

import torch
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

import mmdet_maskdiff  # noqa: F401  (applies mmdet_maskdiff.compat)

FILTERED = ('"FileClient" will be deprecated',
            '"HardDiskBackend" is the alias of "LocalBackend"')


class ToyModel(BaseModel):
    """y = w x + b with the loss mean(y^2)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return out


def _train(work_dir: str, name: str) -> str:
    """Two iterations with a checkpoint each and logs copied to out_dir (the
    hooks that construct a FileClient); returns the log text."""
    runner = Runner(
        model=ToyModel(),
        work_dir=work_dir,
        experiment_name=name,
        train_dataloader=dict(
            dataset=[dict(inputs=torch.ones(2))] * 4,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
            logger=dict(
                type='LoggerHook',
                interval=1,
                out_dir=osp.join(work_dir, 'out'))),
        default_scope='mmdet')  # as the package's configs (and later tests)
    runner.train()
    print_log('an unrelated warning', logger='current', level=logging.WARNING)
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    with open(MMLogger.get_current_instance().log_file) as f:
        return f.read()


def test_runner_logs_no_file_client_deprecation(tmp_path, capsys):
    for stage in ('stage1', 'stage2'):
        log = _train(str(tmp_path / stage), f'warnings_filter_{stage}')
        stdout = capsys.readouterr().out
        for text in (log, stdout):
            assert 'Saving checkpoint at 2 iterations' in text
            assert 'an unrelated warning' in text
            for message in FILTERED:
                assert message not in text
