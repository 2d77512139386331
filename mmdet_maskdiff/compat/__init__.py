"""Small fixes for the pinned stack (torch 2.13, mmengine 0.10.7, mmcv 2.1.0).

Each fix lives in its own module, is applied once at import and names the
upstream issue it works around. None of them changes behaviour on a stack that
does not have the problem.
"""
from .cpu_distributed import apply as _apply_cpu_distributed
from .process_group_exit import apply as _apply_process_group_exit
from .process_group_exit import release_process_group
from .warnings_filter import apply as _apply_warnings_filter

_apply_warnings_filter()
_apply_cpu_distributed()
_apply_process_group_exit()

__all__ = ['release_process_group']
