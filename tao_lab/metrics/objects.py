"""Object-level metrics RBDC and TBDC (Ramachandra & Jones, WACV 2020), as the de-facto AED script defines them
(REFERENCE.md §3), vectorised.

Definitions
-----------
- GT *regions*: one box per GT track per frame (every row of the GT tables); GT *tracks*: (video, track_id).
- Detections are sorted by score, descending. **Ties are broken by (video id in sorted order, frame, row index
  in that video's table)**, so the result never depends on dict or file order.
- Detection d is a *false positive* if it overlaps no GT region of its (video, frame) with IoU >= 0.1; otherwise
  every overlapping region that is not yet matched becomes matched (one detection may match several regions;
  a detection that only overlaps already-matched regions is neither TP nor FP).
- After each detection: FPR = cumulative false positives / ``num_frames`` (all test frames, including frames and
  videos without GT), RBDR = matched regions / all regions, TBDR = fraction of tracks with >= 10 % of their
  regions matched.
- The curve starts at (0, 0); points with FPR > 1 are dropped (no interpolation) and the last value is extended
  flat to FPR = 1; RBDC / TBDC are the trapezoid areas over FPR in [0, 1] (at most 1).
- ``group_ties=True`` records one operating point per distinct score instead of one per detection (the point
  after the whole tied group, which does not depend on the order inside the group).

IoU convention: boxes are ``xyxy`` in the ObjectTable convention (x2, y2 exclusive, like slicing), so a box's
area is (x2 - x1) * (y2 - y1). That is exactly AED's "+1" formula applied to inclusive pixel coordinates
(x_max = x2 - 1); the txt readers in :mod:`tao_lab.metrics.tracks` convert AED files (inclusive) to this
convention. Pass ``box_convention="inclusive"`` to apply the +1 to boxes that hold inclusive coordinates.

Vectorised: candidate (detection, region) pairs come from a sort by (video, frame); a region's match time is the
first rank of any detection that overlaps it, a detection's FP status does not depend on order, and a track's
detection time is the k-th smallest match time of its regions (k = smallest count reaching 10 %). The result is
identical to the sequential loop and costs O((D + R) log(D + R) + candidate pairs).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from tao_lab import boxes
from tao_lab.types import ObjectTable

__all__ = ["rbdc_tbdc", "box_iou"]

NAN = float("nan")


def box_iou(a: np.ndarray, b: np.ndarray, box_convention: str = "exclusive") -> np.ndarray:
    """Element-wise IoU of two (N, 4) xyxy box arrays (float64): :func:`tao_lab.boxes.box_iou` with
    ``pairwise=True``.

    ``exclusive``: area = (x2 - x1) * (y2 - y1) (ObjectTable convention); ``inclusive``: AED's
    (x2 - x1 + 1) * (y2 - y1 + 1). Boxes with zero union give IoU 0.
    """
    return boxes.box_iou(a, b, pairwise=True, convention=box_convention)


def _stack(tables: Mapping[str, ObjectTable], videos: list[str], what: str):
    vid, frame, box, score, track, row = [], [], [], [], [], []
    for i, v in enumerate(videos):
        t = tables.get(v)
        if t is None or len(t) == 0:
            continue
        if not isinstance(t, ObjectTable):
            raise TypeError(f"{what}[{v!r}] must be an ObjectTable, got {type(t).__name__}")
        if (t.frame < 0).any():
            raise ValueError(f"{what}[{v!r}]: negative frame index {int(t.frame.min())}")
        if not np.isfinite(t.xyxy).all():
            raise ValueError(f"{what}[{v!r}]: boxes contain NaN or inf")
        n = len(t)
        vid.append(np.full(n, i, np.int64))
        frame.append(t.frame)
        box.append(t.xyxy.astype(np.float64))
        score.append(t.score.astype(np.float64))
        track.append(t.track_id)
        row.append(np.arange(n, dtype=np.int64))
    if not vid:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros((0, 4)), np.zeros(0), z, z
    return (np.concatenate(vid), np.concatenate(frame), np.concatenate(box), np.concatenate(score),
            np.concatenate(track), np.concatenate(row))


def _track_index(vid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """Dense index 0..T-1 of the (video, track_id) pairs."""
    span = int(tid.max()) - int(tid.min()) + 1
    if span * (int(vid.max()) + 1) < 2 ** 62:
        _, inv = np.unique(vid * span + (tid - tid.min()), return_inverse=True)
    else:
        _, inv = np.unique(np.stack([vid, tid], axis=1), axis=0, return_inverse=True)
    return inv.reshape(-1)


def _min_count(n: np.ndarray, fraction: float) -> np.ndarray:
    """Smallest m with m / n >= fraction in float64 (the test the sequential loop makes), per n."""
    n = n.astype(np.float64)
    k = np.ceil(fraction * n)
    k = np.where((k - 1) / n >= fraction, k - 1, k)
    k = np.where(k / n < fraction, k + 1, k)
    return np.maximum(k, 1).astype(np.int64)


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area, summed with math.fsum (exactly rounded, so independent of summation order)."""
    return math.fsum(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).tolist())


