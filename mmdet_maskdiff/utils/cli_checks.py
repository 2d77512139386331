"""Input checks shared by ``tools/train.py`` and ``tools/test.py``.

A user's mistake (a missing config or checkpoint, a config that forgets to
import the plugin, a component name that is not registered) must stop the tool
with one line naming the problem, not with a traceback from deep inside
mmengine. Each check raises :class:`InputError`; :func:`run_cli` turns it into
``error: <message>`` on stderr and exit status 2.
"""
import os.path as osp
import sys
from typing import Callable, List

from mmengine.config import Config
from mmengine.runner import Runner

from mmdet_maskdiff.compat import release_process_group
from .config_tree import iter_config_dicts

PLUGIN = 'mmdet_maskdiff'
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


def build_runner(cfg: Config) -> Runner:
    """Build the default runner, or ``cfg.runner_type`` when given (from
    mmdet's registry, as mmdet's ``tools/train.py`` does)."""
    if 'runner_type' in cfg:
        from mmdet.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


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


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; input errors become one line and status 2."""
    try:
        main()
        release_process_group()  # see compat/process_group_exit.py
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
    except KeyError as exc:
        message = _registry_miss(exc)
        if not message:
            raise
        print(
            f'error: {message} (misspelt type, or a config without '
            f'{IMPORT_HINT})',
            file=sys.stderr)
        sys.exit(2)
