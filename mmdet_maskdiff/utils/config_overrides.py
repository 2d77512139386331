"""``--cfg-options`` that must name a key of the config.

mmengine's ``Config.merge_from_dict`` adds a key the config does not have,
so a misspelt override (``few_shots.seed=1``,
``model.test_cfg.rcnn.samplr.steps=8``) lands where nothing reads it and the
run goes on with the old value, exit status 0. :func:`merge_cfg_options`,
used by every tool that takes ``--cfg-options``, refuses such a key with one
line that names it and the closest key the config has::

    error: --cfg-options few_shots.seed: the config has no key few_shots
    (did you mean few_shot.seed?); a new key on purpose: +few_shots.seed=...

A key passes when its dotted path exists in the parsed config (``_base_``
files merged in; list items by index, ``custom_hooks.0.crop_size``), or when
the code reads it with a default, so that a config may leave it out
(:func:`optional_keys`): the constructor arguments of a dict's ``type``, the
sampler and its keys in ``model.test_cfg.rcnn``, ``few_shot``'s keys and the
keys mmengine's Runner reads at the top level, from ``randomness``,
``env_cfg``, ``auto_scale_lr`` and the data loaders. A key written with a
leading ``+`` (``--cfg-options +my_key=1``, Hydra's syntax) may be new: it is
added as mmengine adds it.

A top-level key that nothing reads once the config is parsed — a variable of
the config files, such as ``data_root`` or ``test_dataset`` — is refused too
(:func:`file_variable_error`): mmengine substituted it into the keys built
from it while it read the files and keeps it as a key, so overriding it
changes nothing. The line names the keys the run reads that took its value
(``train_dataloader.dataset.data_root``, ...); ``+data_root=...`` sets it
anyway.
"""
import difflib
import fnmatch
import inspect
from typing import Any, Dict, FrozenSet, List, Mapping, Optional

from mmengine.config import Config

from mmdet_maskdiff.diffusion.sampler_settings import (FAST_KEYS,
                                                       SAMPLER_HOME,
                                                       SAMPLER_KEYS)
from mmdet_maskdiff.few_shot.config_keys import FEW_SHOT_KEY, FEW_SHOT_KEYS
from .cli_checks import InputError
from .config_tree import MISSING, plain_config, value_at, value_holders

#: written before a key that may be new (``+my_key=1``)
NEW_KEY_PREFIX = '+'
#: the ``--help`` text of every tool's ``--cfg-options``
CFG_OPTIONS_HELP = (
    'override settings of the config: key=value pairs, nested keys joined '
    'by dots and list items by index '
    '(model.test_cfg.rcnn.diffusion_sampling.steps=8, '
    'custom_hooks.0.crop_size=32); a list value as key="[a,b]" or key=a,b. '
    'A key the config does not have is an error naming the closest one; '
    'write +key=value to add a new key on purpose')
_SAMPLER_PARENT, _SAMPLER_NAME = SAMPLER_HOME.rsplit('.', 1)
#: keys that the code reads with a default, by the dotted path of their dict
#: (``fnmatch`` patterns; '' is the top level, which also takes the Runner's
#: arguments).
KNOWN_KEYS: Dict[str, tuple] = {
    '': ('runner_type', 'custom_imports', 'default_scope', 'tta_model',
         'tta_pipeline'),
    'randomness': ('seed', 'diff_rank_seed', 'deterministic'),
    'env_cfg': ('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'),
    'env_cfg.mp_cfg': ('mp_start_method', 'opencv_num_threads'),
    'auto_scale_lr': ('enable', 'base_batch_size'),
    FEW_SHOT_KEY: FEW_SHOT_KEYS,
    _SAMPLER_PARENT: (_SAMPLER_NAME, ),  # absent: the default sampler
    SAMPLER_HOME: SAMPLER_KEYS,
    f'{SAMPLER_HOME}.fast': FAST_KEYS,
}
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: listed after "it has:" when no key is close to a misspelt one
MAX_LISTED = 12
_MISSING = object()  # a key the config leaves out


