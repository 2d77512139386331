"""Load checkpoints without running code they carry.

A ``.pth`` file is a pickle, and a pickle can call any function while it
loads (an object whose ``__reduce__`` names ``os.system``, hidden anywhere in
the file). Every checkpoint this package reads goes through
:func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` — tensors,
containers and plain values — plus, for the duration of that one load, the
few other globals that the checkpoints of this package hold
(:func:`allowed_globals`). :func:`register_checkpoint_loader` makes it
mmengine's loader of local files, so ``load_from``, ``resume``,
``tools/test.py`` and mmdet's ``init_detector`` / ``DetInferencer`` use it as
soon as ``mmdet_maskdiff`` is imported (its tools do, and every config does
through ``custom_imports``). It also stands in for mmengine 0.10.7's own
``torch.load`` without ``weights_only``, which torch >= 2.6 turns into a
weights-only load that refuses every mmengine checkpoint
(open-mmlab/mmengine#1655).

Anything else — in ``meta``, in ``state_dict``, in a zip or a legacy (plain
pickle) file — is refused with :class:`UntrustedCheckpointError`, one line
that names the file, the globals and the opt-in: a file listed in
``MMDET_MASKDIFF_TRUSTED_CHECKPOINTS`` (paths separated by ``os.pathsep``) is
unpickled in full, running whatever it holds. See docs/security.md.

The training config mmengine stores in a checkpoint (``meta['cfg']``) is
Python text that ``Config.fromstring`` would execute;
:func:`stored_config_value` reads one variable of it as literals instead.
"""
import ast
import os
import os.path as osp
import pickle
import re
from typing import Any, Callable, FrozenSet, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .cli_checks import InputError
from .pickle_globals import pickle_globals

#: checkpoint files to unpickle in full (os.pathsep-separated paths)
TRUSTED_ENV = 'MMDET_MASKDIFF_TRUSTED_CHECKPOINTS'
#: the methods mmengine's HistoryBuffer keeps in its state (pickled as
#: ``getattr(HistoryBuffer, name)``, see :func:`history_buffer_method`)
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
#: the newest pickle protocol torch's weights-only unpickler reads
MAX_WEIGHTS_ONLY_PROTOCOL = 3


class UntrustedCheckpointError(InputError, pickle.UnpicklingError):
    """A checkpoint holds more than :func:`load_checkpoint_file` allows."""


