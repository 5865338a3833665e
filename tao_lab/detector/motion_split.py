"""Split a foreground blob where its two sides move differently (merged objects that do not move together).

Background subtraction joins objects that touch: a biker riding past walkers, two walkers passing each other the
other way, a walker beside someone standing. The column-profile split (:meth:`BackgroundSubtractionDetector._split`)
needs a thin neck between them; these often have none. Their optical flow tells them apart: the best vertical cut
of the blob is the one that most separates the mean flow of its left and right parts (the largest between-part
variance n_L n_R / n |m_L - m_R|^2 over the blob's foreground pixels, an Otsu split of the columns), and the blob is
cut there when the two means differ by more than ``min_speed`` px/frame AND by more than ``ratio`` times the faster
part's speed. Each column counts with the median flow of its foreground pixels, so a walker's swinging legs and arms
(less than half of its column's height) do not make a cut by themselves; the relative bar keeps a fast object's own
flow noise from cutting it.
"""
from __future__ import annotations

import numpy as np

COLUMN_FLOWS = ("median", "mean")  # how a column's (or, transposed, a row's) foreground pixels give its flow


def motion_cuts(comp: np.ndarray, flow: np.ndarray, min_width: int, min_area: int, min_speed: float,
                ratio: float, min_aspect: float = 0.0, column_flow: str = "median") -> list[tuple[int, int]]:
    """Column ranges [(0, c), (c, w)] (relative to the blob's box) of the two parts of one blob whose sides move
    apart, or [(0, w)] when it is not cut. One cut only: DIS's flow ramps across a border over about a patch, so a
    narrow part holding such a ramp would be cut once more.

    Args:
        comp: (h, w) bool, the blob's foreground pixels inside its box.
        flow: (h, w, 2) float, each pixel's motion (dx, dy) in px/frame.
        min_width: smallest width (px) of a part.
        min_area: smallest number of foreground pixels of a part.
        min_speed: the two parts' mean flows must differ by more than this (px/frame) ...
        ratio: ... and by more than this fraction of the faster part's speed.
        min_aspect: each part's box (around its foreground pixels) must be at least this many times its height
            wide: a sliver narrower than any object is the edge of one, not an object (0 = no bound).
        column_flow: how a column's foreground pixels give its flow: "median" (a walker's limbs, less than half of
            a column, do not move it) or "mean" (for a cut along rows on the transposed blob: a row through a walker's
            legs is all legs, and their mean follows the body, the stance leg still and the swinging one at about
            twice the body's speed, where the median falls to either leg).
    """
    w = comp.shape[1]
    if comp.shape != flow.shape[:2]:
        raise ValueError(f"flow {flow.shape} does not match the blob {comp.shape}")
    if column_flow not in COLUMN_FLOWS:
        raise ValueError(f"column_flow must be one of {COLUMN_FLOWS}, got {column_flow!r}")
    cut = _best_cut(comp, flow, min_width, min_area, min_speed, ratio, min_aspect, column_flow)
    return [(0, w)] if cut is None else [(0, cut), (cut, w)]


def _best_cut(comp: np.ndarray, flow: np.ndarray, min_width: int, min_area: int, min_speed: float,
              ratio: float, min_aspect: float = 0.0, column_flow: str = "median") -> int | None:
    """The column where the blob is cut (left part = columns before it), or None."""
    h, w = comp.shape
    if w < 2 * max(min_width, 1):
        return None
    pixels = comp.sum(axis=0)                                                     # (w,) foreground per column
    column = (_column_medians if column_flow == "median" else _column_means)(comp, flow, pixels)  # (w, 2)
    pixels = pixels.astype(np.float64)
    count = np.cumsum(pixels)                                                     # pixels in columns [0, c]
    moved = np.cumsum(column * pixels[:, None], axis=0)                           # their flow, per-column values
    total, total_flow = count[-1], moved[-1]
    cuts = np.arange(max(min_width, 1), w - max(min_width, 1) + 1)               # left part = columns [0, c)
    n_left, n_right = count[cuts - 1], total - count[cuts - 1]
    ok = (n_left >= max(min_area, 1)) & (n_right >= max(min_area, 1))
    if not ok.any():
        return None
    cuts, n_left, n_right = cuts[ok], n_left[ok], n_right[ok]
    mean_left = moved[cuts - 1] / n_left[:, None]
    mean_right = (total_flow - moved[cuts - 1]) / n_right[:, None]
    gap = np.linalg.norm(mean_left - mean_right, axis=1)
    k = int(np.argmax(n_left * n_right / total * gap ** 2))
    faster = max(np.linalg.norm(mean_left[k]), np.linalg.norm(mean_right[k]))
    if not (gap[k] > min_speed and gap[k] > ratio * faster):
        return None
    # Where: the flow is smooth across the border (DIS's patches straddle it), so the variance split leans towards
    # the smaller part. The cut goes where the columns cross from nearer the left mean to nearer the right one: the
    # allowed cut that leaves the fewest pixels on the side of the mean they are not nearer to (middle of ties).
    axis = (mean_right[k] - mean_left[k]) / gap[k] ** 2
    right_side = ((column - mean_left[k]) @ axis > 0.5) & (pixels > 0)
    wrong_left = np.cumsum(np.where(right_side, pixels, 0.0))[cuts - 1]           # right-side pixels left of the cut
    wrong_right = np.cumsum(np.where(right_side | (pixels == 0), 0.0, pixels)[::-1])[::-1]
    wrong = wrong_left + np.append(wrong_right, 0.0)[cuts]                        # ... and left-side ones right of it
    best = np.flatnonzero(wrong == wrong.min())
    cut = int(cuts[best[len(best) // 2]])
    if min_aspect > 0 and not (_wide_enough(comp[:, :cut], min_aspect) and _wide_enough(comp[:, cut:], min_aspect)):
        return None  # a sliver narrower than any object is the edge of one (its flow straddles the border)
    return cut


def _column_medians(comp: np.ndarray, flow: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(w, 2) per column the median (lower middle value) of the flow over its foreground pixels; 0 where none."""
    middle = np.maximum(pixels - 1, 0) // 2
    values = np.where(comp[..., None], flow[..., :2], np.inf)   # (h, w, 2); background sorts last
    values.sort(axis=0)
    out = values[middle, np.arange(comp.shape[1])].astype(np.float64)  # (w, 2): each column's middle row
    out[pixels == 0] = 0.0
    return out


def _column_means(comp: np.ndarray, flow: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(w, 2) per column the mean flow over its foreground pixels; 0 where none."""
    total = np.einsum("hw,hwd->wd", comp.astype(np.float64), flow.astype(np.float64))
    return total / np.maximum(pixels, 1)[:, None]


def _wide_enough(part: np.ndarray, min_aspect: float) -> bool:
    """Whether the box around ``part``'s foreground pixels is at least ``min_aspect`` times as wide as high."""
    rows, cols = np.nonzero(part.any(axis=1))[0], np.nonzero(part.any(axis=0))[0]
    return len(cols) > 0 and cols[-1] - cols[0] + 1 >= min_aspect * (rows[-1] - rows[0] + 1)
