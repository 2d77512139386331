"""The globals a checkpoint's pickle names, read without unpickling it.

torch's weights-only unpickler reads pickle protocols 2 and 3 only (what
``torch.save`` writes): a file of protocol 4 or 5 stops at its first
``FRAME`` opcode (``Unsupported operand 149``) before any global is seen, and
``torch.serialization.get_unsafe_globals_in_checkpoint`` fails the same way.
:func:`pickle_globals` walks the opcodes with :mod:`pickletools` instead
(nothing is built or called), so that a refusal can name the globals of a
file of any protocol: ``GLOBAL`` (protocols 0-3) carries ``module name`` in
its argument (Python 2's names mapped to Python 3's, as the unpickler
does); ``STACK_GLOBAL`` (protocol >= 4) takes the two strings pushed
before it, written directly or fetched from the memo.
"""
import _compat_pickle
import io
import pickletools
import zipfile
from typing import BinaryIO, List, Optional, Tuple

#: a legacy ``torch.save`` file is five pickles (magic number, protocol,
#: system info, the object, the storage keys) and then raw storage bytes
MAX_PICKLES = 5
_STRING_OPS = frozenset(('SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8',
                         'UNICODE', 'SHORT_BINSTRING', 'BINSTRING', 'STRING'))
_PUT_OPS = frozenset(('PUT', 'BINPUT', 'LONG_BINPUT'))
_GET_OPS = frozenset(('GET', 'BINGET', 'LONG_BINGET'))


def _python3_name(module: str, name: str, protocol: int) -> str:
    """``module.name`` as the unpickler imports it: a pickle of protocol < 3
    names Python 2's modules (``__builtin__.exec``), which it maps to
    Python 3's (``builtins.exec``)."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f'{module}.{name}'


def _one_pickle(stream: BinaryIO) -> Tuple[int, List[str]]:
    """The protocol and the globals of the pickle at ``stream``'s position,
    read up to its ``STOP``.

    Raises:
        ValueError: the bytes are not a whole pickle (pickletools' error).
    """
    protocol, found = 0, []
    memo: dict = {}
    pushed: List[Optional[str]] = []  # the last values pushed (strings)
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name == 'PROTO':
            protocol = arg
        elif name == 'GLOBAL':  # arg: 'module name'
            found.append(_python3_name(*str(arg).split(' ', 1), protocol))
        elif name == 'STACK_GLOBAL':
            if len(pushed) >= 2 and None not in pushed[-2:]:
                found.append(f'{pushed[-2]}.{pushed[-1]}')
            pushed.clear()
            continue
        if name in _STRING_OPS:
            pushed.append(arg if isinstance(arg, str) else None)
        elif name == 'MEMOIZE':
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _PUT_OPS:
            memo[arg] = pushed[-1] if pushed else None
        elif name in _GET_OPS:
            pushed.append(memo.get(arg))
        elif name != 'FRAME':
            pushed.append(None)
        del pushed[:-2]
    return protocol, found


def pickle_globals(filename: str) -> Tuple[Optional[int], List[str]]:
    """The pickle protocol and the globals (``module.name``, in order, with
    repeats) of a checkpoint: a zip file's ``data.pkl`` or the pickles at the
    start of a legacy or plain-pickle file.

    Args:
        filename (str): The checkpoint.

    Returns:
        tuple: The protocol of its (first) pickle, None when it holds none
        that can be read; the globals of its whole pickles.
    """
    protocol: Optional[int] = None
    found: List[str] = []
    with open(filename, 'rb') as file:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                names = [
                    n for n in archive.namelist() if n.endswith('data.pkl')
                ]
                stream: BinaryIO = io.BytesIO(
                    archive.read(names[0]) if names else b'')
            count = 1
        else:
            file.seek(0)
            stream, count = file, MAX_PICKLES
        for _ in range(count):
            try:
                version, names = _one_pickle(stream)
            except Exception:  # noqa: B902  (raw bytes after the last one)
                break
            protocol = version if protocol is None else protocol
            found += names
    return protocol, found
