"""Distributed training and testing with a CPU-only torch build.

mmengine 0.10.7 assumes CUDA on the ``pytorch`` launcher path:

* ``mmengine.dist.utils._init_dist_pytorch`` calls
  ``torch.cuda.set_device(local_rank)`` unconditionally, which raises
  ``AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'`` on a
  CPU build, and mmdet's default runtime asks for the ``nccl`` backend;
* ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
  ``MMDistributedDataParallel``, which torch rejects for a module on the CPU.

With these two fixes ``tools/dist_train.sh CONFIG 2`` trains with two gloo
processes on a CPU-only machine (and on GPUs nothing changes: both fixes only
act when CUDA is absent / the module lives on the CPU).
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.dist import utils as dist_utils
from mmengine.model.wrappers import MMDistributedDataParallel

_original_init_dist_pytorch = dist_utils._init_dist_pytorch
_original_ddp_init = MMDistributedDataParallel.__init__


def _init_dist_pytorch_cpu(backend: str,
                           init_backend: str = 'torch',
                           **kwargs) -> None:
    """``_init_dist_pytorch`` without CUDA calls; ``nccl`` becomes ``gloo``."""
    if torch.cuda.is_available() or init_backend != 'torch':
        return _original_init_dist_pytorch(
            backend, init_backend=init_backend, **kwargs)
    if backend == 'nccl':
        backend = 'gloo'  # nccl needs CUDA
    torch_dist.init_process_group(
        backend=backend,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def _ddp_init_cpu_aware(self, module, *args, **kwargs) -> None:
    """Drop ``device_ids`` when the wrapped module lives on the CPU."""
    first = next(module.parameters(), None)
    if first is not None and first.device.type == 'cpu':
        kwargs['device_ids'] = None
    _original_ddp_init(self, module, *args, **kwargs)


def apply() -> None:
    """Install both fixes (idempotent)."""
    dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu
    MMDistributedDataParallel.__init__ = _ddp_init_cpu_aware
