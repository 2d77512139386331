"""``shutdown_distributed`` frees the process group before interpreter exit.

A gloo group kept alive by a reference cycle (mmengine's runner -> DDP
wrapper -> group) used to be torn down during interpreter finalisation, and
rank 0 of ``tools/dist_train.sh`` occasionally aborted after a successful run
("terminate called without an active exception"). The check is the observable
cause: gloo's native worker threads must be gone once the tools' shutdown
returns. It runs in a subprocess so the test process never joins a group.
"""
import os
import subprocess
import sys
import textwrap

import pytest
from _tool_helpers import free_port

SCRIPT = textwrap.dedent('''
    import os
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mmdet_maskdiff.utils.cli_checks import shutdown_distributed


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


    dist.init_process_group('gloo', rank=0, world_size=1)
    Owner()
    print('before', gloo_threads(), flush=True)
    shutdown_distributed()
    print('after', gloo_threads(), flush=True)
''')


@pytest.mark.skipif(
    not os.path.isdir('/proc/self/task'), reason='needs Linux /proc')
def test_shutdown_joins_gloo_threads(tmp_path):
    env = dict(
        os.environ,
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', SCRIPT],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(
        line.split(' ', 1) for line in proc.stdout.splitlines()
        if line.startswith(('before', 'after')))
    # the group really had native threads, so the check below can fail
    assert 'gloo' in lines['before'], proc.stdout
    assert lines['after'] == '[]', proc.stdout
