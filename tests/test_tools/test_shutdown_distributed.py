"""The process group is freed before interpreter exit.

A gloo group kept alive by a reference cycle (mmengine's runner -> DDP
wrapper -> group) used to be torn down during interpreter finalisation, and
rank 0 of ``tools/dist_train.sh`` occasionally aborted after a successful run
("terminate called without an active exception"; pytorch/pytorch#179291).
The check is the observable cause: gloo's native worker threads must be gone
once the tools' shutdown returns, and, for entry points that are not ours
(mmdet's tools, mim), once the plugin's exit handler has run. Each case runs
in a subprocess so the test process never joins a group.
"""
import os
import subprocess
import sys
import textwrap

import pytest
from _tool_helpers import free_port

PREAMBLE = textwrap.dedent('''
    import atexit
    import os
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel


    def gloo_threads():
        names = []
        for tid in os.listdir('/proc/self/task'):
            with open(f'/proc/self/task/{tid}/comm') as f:
                names.append(f.read().strip())
        return sorted(n for n in names if 'gloo' in n)


    class Owner:  # a reference cycle, like Runner <-> its hooks
        def __init__(self):
            self.model = DistributedDataParallel(torch.nn.Linear(2, 2))
            self.me = self
''')

# the tools' path: ``run_cli(main)`` frees the group when ``main`` returns,
# before any exit handler runs
TOOL_SHUTDOWN = PREAMBLE + textwrap.dedent('''
    from mmdet_maskdiff.utils.cli_checks import run_cli


    def main():
        dist.init_process_group('gloo', rank=0, world_size=1)
        Owner()
        print('before', gloo_threads(), flush=True)


    run_cli(main)
    print('after', gloo_threads(), flush=True)
''')

# atexit runs handlers last-in first-out: the probe, registered before the
# plugin is imported, runs after the plugin's handler
EXIT_HANDLER = PREAMBLE + textwrap.dedent('''
    atexit.register(lambda: print('after', gloo_threads(), flush=True))
    import mmdet_maskdiff  # noqa: F401

    dist.init_process_group('gloo', rank=0, world_size=1)
    Owner()
    print('before', gloo_threads(), flush=True)
''')


def run_script(script: str, cwd: str) -> dict:
    env = dict(
        os.environ,
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', script],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(
        line.split(' ', 1) for line in proc.stdout.splitlines()
        if line.startswith(('before', 'after')))
    # the group really had native threads, so the checks can fail
    assert 'gloo' in lines['before'], proc.stdout
    return lines


needs_proc = pytest.mark.skipif(
    not os.path.isdir('/proc/self/task'), reason='needs Linux /proc')


@needs_proc
def test_tool_run_cli_joins_gloo_threads(tmp_path):
    lines = run_script(TOOL_SHUTDOWN, str(tmp_path))
    assert lines['after'] == '[]'


@needs_proc
def test_plugin_exit_handler_joins_gloo_threads(tmp_path):
    lines = run_script(EXIT_HANDLER, str(tmp_path))
    assert lines['after'] == '[]'