def history_buffer_method(owner: Any, name: str) -> Callable:
    """``getattr`` restricted to what mmengine checkpoints use it for.

    A ``HistoryBuffer`` (the message hub's log history) pickles its
    statistics methods; under pickle protocol 2, which ``torch.save`` uses,
    a method is written as ``builtins.getattr(HistoryBuffer, 'min')``. A
    general ``getattr`` would let a pickle read any attribute of any object
    it can build; this one returns only those four methods.

    Raises:
        pickle.UnpicklingError: any other owner or name.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(owner, "__name__", type(owner).__name__)}, '
        f'{name!r}) is not allowed (only HistoryBuffer.'
        f'{"/".join(HISTORY_BUFFER_METHODS)})')


def allowed_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """The globals, besides torch's weights-only defaults, that a checkpoint
    of this package holds, as ``torch.serialization.safe_globals`` takes
    them: found with ``torch.serialization.get_unsafe_globals_in_checkpoint``
    on the checkpoints of ``tools/train.py`` (stage 1 and stage 2, mmengine
    0.10.7, numpy 2), of ``tools/model_converters/tfa_novel_init.py`` and on
    the weights-only files of the tests.

    * ``HistoryBuffer`` and, in place of ``builtins.getattr``,
      :func:`history_buffer_method` (the message hub's log history);
    * numpy arrays and scalars in the message hub: ``ndarray``, ``dtype``,
      ``multiarray._reconstruct`` and ``multiarray.scalar`` — under their
      numpy 2 names (``numpy._core``) and their numpy 1 names
      (``numpy.core``), so that checkpoints written under either load;
    * the classes of numeric dtypes (numpy >= 1.25 builds a ``float64``
      dtype as a ``numpy.dtypes.Float64DType``): bool, (unsigned) integers
      and floats of every size — the message hub holds float64 and int64
      ones; no object, string, void or datetime dtype.
    """
    multiarray = np._core.multiarray if hasattr(
        np, '_core') else np.core.multiarray
    names = [
        HistoryBuffer, (history_buffer_method, 'builtins.getattr'), np.ndarray,
        np.dtype
    ]
    for package in ('numpy._core', 'numpy.core'):
        names += [(multiarray._reconstruct,
                   f'{package}.multiarray._reconstruct'),
                  (multiarray.scalar, f'{package}.multiarray.scalar')]
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
               np.uint16, np.uint32, np.uint64, np.float16, np.float32,
               np.float64)
    if hasattr(np, 'dtypes'):  # numpy >= 1.25: a class per dtype
        names += [type(np.dtype(kind)) for kind in numeric]
    return names


def is_trusted(filename: str) -> bool:
    """Whether ``filename`` is listed in ``MMDET_MASKDIFF_TRUSTED_CHECKPOINTS``
    (compared as real paths)."""
    listed = os.environ.get(TRUSTED_ENV, '').split(os.pathsep)
    real = osp.realpath(filename)
    return any(
        path and osp.realpath(osp.expanduser(path)) == real for path in listed)


def allowed_global_names() -> FrozenSet[str]:
    """``module.name`` of every global a weights-only load of
    :func:`load_checkpoint_file` accepts: torch's defaults and
    :func:`allowed_globals`."""
    names = set()
    try:  # torch's own list has no public accessor
        from torch._weights_only_unpickler import _get_allowed_globals
        names |= set(_get_allowed_globals())
    except ImportError:
        pass
    for entry in allowed_globals():
        names.add(entry[1] if isinstance(entry, tuple) else
                  f'{entry.__module__}.{entry.__qualname__}')
    return frozenset(names)


def _refusal(filename: str, error: pickle.UnpicklingError) -> str:
    """The one-line message of a weights-only load that ``error`` stopped.

    The offending globals are read from the file's opcodes
    (:func:`~.pickle_globals.pickle_globals`): torch's error names only the
    first one, and none for a pickle of protocol >= 4, which its unpickler
    stops reading at the first opcode it lacks.
    """
    # torch re-raises the unpickler's error with paragraphs of advice (that
    # include turning weights_only off); the unpickler's own is the context
    inner = error.__context__ if isinstance(error.__context__,
                                            pickle.UnpicklingError) else error
    reason = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
    # torch writes a builtin as 'exec', not 'builtins.exec'
    found = [
        name if '.' in name else f'builtins.{name}'
        for name in re.findall(r'GLOBAL (\S+)', reason)
    ]
    try:
        protocol, in_file = pickle_globals(filename)
    except OSError:
        protocol, in_file = None, []
    allowed = allowed_global_names()
    names = sorted(set(found) | {n for n in in_file if n not in allowed})
    if names:
        what = (f'it holds {", ".join(names)}, which weights-only loading '
                'does not allow (a pickle global can run code)')
    elif protocol is not None and protocol > MAX_WEIGHTS_ONLY_PROTOCOL:
        what = (f'it is a pickle of protocol {protocol}, which weights-only '
                f'loading cannot read (it reads protocols up to '
                f'{MAX_WEIGHTS_ONLY_PROTOCOL}; torch.save writes 2 unless '
                'given pickle_protocol)')
    else:
        what = (f'weights-only loading stopped at: {reason} (not a '
                'checkpoint, or one with more than weights)')
    return (f'checkpoint {filename} is refused: {what}; if you trust the '
            f'file, load it anyway with {TRUSTED_ENV}={filename} '
            '(docs/security.md)')


def load_checkpoint_file(filename: str, map_location=None) -> Any:
    """``torch.load`` of a local file without running code it carries.

    Args:
        filename (str): The checkpoint (zip or legacy format).
        map_location: As ``torch.load``'s.

    Returns:
        The unpickled object (for an mmengine checkpoint, a dict with
        ``state_dict``, ``meta``, ``message_hub``, ...).

    Raises:
        FileNotFoundError: no such file.
        UntrustedCheckpointError: it holds a global outside
            :func:`allowed_globals` (one line: the file, the globals, the
            opt-in), or other data a weights-only load refuses.
        RuntimeError: torch cannot read it (truncated, not a checkpoint),
            one line naming the file.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} does not exist')
    try:
        if is_trusted(filename):
            return torch.load(
                filename, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(allowed_globals()):
            try:
                return torch.load(
                    filename, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError as exc:
                raise UntrustedCheckpointError(_refusal(filename,
                                                        exc)) from None
    except UntrustedCheckpointError:
        raise
    except Exception as exc:  # zip, pickle and EOF errors
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise RuntimeError(
            f'cannot read checkpoint {filename}: {lines[0]} '
            '(a truncated download or not a checkpoint?)') from exc


def register_checkpoint_loader() -> None:
    """Make :func:`load_checkpoint_file` mmengine's loader of local files
    (``CheckpointLoader``'s scheme without a prefix)."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_checkpoint_file, force=True)


def _literal(node: ast.AST) -> Any:
    """The value of an expression of literals, lists, tuples, ``{...}`` and
    ``dict(key=...)`` (how mmengine writes a config's text).

    Raises:
        ValueError: anything else (a name, another call, an operator).
    """
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(kw.arg for kw in node.keywords)):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {
            _literal(k): _literal(v)
            for k, v in zip(node.keys, node.values)
        }
    if isinstance(node, ast.List):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(item) for item in node.elts)
    return ast.literal_eval(node)


def stored_config_value(checkpoint: dict, name: str) -> Optional[Any]:
    """The value of the top-level ``name = ...`` of the training config that
    mmengine stores in ``checkpoint['meta']['cfg']``, without executing it.

    ``Config.fromstring`` would run the text, and it is whatever the
    checkpoint's author wrote; here it is parsed (:mod:`ast`) and only an
    assignment of literals and ``dict(...)`` is read.

    Returns:
        The value, or None: no such text, no such assignment, or one that is
        not literal (then nothing is known about it).
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    for statement in tree.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == name):
            try:
                return _literal(statement.value)
            except (ValueError, TypeError, SyntaxError):
                return None
    return None
