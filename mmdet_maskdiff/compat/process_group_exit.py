"""Free the default process group before the interpreter tears down.

mmengine 0.10.7 initialises the process group but never destroys it, and
``torch.distributed.destroy_process_group`` alone only unlinks the group: the
DDP wrapper of a finished runner still references it through a reference
cycle. gloo's native worker threads (``pt_gloo_runloop``, ``gloo_tcp_loop``)
then live until interpreter finalisation, where tearing them down can abort a
rank after a successful run ("terminate called without an active exception",
exit code -6; seen on rank 0 of ``tools/dist_train.sh CONFIG 2`` on CPU).
PyTorch asks programs to destroy their groups before exit; mmengine does
not. Upstream: pytorch/pytorch#179291 (an atexit handler in
``init_process_group`` for exactly this gloo SIGABRT; abandoned, so programs
must do it themselves).

:func:`release_process_group` destroys the group and collects the cycle, so
the threads are joined while the interpreter is intact. The package's tools
call it when ``main`` returns; :func:`apply` also registers it with
:mod:`atexit`, so any entry point that imports the plugin (mmdet's own
``tools/train.py``, ``mim train``) gets the same clean exit.
"""
import atexit
import gc

import torch.distributed as dist

_registered = False


def release_process_group() -> None:
    """Destroy the default process group, if any, and free it now."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def apply() -> None:
    """Register :func:`release_process_group` to run at exit (once)."""
    global _registered
    if not _registered:
        atexit.register(release_process_group)
        _registered = True
