"""Per-track sequences and fixed-length windows for the temporal MAE scorer (numpy only).

A *sequence* is the rows of one track in frame order (a track's consecutive detections; frames in which the
tracker lost the object are simply skipped, the window does not hold empty slots for them). Every untracked row
(``track_id < 0``) is a sequence of its own, of length 1. A *window* is at most ``length`` consecutive rows of a
sequence: sequences longer than ``length`` are cut into windows of exactly ``length`` rows every ``stride`` rows
(the last window is aligned with the sequence end so every row is covered); shorter sequences give one short
window. Windows are stored as an (W, length) int64 array of row indices padded with -1.
"""
from __future__ import annotations

import numpy as np

from tao_lab.types import ObjectTable


def track_sequences(objects: ObjectTable) -> list[np.ndarray]:
    """Row indices of each sequence: one per track (sorted by frame) plus one per untracked row."""
    n = len(objects)
    if n == 0:
        return []
    tid = objects.track_id
    order = np.lexsort((np.arange(n), objects.frame, tid))
    t_sorted = tid[order]
    bounds = np.flatnonzero(np.diff(t_sorted)) + 1
    out: list[np.ndarray] = []
    for seg in np.split(order, bounds):
        if tid[seg[0]] < 0:
            out.extend(seg[:, None])  # untracked: every row alone
        else:
            out.append(seg)
    return out


def window_starts(n: int, length: int, stride: int) -> np.ndarray:
    """Start offsets of the windows of a sequence of n rows (the last one ends at the sequence end)."""
    if n <= length:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n - length + 1, max(1, int(stride)), dtype=np.int64)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def make_windows(sequences: list[np.ndarray], length: int, stride: int,
                 offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows of all sequences.

    Returns (windows (W, length) int64 row indices + ``offset``, -1 = padding; seq_id (W,) int64 index of the
    sequence each window came from).
    """
    rows: list[np.ndarray] = []
    seq: list[int] = []
    for k, s in enumerate(sequences):
        for st in window_starts(len(s), length, stride):
            w = np.full(length, -1, np.int64)
            part = s[st:st + length]
            w[:len(part)] = part + offset
            rows.append(w)
            seq.append(k)
    if not rows:
        return np.zeros((0, length), np.int64), np.zeros(0, np.int64)
    return np.stack(rows), np.asarray(seq, np.int64)


def scatter_mean(index: np.ndarray, values: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """(n,) float64 mean of ``values[valid]`` per target row ``index[valid]``; NaN for rows never hit."""
    idx = np.asarray(index)[valid]
    val = np.asarray(values, np.float64)[valid]
    total = np.bincount(idx, weights=val, minlength=n)
    count = np.bincount(idx, minlength=n)
    out = np.full(n, np.nan)
    hit = count > 0
    out[hit] = total[hit] / count[hit]
    return out


def split_by_frame(objects: ObjectTable, features: dict[str, np.ndarray], cut: int,
                   ) -> tuple[tuple[ObjectTable, dict[str, np.ndarray]], tuple[ObjectTable, dict[str, np.ndarray]]]:
    """Rows with frame < cut and rows with frame >= cut (a temporal train/validation split of one clip)."""
    early = objects.frame < cut
    parts = []
    for m in (early, ~early):
        parts.append((objects.take(m), {k: np.asarray(v)[m] for k, v in features.items()}))
    return parts[0], parts[1]


def interleaved_masks(length: int, ratio: float) -> np.ndarray:
    """(P, length) bool fixed masking patterns (True = masked) used for deterministic scoring.

    P = round(1 / (1 - ratio)) (at least 2); pattern k keeps positions t with t % P == k visible, so each pattern
    masks a fraction (P-1)/P of the positions (0.75 for ratio 0.75) and every position is masked in P-1 patterns.
    """
    p = max(2, int(round(1.0 / max(1e-6, 1.0 - float(ratio)))))
    t = np.arange(length)
    return np.stack([(t % p) != k for k in range(p)])

