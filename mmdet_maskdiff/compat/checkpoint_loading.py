"""Load mmengine checkpoints on torch >= 2.6.

torch 2.6 changed the default of ``torch.load`` to ``weights_only=True``.
mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without the
argument, and its checkpoints carry the ``message_hub`` state (a
``HistoryBuffer`` and numpy objects), so ``load_from``, ``--resume``,
``tools/test.py`` and ``init_detector`` fail with ``UnpicklingError: Weights
only load failed ... HistoryBuffer`` (open-mmlab/mmengine#1655; fixed on
mmengine main by #1670, not released).

The fix re-registers mmengine's loader for local files with an explicit
``weights_only=False`` — the behaviour of every torch < 2.6. Only mmengine's
checkpoint loading is affected; other ``torch.load`` calls keep torch's safe
default. Load checkpoints only from sources you trust, as with any pickle.
"""
import inspect
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def _load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's local loader with ``weights_only=False``; a file torch
    cannot read (truncated, not a checkpoint) raises ``RuntimeError`` naming
    it — torch's own message ("PytorchStreamReader failed ...") does not."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} does not exist')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except Exception as exc:  # zip, pickle and EOF errors
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise RuntimeError(
            f'cannot read checkpoint {filename}: {lines[0]} '
            '(a truncated download or not a checkpoint?)') from exc


def apply() -> None:
    """Replace mmengine's local-file checkpoint loader when torch needs it."""
    if 'weights_only' not in inspect.signature(torch.load).parameters:
        return  # torch < 1.13: no such argument, nothing to fix
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
