"""Input checks shared by ``tools/train.py`` and ``tools/test.py``.

A user's mistake (a missing config or checkpoint, a config that forgets to
import the plugin, a component name that is not registered) must stop the tool
with one line naming the problem, not with a traceback from deep inside
mmengine. Each check raises :class:`InputError`; :func:`run_cli` turns it into
``error: <message>`` on stderr and exit status 2. So are the errors this
package raises on purpose while the tool runs (bad data, bad config, a
checkpoint that does not match): a ``ValueError``, ``TypeError``,
``KeyError``, ``FileNotFoundError`` or ``RuntimeError`` whose innermost frame
is in ``mmdet_maskdiff``. ``MMDET_MASKDIFF_DEBUG=1`` shows their traceback.
"""
import os
import os.path as osp
import re
import sys
from typing import Callable, List, Optional

from mmengine.config import Config

from mmdet_maskdiff.compat import release_process_group
from .config_tree import iter_config_dicts

PLUGIN = 'mmdet_maskdiff'
PLUGIN_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: set to 1 for the traceback of errors shown as one line
DEBUG_ENV = 'MMDET_MASKDIFF_DEBUG'
PACKAGE_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError,
                  RuntimeError)
IMPORT_HINT = (f"custom_imports=dict(imports=['{PLUGIN}'], "
               'allow_failed_imports=False)')


class InputError(Exception):
    """A problem with what the user passed on the command line."""


def plugin_types_used(cfg: Config) -> List[str]:
    """Names of components registered by this package that ``cfg`` uses."""
    from mmdet.registry import (DATASETS, HOOKS, METRICS, MODELS, TASK_UTILS,
                                TRANSFORMS)
    used = set()
    for _, node in iter_config_dicts(cfg.to_dict()):
        name = node.get('type')
        if not isinstance(name, str):
            continue
        short = name.split('.')[-1]
        for registry in (MODELS, DATASETS, METRICS, HOOKS, TASK_UTILS,
                         TRANSFORMS):
            obj = registry.module_dict.get(short)
            if obj is not None and obj.__module__.startswith(PLUGIN):
                used.add(short)
    return sorted(used)


def check_at_least(args, minimum: int, *names: str) -> None:
    """Raise :class:`InputError` ``--<name> must be >= <minimum>, got <v>``
    for the first of the command-line options ``names`` (attributes of the
    parsed ``args``) below ``minimum``; options left at None pass."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise InputError(f'--{name.replace("_", "-")} must be >= '
                             f'{minimum}, got {value}')


def parse_seeds(tokens: List[str], option: str = '--seeds') -> List[int]:
    """Seeds (or other non-negative ints) from the command line: ``N`` or
    a range ``N-M`` per token, e.g. ``['0-9']`` or ``['0', '3', '5-6']``.

    Returns:
        list[int]: The distinct values, sorted.

    Raises:
        InputError: a token that is neither, or a reversed range (one line
            naming it).
    """
    seeds: set = set()
    for token in tokens:
        match = re.fullmatch(r'(\d+)(?:-(\d+))?', token)
        if not match:
            raise InputError(f'{option} {token}: not an integer >= 0 or a '
                             'range N-M such as 0-9')
        start, stop = int(match[1]), int(match[2] or match[1])
        if stop < start:
            raise InputError(f'{option} {token}: the range is reversed; '
                             f'write {stop}-{start}')
        seeds.update(range(start, stop + 1))
    return sorted(seeds)


def load_config(path: str) -> Config:
    """Read a config and check that it imports the plugin when it needs it.

    Raises:
        InputError: the file is missing, cannot be parsed, or uses this
            package's components without ``custom_imports`` — such a config
            would work with this package's tools but fail with mmdet's own
            ``tools/train.py``, ``mim`` and downstream tools.
    """
    if not osp.isfile(path):
        raise InputError(f'config file {path} does not exist')
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many types while parsing
        message = str(exc).strip().splitlines()
        raise InputError(f'cannot parse config {path}: '
                         f"{message[-1] if message else type(exc).__name__}")
    imports = cfg.get('custom_imports', {}).get('imports', [])
    if isinstance(imports, str):
        imports = [imports]
    if PLUGIN not in imports:
        used = plugin_types_used(cfg)
        if used:
            raise InputError(
                f'config {path} uses {", ".join(used)} from {PLUGIN} but does '
                f'not import it; add {IMPORT_HINT}')
    return cfg


def check_checkpoint(path: str, hint: str = '') -> None:
    """Raise :class:`InputError` when a local checkpoint does not exist;
    ``hint`` (e.g. the command that makes the file) ends the message."""
    if '://' not in path and not osp.isfile(path):
        raise InputError(f'checkpoint file {path} does not exist' +
                         (f'; {hint}' if hint else ''))


def check_mixed_precision(cfg: Config, path: str) -> None:
    """Refuse mixed precision where mmengine cannot run it.

    ``AmpOptimWrapper`` (``tools/train.py --amp``) asserts a GPU, NPU or MLU
    deep inside the runner; on the CPU this stops with one line instead
    (train in fp32 there: drop ``--amp``). A bfloat16 run on a CUDA card
    without bfloat16 is refused the same way.

    Raises:
        InputError: mixed precision is configured but cannot run here.
    """
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_npu_available)
    wrapper = cfg.get('optim_wrapper') or {}
    kind = wrapper.get('type')
    if not (isinstance(kind, str) and kind.endswith('AmpOptimWrapper')):
        return
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()):
        raise InputError(
            f'mixed precision (--amp, or optim_wrapper.type={kind} in '
            f'{path}) needs a CUDA GPU (or NPU / MLU); none is available, so '
            'train in fp32 without --amp')
    dtype = str(wrapper.get('dtype'))
    if is_cuda_available() and dtype.endswith('bfloat16'):
        import torch
        if not torch.cuda.is_bf16_supported():
            device = torch.cuda.get_device_name()
            raise InputError(
                f'optim_wrapper.dtype={dtype} but {device} has no bfloat16; '
                'use --cfg-options optim_wrapper.dtype=float16')


def _metrics(evaluator) -> List[str]:
    """The ``metric`` names of an evaluator config (a dict or a list)."""
    names: List[str] = []
    nodes = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for node in nodes:
        metric = node.get('metric') if isinstance(node, dict) else None
        names += [metric] if isinstance(metric, str) else list(metric or [])
    return names


def check_evaluators(cfg: Config, model) -> None:
    """Raise :class:`InputError` when an evaluator asks for ``segm`` and the
    model has no mask head: mmengine would report it only at the first
    validation, possibly hours into training."""
    if getattr(model, 'with_mask', True):
        return
    for key in ('val_evaluator', 'test_evaluator'):
        loader = cfg.get(key.replace('evaluator', 'dataloader'))
        if loader and 'segm' in _metrics(cfg.get(key)):
            raise InputError(
                f"{key} asks for 'segm' but the model "
                f'({type(model).__name__}) has no mask head; drop '
                f"'segm' from {key}.metric or use a config with a mask head")


#: the data loaders a run builds
DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_dataloaders(cfg: Config) -> None:
    """Raise :class:`InputError` when a data loader's ``batch_size`` is not
    an integer >= 1 or its ``num_workers`` not one >= 0: torch would refuse
    it only when the loop starts, several frames deep."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        for field, minimum in (('batch_size', 1), ('num_workers', 0)):
            value = loader.get(field, minimum)
            if (isinstance(value, bool) or not isinstance(value, int)
                    or value < minimum):
                raise InputError(f'{key}.{field} must be an integer >= '
                                 f'{minimum}, got {value!r}')


