"""Fragments: tracks that are pieces of detections rather than objects, kept out of the top of the gallery.

A background-subtraction detector also returns pieces: a strip of shadow or noise at the frame edge, half of a
person split by a pole, a blob that lives for two frames. Their appearance and speed are unusual, so they score
high, but they are not what a user wants to see first. A track is a fragment when any rule holds (each rule names
itself in the reason):

- ``tiny``: its median box is smaller than ``min_area_frac`` of the frame or its median short side is below
  ``min_side`` pixels;
- ``edge``: at least ``edge_share`` of its boxes touch the frame border (within ``edge_margin`` px): cut by the
  edge for most of its life, unlike a person who walks in;
- ``short``: fewer than ``min_frames`` boxes;
- ``jumpy``: its shape jumps: the median change of box area or aspect ratio between consecutive boxes exceeds
  ``max_jump`` (0.5 = by half), as when the detector merges and splits blobs.
"""
from __future__ import annotations

import numpy as np

from tao_lab.types import ObjectTable

DEFAULTS = {"min_area_frac": 0.002, "min_side": 8, "edge_margin": 2, "edge_share": 0.5, "min_frames": 5,
            "max_jump": 0.5}


def fragment_reasons(tracks: ObjectTable, height: int, width: int, **rules) -> dict[int, str]:
    """{track_id: reason} for every track of ``tracks`` ("" = a real object; reasons joined by "+").

    Rows without a track (track_id < 0) are not returned: callers treat them as fragments (``short``)."""
    r = {**DEFAULTS, **{k: v for k, v in rules.items() if v is not None}}
    unknown = set(rules) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown fragment rule(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out: dict[int, str] = {}
    if not len(tracks):
        return out
    order = np.lexsort((tracks.frame, tracks.track_id))
    tid = tracks.track_id[order]
    bounds = np.flatnonzero(np.diff(tid)) + 1
    frame_area = float(height * width)
    m = float(r["edge_margin"])
    for seg in np.split(order, bounds):
        t = int(tracks.track_id[seg[0]])
        if t < 0:
            continue
        b = tracks.xyxy[seg].astype(np.float64)
        w, h = np.maximum(b[:, 2] - b[:, 0], 1e-6), np.maximum(b[:, 3] - b[:, 1], 1e-6)
        reasons = []
        if np.median(w * h) < float(r["min_area_frac"]) * frame_area or np.median(np.minimum(w, h)) < r["min_side"]:
            reasons.append("tiny")
        edge = (b[:, 0] <= m) | (b[:, 1] <= m) | (b[:, 2] >= width - m) | (b[:, 3] >= height - m)
        if edge.mean() >= float(r["edge_share"]):
            reasons.append("edge")
        if len(seg) < int(r["min_frames"]):
            reasons.append("short")
        if len(seg) >= 3:
            area_change = np.abs(np.diff(np.log(w * h)))
            aspect_change = np.abs(np.diff(np.log(w / h)))
            if np.median(np.maximum(area_change, aspect_change)) > np.log1p(float(r["max_jump"])):
                reasons.append("jumpy")
        out[t] = "+".join(reasons)
    return out


def rank_tracks(tracks: ObjectTable, reasons: dict[int, str], k: int) -> list[int]:
    """Row indices of the ``k`` most anomalous tracks (each track's highest-scored row): real objects first by
    score, fragments after every real object (so they show only when there are too few real ones)."""
    if not len(tracks) or k <= 0:
        return []
    order = np.argsort(-tracks.score, kind="stable")
    seen, real, frag = set(), [], []
    for r in order:
        t = int(tracks.track_id[r])
        if t in seen:
            continue
        seen.add(t)
        (frag if t < 0 or reasons.get(t, "") else real).append(int(r))
    return (real + frag)[:k]
