"""Scorer helpers shared by every scorer (numpy/scipy only): frame aggregation and smoothing."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from tao_lab.types import ObjectTable


def frame_scores_from_objects(frame: np.ndarray, scores: np.ndarray, num_frames: int,
                              empty_value: float = 0.0) -> np.ndarray:
    """(T,) float32 max of ``scores`` over the objects of each frame; ``empty_value`` where a frame has none."""
    out = np.full(int(num_frames), -np.inf, np.float64)
    frame = np.asarray(frame, np.int64)
    if len(frame):
        if frame.min() < 0 or frame.max() >= num_frames:
            raise ValueError(f"object frame indices outside [0, {num_frames})")
        np.maximum.at(out, frame, np.asarray(scores, np.float64))
    out[~np.isfinite(out)] = empty_value
    return out.astype(np.float32)


def smooth_frame_scores(frame_scores: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of one video's frame scores along time (sigma in frames; 0 = none; edges 'nearest')."""
    s = np.asarray(frame_scores, np.float32)
    if sigma <= 0 or len(s) < 2:
        return s.copy()
    return gaussian_filter1d(s, float(sigma), mode="nearest").astype(np.float32)


def smooth_along_tracks(objects: ObjectTable, values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median of per-object ``values`` (N,) along each track, over ``window`` of its detections.

    Objects with track_id < 0 and tracks shorter than 2 rows are left unchanged; window <= 1 returns a copy.
    """
    values = np.asarray(values, np.float32)
    out = values.copy()
    if window <= 1 or len(values) == 0:
        return out
    tid = objects.track_id
    order = np.lexsort((objects.frame, tid))
    t_sorted = tid[order]
    bounds = np.flatnonzero(np.diff(t_sorted)) + 1
    for seg in np.split(order, bounds):
        if len(seg) < 2 or tid[seg[0]] < 0:
            continue
        out[seg] = median_filter(values[seg], size=min(int(window), len(seg)) | 1, mode="nearest")
    return out
