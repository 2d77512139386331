"""A labelled picture of the reverse diffusion chain of a few RoIs.

MaskDiff's Fig. 3 (Le et al., AAAI 2024, arXiv:2303.05105) shows masks
emerging from noise. This panel shows the same for the first RoIs of a batch,
with labels a person can read:

* one band of two tile rows per RoI: ``x_t`` (the noisy mask at step t) and
  ``pred x0`` (the network's estimate of the clean mask at that step); the
  band's label on the left names the RoI (e.g. its class and score);
* one column per kept step, headed ``t=<t>`` (the original timestep, T-1 for
  the first), and a last column ``mask``: the sampled mask (the estimate of
  the final step thresholded at 0, what the head returns for one sample).

Values in [-1, 1] are drawn grey (-1 black, 1 white). Used by
``DiffusionSamplerHook`` (``save_trajectory``).
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: text height in pixels is about 22 x the scale
FONT_SCALE = 0.45
GUTTER = 2
HEADER = 22  # pixels above the tiles (column titles)
LABEL = 150  # pixels left of the tiles: row titles, then sub-row names
NAME = 64  # of which the sub-row names ('x_t', 'pred x0')
RIGHT = 24  # pixels right of the tiles (room for the last title)
SUB_ROWS = ('x_t', 'pred x0')


def _put(panel: np.ndarray, text: str, x: int, y: int) -> None:
    """Black text with its baseline at (x, y)."""
    cv2.putText(panel, text, (x, y), FONT, FONT_SCALE, 0, 1, cv2.LINE_AA)


def _fit(text: str, width: int) -> str:
    """``text`` cut (with '..') to fit ``width`` pixels."""
    while text and cv2.getTextSize(text, FONT, FONT_SCALE,
                                   1)[0][0] > width - 4:
        text = text[:-3] + '..' if len(text) > 3 else ''
    return text


def roi_labels(labels: Sequence[int],
               scores: Sequence[float],
               class_names: Optional[Sequence[str]] = None) -> list:
    """Row titles ``'<class>\\n<score>'`` for :func:`trajectory_panel`.

    Args:
        labels (Sequence[int]): Class index of each RoI, in RoI order.
        scores (Sequence[float]): Its detection score.
        class_names (Sequence[str], optional): The label space; without it
            rows read ``'class <i>'``.
    """
    titles = []
    for label, score in zip(labels, scores):
        label = int(label)
        name = (
            class_names[label] if class_names is not None
            and 0 <= label < len(class_names) else f'class {label}')
        titles.append(f'{name}\n{float(score):.2f}')
    return titles


def _grey_tile(t: torch.Tensor, scale: int) -> np.ndarray:
    """(m, m) values in [-1, 1] -> uint8 grey (m * scale, m * scale)."""
    img = ((t.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    return np.kron(img, np.ones((scale, scale), np.uint8))


def _draw_column_titles(panel: np.ndarray, steps: Sequence[int],
                        num_steps: int, cell: int) -> None:
    """``t=<step>`` above each of the ``num_steps`` step columns and
    ``mask`` above the mask column after them."""
    titles = [f't={int(t)}' for t in steps[:num_steps]] + ['mask']
    for col, title in enumerate(titles):
        room = cell + (RIGHT if col == num_steps else 0)
        _put(panel, _fit(title, room), LABEL + col * cell + 2, HEADER - 6)


def _draw_roi_band(panel: np.ndarray, top: int, label: str,
                   series: Tuple[torch.Tensor, torch.Tensor],
                   final: torch.Tensor, cell: int, scale: int) -> None:
    """One RoI's band from row ``top``: its label (up to 3 lines), a
    :data:`SUB_ROWS` row per series (S, m, m) (x_t, x̂_0), the final mask
    (m, m) after the last step, and a separating line below."""
    steps = series[0].shape[0]
    for i, line in enumerate(label.split('\n')[:3]):
        _put(panel, _fit(line, LABEL - NAME), 2, top + 16 + 18 * i)
    for sub, (name, tiles) in enumerate(zip(SUB_ROWS, series)):
        y = top + sub * cell
        _put(panel, name, LABEL - NAME, y + cell // 2 + 5)
        for s in range(steps):
            x = LABEL + s * cell
            panel[y:y + cell - GUTTER,
                  x:x + cell - GUTTER] = _grey_tile(tiles[s], scale)
    x = LABEL + steps * cell
    panel[top:top + cell - GUTTER,
          x:x + cell - GUTTER] = _grey_tile(final, scale)
    # a line between RoIs
    panel[top + len(SUB_ROWS) * cell - 1, :] = 160


def trajectory_panel(trajectory: dict,
                     row_labels: Optional[Sequence[str]] = None,
                     num_rois: int = 4,
                     cell_size: int = 56) -> np.ndarray:
    """Render the trajectory of the first ``num_rois`` RoIs.

    Args:
        trajectory (dict): ``DiffusionMaskHead.last_trajectory``: ``steps``
            (list of S timesteps), ``x_t`` and ``pred_x0`` (B, S, 1, m, m).
        row_labels (Sequence[str], optional): One title per RoI of the
            trajectory's first chunk, lines separated by ``'\\n'`` (e.g.
            ``'heart\\n0.87'``, see :func:`roi_labels`); at most this many
            rows are drawn (with ``num_samples`` > 1 the trajectory's later
            rows are the other samples of the same RoIs). Defaults to
            ``'RoI <i>'``.
        num_rois (int): RoIs (bands) drawn. Defaults to 4.
        cell_size (int): Tiles are the mask upscaled by the largest integer
            factor that keeps them within this size (at least 1). Defaults
            to 56.

    Returns:
        np.ndarray: uint8 grey picture, ``(HEADER + R * 2 * cell,
        LABEL + (S + 1) * cell + RIGHT)`` with ``cell = m * scale +
        GUTTER``, white background.
    """
    if row_labels is not None:
        num_rois = min(num_rois, len(row_labels))
    x_t = trajectory['x_t'][:num_rois, :, 0]
    pred = trajectory['pred_x0'][:num_rois, :, 0]
    final = (pred[:, -1] > 0).float() * 2 - 1
    rows, steps, side = x_t.shape[0], x_t.shape[1], x_t.shape[-1]
    scale = max(1, cell_size // side)
    cell = side * scale + GUTTER
    height = HEADER + rows * len(SUB_ROWS) * cell
    width = LABEL + (steps + 1) * cell + RIGHT
    panel = np.full((height, width), 255, np.uint8)
    _draw_column_titles(panel, trajectory['steps'], steps, cell)
    labels = list(row_labels or [])
    for r in range(rows):
        label = labels[r] if r < len(labels) else f'RoI {r}'
        _draw_roi_band(panel, HEADER + r * len(SUB_ROWS) * cell, label,
                       (x_t[r], pred[r]), final[r], cell, scale)
    return panel