def _registry_miss(exc: KeyError) -> str:
    """The message of a registry ``KeyError``, or '' for any other KeyError.

    mmengine reports an unregistered ``type`` as ``KeyError: 'X is not in the
    mmdet::model registry ...'`` several frames deep, when the model or a
    dataset is built.
    """
    message = str(exc.args[0]) if exc.args else ''
    if 'is not in the' in message and 'registry' in message:
        return message.splitlines()[0]
    return ''


#: the last frame of a traceback printed as text
_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+')


def _worker_error(exc: BaseException) -> Optional[str]:
    """The message of an error this package raised in a data loader
    worker, else None.

    torch re-raises it in the main process as ``type(e)('Caught X in
    DataLoader worker process N.\\nOriginal Traceback ...')``, the worker's
    traceback as text: its last frame tells where it was raised, and its
    last line is ``X: <message>``.
    """
    lines = str(exc.args[0] if exc.args else '').strip().splitlines()
    if not lines or not (lines[0].startswith('Caught ')
                         and 'DataLoader worker' in lines[0]):
        return None
    frames = [m for m in map(_FRAME_LINE.match, lines) if m is not None]
    if not frames or not osp.abspath(frames[-1]['file']).startswith(
            PLUGIN_DIR + os.sep):
        return None
    return lines[-1].split(': ', 1)[-1]


def _package_error(exc: BaseException) -> Optional[str]:
    """The message of an error raised by this package on purpose, else None.

    mmengine re-raises errors of a component's constructor as ``type(e)(
    'class `X` in ...: <message>')``, so the chain of causes is searched for
    the frame that raised; the outermost message (which names the class) is
    kept. An error of a data loader worker is found by :func:`_worker_error`.
    """
    if not isinstance(exc, PACKAGE_ERRORS):
        return None
    in_worker = _worker_error(exc)
    if in_worker is not None:
        return in_worker
    seen = set()
    link: Optional[BaseException] = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        tb = link.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and osp.abspath(
                tb.tb_frame.f_code.co_filename).startswith(PLUGIN_DIR +
                                                           os.sep):
            message = str(exc.args[0]) if (isinstance(exc, KeyError)
                                           and exc.args) else str(exc)
            lines = message.strip().splitlines()
            return lines[0] if lines else type(exc).__name__
        link = link.__cause__ or link.__context__
    return None


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; input errors and the package's own errors
    become one line and status 2 (``MMDET_MASKDIFF_DEBUG=1``: traceback)."""
    debug = os.environ.get(DEBUG_ENV, '') not in ('', '0')
    try:
        main()
        release_process_group()  # see compat/process_group_exit.py
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
    except PACKAGE_ERRORS as exc:
        registry_miss = (
            _registry_miss(exc) if isinstance(exc, KeyError) else '')
        message = _package_error(exc)
        if debug or not (registry_miss or message):
            raise
        if registry_miss:
            print(
                f'error: {registry_miss} (misspelt type, or a config without '
                f'{IMPORT_HINT})',
                file=sys.stderr)
        else:
            print(
                f'error: {type(exc).__name__}: {message} ({DEBUG_ENV}=1 '
                'shows the traceback)',
                file=sys.stderr)
        sys.exit(2)
