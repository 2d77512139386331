"""Running the command-line tools in a subprocess, or in this process
(shared by test_tools)."""
import contextlib
import glob
import io
import json
import logging
import os
import os.path as osp
import runpy
import socket
import subprocess
import sys
import tempfile
import traceback
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools')
TINY_CONFIG = osp.join(REPO, 'tests', 'data', 'tiny_mask_rcnn.py')
#: the variable tests/data/tiny_mask_rcnn.py reads its data root from
DATA_ROOT_ENV = 'MASKDIFF_SYNTHETIC_ROOT'
#: the ports :func:`free_port` gave out, shared by the test processes
GIVEN_PORTS = osp.join(tempfile.gettempdir(),
                       f'mmdet_maskdiff_test_ports.{os.getuid()}')


def tool_env(data_root: Optional[str] = None,
             pythonpath: Optional[List[str]] = None) -> Dict[str, str]:
    """The environment of a tool run: the synthetic data root and extra
    ``PYTHONPATH`` entries in front of the inherited ones."""
    env = dict(os.environ)
    if data_root is not None:
        env[DATA_ROOT_ENV] = data_root
    if pythonpath:
        old = env.get('PYTHONPATH')
        env['PYTHONPATH'] = os.pathsep.join(pythonpath +
                                            ([old] if old else []))
    return env


