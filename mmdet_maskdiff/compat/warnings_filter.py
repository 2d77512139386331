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
* mmengine 0.10.7 logs (through its logger, not ``warnings``) that
  ``"FileClient" will be deprecated`` and that ``"HardDiskBackend" is the
  alias of "LocalBackend"`` once per Runner, i.e. at every stage: its own
  ``CheckpointHook.before_train`` (``hooks/checkpoint_hook.py``) and
  ``runner.checkpoint.save_checkpoint`` call ``FileClient.infer_client``
  even when ``file_client_args`` is None (``LoggerHook`` too, when
  ``out_dir`` is set), and ``FileClient('disk')`` builds a
  ``HardDiskBackend``. No config argument avoids the call (the package's
  configs set no ``file_client_args``), so these two messages are filtered
  from every ``MMLogger``.
"""
import functools
import logging
import re
import warnings

from mmengine.logging import MMLogger

_IGNORED = (
    (UserWarning, r'pkg_resources is deprecated as an API'),
    (FutureWarning, r'`torch\.cuda\.amp\.\w+\(args\.\.\.\)` is deprecated'),
    (DeprecationWarning, r'__array__ implementation doesn\'t accept a copy'),
    (DeprecationWarning, r'`torch\.jit\.(script|interface)` is deprecated'),
)

#: mmengine log records (level WARNING) dropped from every MMLogger
_IGNORED_LOGS = re.compile(r'"FileClient" will be deprecated in future|'
                           r'"HardDiskBackend" is the alias of "LocalBackend"')


class _IgnoredLogs(logging.Filter):
    """Drops the mmengine log warnings of :data:`_IGNORED_LOGS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING
                    and _IGNORED_LOGS.search(str(record.msg)))


_LOG_FILTER = _IgnoredLogs()


def _filter_mmengine_logs() -> None:
    """Add the filter to every MMLogger, existing or created later (each
    Runner creates one)."""
    for logger in list(MMLogger._instance_dict.values()):
        logger.addFilter(_LOG_FILTER)  # no-op when already there
    init = MMLogger.__init__
    if getattr(init, '_maskdiff_filtered', False):
        return

    @functools.wraps(init)
    def filtered_init(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.addFilter(_LOG_FILTER)

    filtered_init._maskdiff_filtered = True
    MMLogger.__init__ = filtered_init


def apply() -> None:
    """Register the filters (idempotent: ``warnings`` de-duplicates them,
    loggers keep one filter object once)."""
    for category, message in _IGNORED:
        warnings.filterwarnings('ignore', message=message, category=category)
    _filter_mmengine_logs()
