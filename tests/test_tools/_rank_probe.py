"""A hook that records, per process, that it trained and in which process
group. Used by test_coco_entry_config.py through ``custom_imports``; the records go
to ``<work_dir>/rank_probe/rank<R>.json``."""
import json
import os
import os.path as osp

import torch.distributed as torch_dist
from mmdet.registry import HOOKS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Write ``rank``, ``world_size``, ``backend`` and the last iteration."""

    def after_train(self, runner) -> None:
        rank, world_size = get_dist_info()
        backend = (
            torch_dist.get_backend() if torch_dist.is_available()
            and torch_dist.is_initialized() else None)
        out_dir = osp.join(runner.work_dir, 'rank_probe')
        os.makedirs(out_dir, exist_ok=True)
        with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(
                dict(
                    rank=rank,
                    world_size=world_size,
                    backend=backend,
                    iter=runner.iter,
                    pid=os.getpid()), f)