def rbdc_tbdc(gt_tracks: Mapping[str, ObjectTable], detections: Mapping[str, ObjectTable], num_frames: int,
              group_ties: bool = False, iou_threshold: float = 0.1, track_fraction: float = 0.1,
              box_convention: str = "exclusive") -> dict:
    """Region- and track-based detection criteria (RBDC, TBDC).

    Args:
        gt_tracks: video id -> ObjectTable of GT regions (frame 0-based, xyxy, track_id). A video may be missing or
            empty (no anomalous object).
        detections: video id -> ObjectTable of detections (frame on the same base as the GT, xyxy, score; higher =
            more anomalous). Videos absent from ``gt_tracks`` are videos without GT: all their detections are
            false positives.
        num_frames: total number of test frames (all videos), the FPR denominator.
        group_ties: one operating point per distinct score instead of one per detection.
        iou_threshold, track_fraction: 0.1 and 0.1 in the standard definition.
        box_convention: see :func:`box_iou`.

    Returns:
        ``rbdc``, ``tbdc`` (NaN when there is no GT region), the curve ``fpr``, ``rbdr``, ``tbdr`` (float64
        arrays, from (0, 0) to FPR = 1, as integrated), and the counts ``num_regions``, ``num_tracks``,
        ``num_detections``, ``num_false_positives``, ``num_frames``.
    """
    num_frames = int(num_frames)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not 0 < track_fraction <= 1:
        raise ValueError(f"track_fraction must be in (0, 1], got {track_fraction}")
    videos = sorted(set(gt_tracks) | set(detections))
    g_vid, g_frame, g_box, _, g_tid, _ = _stack(gt_tracks, videos, "gt_tracks")
    d_vid, d_frame, d_box, d_score, _, _ = _stack(detections, videos, "detections")
    R, D = len(g_vid), len(d_vid)
    if not np.isfinite(d_score).all():
        raise ValueError("detection scores contain NaN or inf")

    # detection order: score descending, then video, frame, row. Rows are stacked by (video, row), so a stable
    # sort by (video, frame) followed by a stable sort by -score gives exactly that order.
    g_key = (g_vid << 32) | g_frame
    d_key = (d_vid << 32) | d_frame
    by_place = np.argsort(d_key, kind="stable")
    order = by_place[np.argsort(-d_score[by_place], kind="stable")]
    rank = np.empty(D, np.int64)
    rank[order] = np.arange(D)

    # candidate pairs: every GT region of the detection's (video, frame)
    g_order = np.argsort(g_key)
    gk = g_key[g_order]
    keys, starts, counts = np.unique(gk, return_index=True, return_counts=True)
    k = np.minimum(np.searchsorted(keys, d_key), max(len(keys) - 1, 0))
    found = keys[k] == d_key if len(keys) else np.zeros(D, bool)
    lo = np.where(found, starts[k] if len(keys) else 0, 0)
    cnt = np.where(found, counts[k] if len(keys) else 0, 0)
    pair_d = np.repeat(np.arange(D), cnt)
    offsets = np.cumsum(cnt) - cnt
    pair_g = g_order[lo[pair_d] + np.arange(len(pair_d)) - offsets[pair_d]]
    hit = box_iou(d_box[pair_d], g_box[pair_g], box_convention) >= iou_threshold
    pair_d, pair_g = pair_d[hit], pair_g[hit]

    # false positives (order-free) and region match times (first overlapping detection)
    overlaps = np.zeros(D, bool)
    overlaps[pair_d] = True
    fp_cum = np.cumsum(~overlaps[order])
    first = np.full(R, D, np.int64)
    np.minimum.at(first, pair_g, rank[pair_d])
    matched_cum = np.cumsum(np.bincount(first[first < D], minlength=D)) if D else np.zeros(0, np.int64)

    # track detection times: k-th smallest match time of its regions, k = min count reaching track_fraction
    if R:
        track_idx = _track_index(g_vid, g_tid)
        T = int(track_idx.max()) + 1
        n_regions = np.bincount(track_idx, minlength=T)
        k = _min_count(n_regions, track_fraction)
        srt = np.argsort(track_idx * (D + 1) + first)        # by track, then match time
        starts = np.cumsum(n_regions) - n_regions
        t_time = first[srt][starts + k - 1]
        tracks_cum = np.cumsum(np.bincount(t_time[t_time < D], minlength=D)) if D else np.zeros(0, np.int64)
    else:
        T = 0
        tracks_cum = np.zeros(D, np.int64)

    keep = np.arange(D)
    if group_ties and D:
        s = d_score[order]
        keep = np.append(np.flatnonzero(s[1:] != s[:-1]), D - 1)
    fpr = np.concatenate([[0.0], fp_cum[keep] / num_frames])
    rbdr = np.concatenate([[0.0], matched_cum[keep] / R]) if R else np.zeros(len(keep) + 1)
    tbdr = np.concatenate([[0.0], tracks_cum[keep] / T]) if T else np.zeros(len(keep) + 1)
    n_keep = int(np.searchsorted(fpr, 1.0, side="right"))      # fpr is non-decreasing: drop points with FPR > 1
    fpr = np.append(fpr[:n_keep], 1.0)
    rbdr = np.append(rbdr[:n_keep], rbdr[n_keep - 1])
    tbdr = np.append(tbdr[:n_keep], tbdr[n_keep - 1])
    return {"rbdc": _area(fpr, rbdr) if R else NAN, "tbdc": _area(fpr, tbdr) if T else NAN,
            "fpr": fpr, "rbdr": rbdr, "tbdr": tbdr,
            "num_regions": R, "num_tracks": T, "num_detections": D,
            "num_false_positives": int(fp_cum[-1]) if D else 0, "num_frames": num_frames}
