"""``run_tool_here`` answers as ``python tools/...`` would, whatever loggers
and visualizers earlier runs left behind; ``free_port`` never gives one port
twice."""
import io
import os
import os.path as osp
import sys

import _tool_helpers
from _tool_helpers import REPO, free_port, run_tool_here
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


def test_each_run_here_logs_into_its_own_folder(synthetic_data, tmp_path):
    """mmdet's runtime names every visualizer 'visualizer' and mmengine
    keeps it by name: without a reset, the second run's scalars would go to
    the first run's folder."""
    config = osp.join(REPO, 'tests', 'data', 'tiny_mask_rcnn.py')
    env = dict(os.environ, MASKDIFF_SYNTHETIC_ROOT=synthetic_data['root'])
    for name in ('first', 'second'):
        proc = run_tool_here(
            'train.py', [config, '--work-dir', str(tmp_path / name)],
            str(tmp_path), env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        scalars = list((tmp_path / name).glob('*/vis_data/scalars.json'))
        assert len(scalars) == 1, name


def test_free_port_skips_ports_given_before(tmp_path, monkeypatch):
    """The OS may offer a port it offered to another worker a moment ago;
    free_port asks again."""
    offers = iter([5001, 5002, 5001, 5002, 5003])

    class FakeSocket:

        def __init__(self, *args):
            self.port = next(offers)

        def __enter__(self):
            return self

        def __exit__(self, *args):
            pass

        def bind(self, address):
            pass

        def getsockname(self):
            return ('127.0.0.1', self.port)

    given = tmp_path / 'ports'
    monkeypatch.setattr(_tool_helpers, 'GIVEN_PORTS', str(given))
    monkeypatch.setattr(_tool_helpers.socket, 'socket', FakeSocket)
    assert [free_port(), free_port(), free_port()] == [5001, 5002, 5003]
    ports = [int(line.split()[0]) for line in given.read_text().splitlines()]
    assert ports == [5001, 5002, 5003]