def _arguments(function) -> FrozenSet[str]:
    """Names ``function`` takes by keyword (none when it has no
    signature)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(
        p.name for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name != 'self')


def _registered(name: str) -> List[Any]:
    """What ``type=name`` builds: the classes or functions of that name in
    every mmdet registry (and their mmengine parents)."""
    import mmdet.registry
    from mmengine.registry import Registry
    found = []
    for registry in vars(mmdet.registry).values():
        if not isinstance(registry, Registry):
            continue
        try:
            target = registry.get(name)
        except Exception:  # noqa: B902  (a malformed name: not a class)
            target = None
        if target is not None and target not in found:
            found.append(target)
    return found


def constructor_keys(kind: Any) -> FrozenSet[str]:
    """The keyword arguments of what a config dict of ``type=kind`` builds
    (every ``__init__`` of a class and its bases), empty when unknown."""
    targets = _registered(kind) if isinstance(kind, str) else [kind]
    names: set = set()
    for target in targets:
        if inspect.isclass(target):
            for cls in target.__mro__[:-1]:  # without object
                if '__init__' in vars(cls):
                    names |= _arguments(vars(cls)['__init__'])
        elif callable(target):
            names |= _arguments(target)
    return frozenset(names)


def _runner_keys() -> FrozenSet[str]:
    from mmengine.runner import Runner
    return _arguments(Runner.__init__) - {'cfg'}


def _dataloader_keys() -> FrozenSet[str]:
    from torch.utils.data import DataLoader
    return _arguments(DataLoader.__init__)


def runtime_top_keys() -> FrozenSet[str]:
    """The top-level keys read after the config is parsed: the Runner's
    arguments, those of :data:`KNOWN_KEYS` ``['']`` and ``few_shot``."""
    return _runner_keys() | set(KNOWN_KEYS['']) | {FEW_SHOT_KEY}


def file_variables(cfg: Config) -> List[str]:
    """The top-level keys of ``cfg`` that nothing reads once it is parsed:
    variables of the config files (``data_root``, ``train_pipeline``,
    ``base_train_dataset``), used while the files were read and kept by
    mmengine as keys."""
    runtime = runtime_top_keys()
    return [str(k) for k in cfg._cfg_dict if k not in runtime]


def file_variable_error(cfg: Config,
                        key: str,
                        option: str = '--cfg-options') -> Optional[str]:
    """Why the override ``key`` would change nothing: it names a variable of
    the config files (:func:`file_variables`), or a key inside one; None
    otherwise.

    mmengine substitutes such a variable into the keys built from it while
    it reads the files (``data_root`` into every dataset's ``data_root``) and
    keeps it as a key, but nothing reads it afterwards: overriding it does
    not re-interpolate. The message names the keys the run reads that hold
    its value (:func:`value_holders`), which are the ones to set.

    Args:
        cfg (Config): The parsed config.
        key (str): A dotted ``--cfg-options`` key (``+`` keys pass).
        option (str): The option named in the message.

    Returns:
        str | None: One line naming the variable and the keys to set.
    """
    if key.startswith(NEW_KEY_PREFIX):
        return None
    parts = key.split('.')
    if parts[0] not in file_variables(cfg):
        return None
    tree = plain_config(cfg.to_dict())
    runtime = {k: v for k, v in tree.items() if k in runtime_top_keys()}
    value = value_at(tree, parts)
    holders = [] if value is MISSING else value_holders(runtime, value)
    if holders and not isinstance(value, (str, Mapping, list)):
        # a number: keep the keys of the same name when there are any
        named = [h for h in holders if h.rsplit('.', 1)[-1] == parts[-1]]
        holders = named or holders
    if not holders and len(parts) > 1:  # the variable as a whole
        holders = [
            f'{path}.{".".join(parts[1:])}'
            for path in value_holders(runtime, tree[parts[0]])
        ]
    if holders:
        instead = ('set the keys that took its value instead: '
                   f'{_listing(holders, in_order=True)}')
    elif value is None or isinstance(value, bool) or value == '':
        instead = (f'set the keys that took its value instead (its value, '
                   f'{value!r}, is too common to find them)')
    else:
        instead = 'no key the run reads holds its value (it has no effect)'
    return (f'{option} {key}: {parts[0]} is a variable of the config file, '
            'already used when the file was read (changing it does not '
            f're-interpolate the keys built from it); {instead}; to set it '
            f'anyway: {NEW_KEY_PREFIX}{key}=...')


def optional_keys(path: str, node: Any) -> FrozenSet[str]:
    """Keys that the dict at ``path`` may leave out: read with a default.

    Args:
        path (str): Dotted path of the dict ('' for the top level).
        node: The dict itself, or ``{}`` for a dict the config leaves out.

    Returns:
        frozenset[str]: ``_delete_``, the constructor arguments of its
        ``type``, and the :data:`KNOWN_KEYS` of its path (the Runner's
        arguments at the top level, a data loader's).
    """
    keys = {'_delete_'}
    for pattern, known in KNOWN_KEYS.items():
        if fnmatch.fnmatchcase(path, pattern):
            keys |= set(known)
    kind = node.get('type') if isinstance(node, Mapping) else None
    if kind is not None:
        keys |= constructor_keys(kind)
    if path == '':
        keys |= _runner_keys()
    elif path in DATALOADERS:
        keys |= _dataloader_keys()
    return frozenset(keys)


def _join(parts: List[str]) -> str:
    return '.'.join(parts)


def _closest(root: Mapping, parts: List[str], first_wrong: int) -> str:
    """``parts`` corrected level by level to the closest existing keys
    (difflib), as far as a close key exists; '' when the first wrong part has
    none."""
    node: Any = root
    fixed: List[str] = []
    for depth, part in enumerate(parts):
        if node is _MISSING or isinstance(node, Mapping):
            here = node if node is not _MISSING else {}
            keys = {str(k) for k in here} | optional_keys(_join(fixed), here)
            if not keys and node is _MISSING:  # nothing known below
                return _join(fixed + parts[depth:])
            close = [part] if part in keys else difflib.get_close_matches(
                part, sorted(keys), n=1)
            if not close:
                return _join(fixed) if depth > first_wrong else ''
            fixed.append(close[0])
            node = here.get(close[0], _MISSING)
        elif (isinstance(node, list) and part.isdigit()
              and int(part) < len(node)):
            fixed.append(part)
            node = node[int(part)]
        else:
            return _join(fixed)
    return _join(fixed)


def _listing(keys, in_order: bool = False) -> str:
    keys = list(keys) if in_order else sorted(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    return shown + (', ...' if len(keys) > MAX_LISTED else '')


def unknown_key_error(cfg: Config,
                      key: str,
                      option: str = '--cfg-options') -> Optional[str]:
    """Why the override ``key`` names no key of ``cfg``, or None when it
    does (see the module docstring).

    Args:
        cfg (Config): The parsed config.
        key (str): A dotted ``--cfg-options`` key, ``+`` for a new one.
        option (str): The option named in the message.

    Returns:
        str | None: One line naming the key and the closest existing one.
    """
    variable = file_variable_error(cfg, key, option)
    if variable is not None:
        return variable
    new = key.startswith(NEW_KEY_PREFIX)
    parts = key[len(NEW_KEY_PREFIX):].split('.') if new else key.split('.')
    root = cfg._cfg_dict
    node: Any = root
    for depth, part in enumerate(parts):
        here, at = _join(parts[:depth]), _join(parts[:depth + 1])
        if node is _MISSING:  # below a key the config leaves out
            known = optional_keys(here, {}) - {'_delete_'}
            if new or part in known:
                continue
            if not known:
                return (f'{option} {key}: the config leaves {here} out (the '
                        f'code\'s default applies), so {part!r} cannot be '
                        f'checked; add it on purpose: '
                        f'{NEW_KEY_PREFIX}{key}=...')
        elif isinstance(node, Mapping):
            if part in node:
                node = node[part]
                continue
            if new or part in optional_keys(here, node):
                node = _MISSING
                continue
        elif isinstance(node, list):
            if not part.isdigit():
                return (f'{option} {key}: {here} is a list, so {part!r} '
                        f'must be an item index ({len(node)} items)')
            if int(part) >= len(node):
                count = f'{len(node)} item' + ('' if len(node) == 1 else 's')
                return (f'{option} {key}: {here} has {count}' +
                        (f' (indices 0-{len(node) - 1})' if node else ''))
            node = node[int(part)]
            continue
        else:
            kind = 'a tuple' if isinstance(node, tuple) else (
                'None' if node is None else f'a {type(node).__name__}')
            return (f'{option} {key}: {here} is {kind}, not a dict, so it '
                    f'has no key {part!r}; set {here} itself')
        suggestion = _closest(root, parts, depth)
        if suggestion:
            hint = f'did you mean {suggestion}?'
        else:
            siblings = set(node) if isinstance(node, Mapping) else set()
            hint = (f'{here or "its top level"} has: '
                    f'{_listing(str(k) for k in siblings)}')
        return (f'{option} {key}: the config has no key {at} ({hint}); a '
                f'new key on purpose: {NEW_KEY_PREFIX}{key}=...')
    return None


def new_key_free(key: str) -> str:
    """``key`` without the :data:`NEW_KEY_PREFIX`."""
    return key[len(NEW_KEY_PREFIX):] if key.startswith(
        NEW_KEY_PREFIX) else key


def merge_cfg_options(cfg: Config,
                      options: Optional[Mapping[str, Any]],
                      option: str = '--cfg-options') -> None:
    """Merge ``--cfg-options`` into ``cfg`` (in place), refusing a key the
    config does not have.

    The options are checked and merged one by one, in order, so a key may
    follow an earlier option that made its dict (``+extra=...``) or changed
    its ``type``.

    Args:
        cfg (Config): The parsed config.
        options (Mapping, optional): ``DictAction``'s dict of dotted keys
            (``+`` marks a new key); None merges nothing.
        option (str): The option named in error messages.

    Raises:
        InputError: one line naming the unknown key and the closest one.
    """
    for key, value in (options or {}).items():
        error = unknown_key_error(cfg, key, option)
        if error is not None:
            raise InputError(error)
        cfg.merge_from_dict({new_key_free(key): value})


def split_cfg_options(cfgs: Mapping[str, Config],
                      options: Mapping[str, Any],
                      option: str = '--cfg-options') -> Dict[str, dict]:
    """Options meant for several configs at once (the stages of a protocol,
    a model and its baseline): each goes to the configs that have its key.

    Args:
        cfgs (Mapping[str, Config]): The configs by name, the first one
            names a key no config has.
        options (Mapping): Dotted keys to values, as for
            :func:`merge_cfg_options`.
        option (str): The option named in error messages.

    Returns:
        dict[str, dict]: The options of each config (``+`` keys go to all).

    Raises:
        InputError: a key that none of the configs has (the message of the
            first config).
    """
    split: Dict[str, dict] = {name: {} for name in cfgs}
    for key, value in options.items():
        errors = {
            name: unknown_key_error(cfg, key, option)
            for name, cfg in cfgs.items()
        }
        if all(errors.values()):
            raise InputError(next(iter(errors.values())))
        for name, error in errors.items():
            if error is None:
                split[name][key] = value
    return split
