"""Silence known, harmless warning floods of the pinned stack.

Only exact, documented messages are filtered; anything else still shows.

* setuptools 80/81 warn on every ``import pkg_resources`` (mmengine 0.10.7 and
  openmim import it) that the module "is deprecated"; the stack needs it and
  pins ``setuptools<81`` (pypa/setuptools#4950).
* mmengine 0.10.7's ``Config`` / ``Registry`` use ``torch.cuda.amp`` and
  friends that torch >= 2.4 marks deprecated (open-mmlab/mmengine#1592).
* mmdet 3.3.0 decorates ~70 functions with ``torch.jit.script`` at import;
  torch 2.13 deprecates ``torch.jit.script`` / ``torch.jit.interface``.
* pycocotools' mask decoding calls ``__array__`` without the ``copy`` keyword,
  which numpy 2 flags with a DeprecationWarning on every decoded mask.
"""
import warnings

_IGNORED = (
    (UserWarning, r'pkg_resources is deprecated as an API'),
    (FutureWarning, r'`torch\.cuda\.amp\.\w+\(args\.\.\.\)` is deprecated'),
    (DeprecationWarning, r'__array__ implementation doesn\'t accept a copy'),
    (DeprecationWarning, r'`torch\.jit\.(script|interface)` is deprecated'),
)


def apply() -> None:
    """Register the filters (idempotent: ``warnings`` de-duplicates them)."""
    for category, message in _IGNORED:
        warnings.filterwarnings('ignore', message=message, category=category)
