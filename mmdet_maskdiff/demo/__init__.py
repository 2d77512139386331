"""All MaskDiff stages at CPU scale on the embedded synthetic dataset
(:mod:`.pipeline`) and their tables (:mod:`.report`).

The overrides that make a COCO config small live in
:mod:`mmdet_maskdiff.testing.small_scale`; ``cpu_scale_options`` and
``to_cfg_options_args`` are still importable from here for one release, with a
``DeprecationWarning``.
"""
import warnings

_MOVED = {
    'cpu_scale_options': 'mmdet_maskdiff.testing',
    'to_cfg_options_args': 'mmdet_maskdiff.testing',
}


def __getattr__(name: str):
    """The names that moved to :mod:`mmdet_maskdiff.testing`, with a
    ``DeprecationWarning``."""
    if name in _MOVED:
        warnings.warn(
            f'mmdet_maskdiff.demo.{name} moved to {_MOVED[name]}.{name}; the '
            'old name will be removed in the next release',
            DeprecationWarning,
            stacklevel=2)
        from mmdet_maskdiff import testing
        return getattr(testing, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