def run(cmd: List[str],
        cwd: str,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd``; stdout and stderr are captured separately as text."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout)


def run_tool(tool: str, args: List[str], cwd: str,
             **kwargs) -> subprocess.CompletedProcess:
    """``python tools/<tool> <args>`` with this interpreter."""
    return run([sys.executable, osp.join(TOOLS, tool)] + args, cwd, **kwargs)


def run_tool_here(tool: str,
                  args: List[str],
                  cwd: str,
                  env: Optional[Dict[str, str]] = None
                  ) -> subprocess.CompletedProcess:
    """``tools/<tool> <args>`` (or the script at the absolute path ``tool``)
    run in this process, as ``python`` runs it
    (``__name__ == '__main__'``, ``sys.argv``, the tool's folder first on
    ``sys.path``, ``cwd`` and ``env``): the same answer as :func:`run_tool`
    without the ~5 s of a fresh interpreter importing torch and
    OpenMMLab. For runs that stop early (bad input) or are short; every
    tool keeps at least one :func:`run_tool` test of its command line.

    The exit status is ``SystemExit``'s code (0 when the tool returns, 1
    and the traceback on stderr when it raises); the environment, working
    directory, ``sys.argv``/``sys.path`` and mmengine's default scope are
    restored afterwards. What the processes the tool starts write to their
    inherited stdout / stderr follows the tool's own output.
    """
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    path = osp.join(TOOLS, tool)  # an absolute ``tool`` stays itself
    # mmengine's loggers outlive the test that made them, and their console
    # handlers keep the stream of that moment (often pytest's capture of an
    # earlier test, closed since): point them at this run's stdout, as a
    # fresh interpreter would, and give the old streams back afterwards
    console = [
        handler for logger in list(MMLogger._instance_dict.values())
        for handler in logger.handlers
        if type(handler) is logging.StreamHandler
    ]
    saved_streams = [handler.stream for handler in console]
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_scopes = DefaultScope._instance_dict.copy()
    # mmengine keeps visualizers and message hubs by name, and mmdet's
    # runtime names every visualizer 'visualizer': a run here would reuse an
    # earlier run's and write its scalars into that run's folder. The tool
    # starts without them, as in a fresh interpreter.
    managed = _managed_classes()
    saved_managed = {cls: cls._instance_dict.copy() for cls in managed}
    for cls in managed:
        cls._instance_dict.clear()
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.chdir(cwd)
        sys.argv = [path] + list(args)
        sys.path.insert(0, osp.dirname(path))
        with _inherited_output() as children, \
                contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            for handler in console:
                handler.stream = out
            try:
                runpy.run_path(path, run_name='__main__')
            except SystemExit as exc:
                code = exc.code
                if code is None or isinstance(code, int):
                    status = code or 0
                else:  # sys.exit('message'), as argparse's parser.error
                    print(code, file=sys.stderr)
                    status = 1
            except Exception:  # noqa: B902  (a crash, as python shows it)
                traceback.print_exc()
                status = 1
    finally:
        for handler, stream in zip(console, saved_streams):
            handler.stream = stream
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path
        DefaultScope._instance_dict.clear()
        DefaultScope._instance_dict.update(saved_scopes)
        for cls, instances in saved_managed.items():
            cls._instance_dict.clear()
            cls._instance_dict.update(instances)
    child_out, child_err = (f.getvalue() for f in children)
    return subprocess.CompletedProcess([sys.executable, path] + list(args),
                                       status, out.getvalue() + child_out,
                                       err.getvalue() + child_err)


class _Captured:
    """A temporary file behind a file descriptor; its text once read."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.text = ''

    def getvalue(self) -> str:
        return self.text


@contextlib.contextmanager
def _inherited_output():
    """Point file descriptors 1 and 2 at temporary files while the block
    runs: processes started in it (``subprocess.call`` of a tool) write
    there, as into the pipes of a subprocess run. Yields the two
    :class:`_Captured`, read when the block ends."""
    captured = (_Captured(), _Captured())
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd, target in zip((1, 2), captured):
            os.dup2(target.file.fileno(), fd)
        yield captured
    finally:
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        for target in captured:
            target.file.seek(0)
            target.text = target.file.read().decode('utf-8', 'replace')
            target.file.close()


def _managed_classes() -> list:
    """mmengine's named-instance classes other than the logger and the
    default scope (which :func:`run_tool_here` handles itself): the message
    hub and every visualizer class."""
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmengine.utils import ManagerMixin
    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls not in (ManagerMixin, MMLogger, DefaultScope) and \
                '_instance_dict' in vars(cls):
            found.append(cls)
    return found


def describe(proc: subprocess.CompletedProcess, tail: int = 4000) -> str:
    """The end of a run's output, for assertion messages."""
    return (f'exit status {proc.returncode}\n--- stdout (tail)\n'
            f'{proc.stdout[-tail:]}\n--- stderr (tail)\n{proc.stderr[-tail:]}')


def free_port() -> int:
    """A TCP port that is free right now (for ``PORT`` of dist_*.sh) and
    that no other test on this machine was given in the last hour.

    ``make test`` runs tests in several pytest-xdist workers at once: the OS
    may hand the port that one test just released (to pass it to torchrun)
    to another test before the first one binds it again. The ports given
    out are kept, under a file lock, in :data:`GIVEN_PORTS`.
    """
    import fcntl
    import time
    with open(GIVEN_PORTS, 'a+', encoding='utf-8') as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        now = time.time()
        given = {}
        for line in f:
            port, _, when = line.partition(' ')
            if port.isdigit() and now - float(when or 0) < 3600:
                given[int(port)] = float(when)
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(('127.0.0.1', 0))
                port = sock.getsockname()[1]
            if port not in given:
                break
        given[port] = now
        f.seek(0)
        f.truncate()
        f.writelines(f'{p} {t}\n' for p, t in given.items())
    return port


def scalar_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics of a ``tools/test.py`` run, from the json file mmengine
    writes at ``<work_dir>/<timestamp>/<timestamp>.json``."""
    found = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    assert found, f'no metrics json under {work_dir}'
    with open(found[-1], encoding='utf-8') as f:
        return json.loads(f.read().strip().splitlines()[-1])


#: the tiny model of tests/test_models/conftest.py, and test settings that
#: give detections (score_thr 0) and batch-independent noise (batch size 1)
TINY = {
    'model.roi_head.mask_head.mask_size': 16,
    'model.roi_head.mask_head.num_timesteps': 100,
    'model.roi_head.mask_head.denoiser.channel_mults': (1, 2),
    'model.roi_head.mask_head.denoiser.num_res_blocks': 1,
    'model.roi_head.mask_head.denoiser.attention_channels': (32, ),
    'model.train_cfg.rcnn.mask_size': 16,
    'model.train_cfg.rcnn.sampler.num': 32,
    'model.train_cfg.rpn_proposal.nms_pre': 200,
    'model.train_cfg.rpn_proposal.max_per_img': 50,
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 30,
    'model.test_cfg.rcnn.max_per_img': 3,
    'model.test_cfg.rcnn.score_thr': 0.0,
    'test_dataloader.batch_size': 1,
    'train_cfg.val_interval': 1000,
    'custom_hooks.0.crop_size': 32,
    'custom_hooks.1.save_trajectory': False,
    'default_hooks.logger.interval': 1,  # a loss in the log of 2 iterations
    'log_processor.window_size': 1,
}


def write_config(path, data_root, **extra):
    """coco_1shot.py at CPU scale on ``data_root``, as one config file."""
    from mmengine.config import Config

    from mmdet_maskdiff.testing.small_scale import cpu_scale_options
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'maskdiff', 'coco_1shot.py'))
    cfg.merge_from_dict(
        cpu_scale_options(
            cfg, data_root, max_iters=2, batch_size=2, load_from=None))
    cfg.merge_from_dict(dict(TINY, **extra))
    cfg.dump(path)
    return path
