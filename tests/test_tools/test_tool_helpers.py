"""``run_tool_here`` answers as ``python tools/...`` would, whatever loggers
earlier tests left behind."""
import io
import os
import os.path as osp
import sys

from _tool_helpers import REPO, run_tool_here
from mmengine.logging import MMLogger


def test_in_process_run_ignores_a_stale_console_stream(tmp_path):
    """mmengine's current logger may hold a console stream that an earlier
    test's capture has closed; the tool's log lines must go to this run's
    output, not into a 'Logging error' traceback."""
    stream, old = io.StringIO(), sys.stdout
    sys.stdout = stream
    try:
        MMLogger.get_instance('stale_console_stream', log_level='INFO')
    finally:
        sys.stdout = old
    stream.close()
    MMLogger.get_instance('stale_console_stream')  # the current instance
    config = osp.join(REPO, 'tests', 'data', 'tiny_mask_rcnn.py')
    # the env variable makes Config log a line through the current logger
    env = dict(os.environ, MASKDIFF_SYNTHETIC_ROOT=str(tmp_path))
    proc = run_tool_here('train.py',
                         [config, '--amp', '--work-dir',
                          str(tmp_path / 'work_dir')],
                         str(tmp_path),
                         env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-2000:]
    assert 'Traceback' not in output and 'Logging error' not in output
    assert 'MASKDIFF_SYNTHETIC_ROOT' in proc.stdout  # the line was logged
    assert 'needs a CUDA GPU' in proc.stderr
