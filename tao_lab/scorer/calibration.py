"""Training-only percentile calibration, shared by the scorers.

A raw score ``s`` (one attribute of :class:`~tao_lab.scorer.attribute.AttributeScorer`, one component of
:class:`~tao_lab.scorer.temporal_mae.TemporalMaeScorer`) becomes ``(s - lo) / (hi - lo)``, where ``lo`` is the
minimum and ``hi`` the ``upper_percentile`` of the calibration scores (training objects, or held-out training
clips), never of test scores. A typical training object then scores about 0 and the training tail about 1, so
attributes and components add up on one scale, and a fixed threshold (TAO's tau = 1) means "beyond the training
tail". The scorers keep ``[lo, hi]`` in float64 buffers (their checkpoints carry them).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def percentile_range(scores: np.ndarray, upper_percentile: float, what: str) -> tuple[float, float]:
    """``(lo, hi)``: the minimum and the ``upper_percentile`` of the finite calibration ``scores``.

    Constant scores give ``hi = lo + 1`` (with a warning naming ``what``): the scale falls back to 1 instead of a
    division by zero. No finite score at all is an error naming ``what``.
    """
    scores = np.asarray(scores)
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        raise ValueError(f"{what}: no finite calibration scores")
    lo = float(finite.min())
    hi = float(np.percentile(finite, float(upper_percentile)))
    if not hi > lo:
        log.warning("%s: calibration scores are constant (%.4g); the scale falls back to 1", what, lo)
        hi = lo + 1.0
    return lo, hi


def calibrate(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(raw - lo) / (hi - lo)`` (float64 for float64 input; NaN stays NaN)."""
    return (raw - lo) / (hi - lo)


def context_reference(ctx: np.ndarray, errors: np.ndarray, window: int, min_rows: int = 20) -> np.ndarray:
    """(window,) float64 expected error by rows of context, relative to a full window (the last entry is 1).

    Entry c-1 is the median of the finite calibration ``errors`` of rows with ``ctx`` = c rows of context (the
    temporal MAE scorer divides a row's reconstruction error by it, so short and untracked objects are judged
    against objects with as little context). Made non-increasing in c (less context never makes the expected error
    smaller); a bucket with fewer than ``min_rows`` rows takes the value of the next longer one; too few rows
    overall (or a non-positive median) give all ones (no context normalisation).
    """
    ok = np.isfinite(errors)
    ref = np.full(window, np.nan)
    for c in range(window, 0, -1):
        sel = ok & (ctx == c)
        if sel.sum() >= min_rows:
            ref[c - 1] = np.median(errors[sel])
        elif c < window:
            ref[c - 1] = ref[c]
    if not np.isfinite(ref).all() or not (ref > 0).all():
        ref = np.ones(window)  # too few calibration rows: no context normalisation
    ref = np.maximum.accumulate(ref[::-1])[::-1]
    return ref / ref[-1]
