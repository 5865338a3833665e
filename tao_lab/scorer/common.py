"""Scorer helpers shared by every scorer (numpy/scipy only): frame aggregation and smoothing."""
from __future__ import annotations

import warnings
from functools import partial

import numpy as np
from scipy.ndimage import gaussian_filter1d

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


def smooth_along_tracks(objects: ObjectTable, values: np.ndarray, window: int, quantile: float = 50.0) -> np.ndarray:
    """Centred running median of per-object ``values`` (N,) along each track, over ``window`` of its detections;
    with ``quantile`` another percentile of the window than its median (50), e.g. 75: a value lasting a quarter of the
    window's detections survives, a shorter one does not.

    Objects with track_id < 0 and tracks shorter than 3 rows are left unchanged; window <= 1 returns a copy.
    Near the ends of a track the window is shifted inwards (the first detection gets the median of the first
    ``window`` detections), so an isolated spike is removed at the ends of a track as in its middle: a spike on
    the first detection is typical (the flow of an object's first frame is estimated against a frame where it was
    occluded or absent), and padding by repeating the end value would keep it.
    """
    if not 0.0 <= float(quantile) <= 100.0:
        raise ValueError(f"quantile must be a percentile in [0, 100], got {quantile!r}")
    values = np.asarray(values, np.float32)
    out = values.copy()
    if window <= 1 or len(values) == 0:
        return out
    if float(quantile) == 50.0:  # the median: np.median gives nanmedian's values, whose masked arrays cost 10x more
        pick, pick_nan = np.median, np.nanmedian
    else:
        pick, pick_nan = partial(np.percentile, q=float(quantile)), partial(np.nanpercentile, q=float(quantile))
    tid = objects.track_id
    order = np.lexsort((objects.frame, tid))
    t_sorted = tid[order]
    bounds = np.flatnonzero(np.diff(t_sorted)) + 1
    for seg in np.split(order, bounds):
        size = min(int(window) | 1, len(seg) if len(seg) % 2 else len(seg) - 1)  # odd, at most the track
        if size <= 1 or tid[seg[0]] < 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(values[seg], size)  # (len - size + 1, size)
        if not np.isnan(windows).any():
            picked = pick(windows, axis=1)
        else:
            with warnings.catch_warnings():  # an all-NaN window (no finite value) stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                picked = pick_nan(windows, axis=1)
        half = size // 2
        out[seg] = np.concatenate([np.repeat(picked[:1], half), picked, np.repeat(picked[-1:], half)])
    return out
