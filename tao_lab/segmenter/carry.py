"""Which box each prompted object has on each frame, for the weight-free segmenters.

A prompt fixes an object's box on its frame. Between an object's prompts (and after its last one) the object is
carried along the tracker's track: the prompt is tied to the scored object of its frame that overlaps it most
(IoU >= ``min_track_iou``; for a point-only prompt, the highest-scored box containing the point), and on the
following frames the box of that track is used, for at most ``max_carry`` frames after the prompt, until the next
prompt of the same object, or until the track has been missing for more than ``max_gap`` consecutive frames.
Optionally the same is done backwards for ``carry_backward`` frames before the object's first prompt: the prompt
filter prompts a new object only once it is confirmed, often a few frames after its first anomalous box, and
TAO's single SAM2 pass also masks an object on the frames before its prompt (sam2 conditions on all prompts).

With ``track_velocities``, every planned box also carries its track's velocity on that frame
(:func:`track_velocity`), for segmenters that keep the pixels moving with the object
(``ForegroundSegmenter(coherence=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from tao_lab.prompt_filter.geometry import box_iou
from tao_lab.types import ObjectScores, ObjectTable, Prompts

CARRY_SCORES = ("prompt", "track", "max")


@dataclass
class PlannedBox:
    """One object's box on one frame."""

    obj_id: int
    box: np.ndarray  # (4,) float64 xyxy px
    point: np.ndarray  # (2,) float64 positive point (x, y), NaN when the prompt had none / carried frame
    score: float  # the object's anomaly score on this frame
    prompted: bool  # True on the prompt's own frame, False on carried frames
    # (2,) float64 the track's velocity on this frame (dx, dy px/frame; track_velocity), NaN when not tracked or not
    # asked for (plan_boxes' track_velocities)
    velocity: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))


def _point_box(point: np.ndarray, size: float) -> np.ndarray:
    h = size / 2.0
    return np.array([point[0] - h, point[1] - h, point[0] + h, point[1] + h])


class _TrackIndex:
    def __init__(self, objects: ObjectTable):
        self.objects = objects
        self.by_frame: dict[int, np.ndarray] = {}
        order = np.argsort(objects.frame, kind="stable")
        frames, starts = np.unique(objects.frame[order], return_index=True)
        for t, rows in zip(frames, np.split(order, starts[1:])):
            self.by_frame[int(t)] = rows
        self.row_of: dict[tuple[int, int], int] = {}
        for r in order[::-1]:  # the first row of a (track, frame) wins
            if objects.track_id[r] >= 0:
                self.row_of[(int(objects.track_id[r]), int(objects.frame[r]))] = int(r)
        self._paths: Optional[dict[int, tuple[np.ndarray, np.ndarray]]] = None

    def velocity(self, tid: int, t: int) -> np.ndarray:
        """The track's velocity on frame t (:func:`track_velocity` over its rows, one per frame)."""
        if self._paths is None:  # every track's (frames, box centres), built on first use
            by_track: dict[int, list[tuple[int, int]]] = {}
            for (k, f), r in self.row_of.items():
                by_track.setdefault(k, []).append((f, r))
            self._paths = {}
            for k, fr in by_track.items():
                fr.sort()
                b = self.objects.xyxy[[r for _, r in fr]].astype(np.float64)
                self._paths[k] = (np.array([f for f, _ in fr], np.int64), (b[:, :2] + b[:, 2:]) / 2.0)
        if tid not in self._paths:
            return np.full(2, np.nan)
        frames, centres = self._paths[tid]
        return track_velocity(frames, centres, t)

    def associate(self, t: int, box: np.ndarray, point: np.ndarray, min_iou: float) -> Optional[int]:
        """Tracker id of the scored object on frame t that the prompt refers to, or None."""
        rows = self.by_frame.get(t)
        if rows is None:
            return None
        rows = rows[self.objects.track_id[rows] >= 0]
        if not len(rows):
            return None
        if np.isfinite(box).all():
            iou = box_iou(box[None], self.objects.xyxy[rows])[0]
            k = int(np.argmax(iou))
            return int(self.objects.track_id[rows[k]]) if iou[k] >= min_iou else None
        if np.isfinite(point).all():
            b = self.objects.xyxy[rows]
            inside = (b[:, 0] <= point[0]) & (point[0] < b[:, 2]) & (b[:, 1] <= point[1]) & (point[1] < b[:, 3])
            if inside.any():
                cand = rows[inside]
                return int(self.objects.track_id[cand[np.argmax(self.objects.score[cand])]])
        return None


def track_velocity(frames: np.ndarray, centres: np.ndarray, t: int, half_window: int = 3) -> np.ndarray:
    """(2,) px/frame: the median over the track's steps within ``half_window`` frames of t of the box centre's
    displacement per frame (frames (n,) sorted, centres (n, 2)); NaN without two detections in the window.
    A median over a few steps, because a box that merges with a neighbour for a frame or two jumps."""
    inside = np.flatnonzero(np.abs(frames - t) <= half_window)
    if len(inside) < 2:
        return np.full(2, np.nan)
    f, c = frames[inside], centres[inside]
    steps = np.diff(c, axis=0) / np.diff(f)[:, None]
    return np.median(steps, axis=0)


def plan_boxes(prompts: Prompts, scores: Optional[ObjectScores], num_frames: int, max_carry: int = 25,
               max_gap: int = 3, carry_backward: int = 0, min_track_iou: float = 0.3, carry_score: str = "prompt",
               point_box_size: float = 32.0, track_velocities: bool = False) -> list[list[PlannedBox]]:
    """Per frame (list of length num_frames), the boxes of the prompted objects (see the module docstring).

    carry_score: score of a carried frame: "prompt" (the score of the prompt it is carried from), "track" (the
        scored object's own score on that frame) or "max" of the two.
    point_box_size: side (px) of the square used as the box of a point-only prompt that has no track.
    track_velocities: fill each planned box's ``velocity`` (costs about 0.06 ms per frame on Ped2; NaN without).
    """
    if carry_score not in CARRY_SCORES:
        raise ValueError(f"carry_score must be one of {CARRY_SCORES}, got {carry_score!r}")
    T = int(num_frames)
    plan: list[list[PlannedBox]] = [[] for _ in range(T)]
    objects = scores.objects if scores is not None else ObjectTable.empty()
    index = _TrackIndex(objects)
    no_velocity = np.full(2, np.nan)

    def velocity(tid: Optional[int], t: int) -> np.ndarray:
        return index.velocity(tid, t) if track_velocities and tid is not None else no_velocity

    def carried_score(prompt_score: float, row: int) -> float:
        own = float(objects.score[row])
        return {"prompt": prompt_score, "track": own, "max": max(prompt_score, own)}[carry_score]

    def follow(tid: int, frames, prompt_score: float, oid: int) -> None:
        gap = 0
        for t in frames:
            row = index.row_of.get((tid, t))
            if row is None:
                gap += 1
                if gap > max_gap:
                    return
                continue
            gap = 0
            plan[t].append(PlannedBox(oid, objects.xyxy[row].astype(np.float64), np.full(2, np.nan),
                                      carried_score(prompt_score, row), False, velocity(tid, t)))

    for oid in np.unique(prompts.obj_id):
        rows = np.flatnonzero(prompts.obj_id == oid)
        rows = rows[np.argsort(prompts.frame[rows], kind="stable")]
        frames = prompts.frame[rows]
        for k, r in enumerate(rows):
            t = int(prompts.frame[r])
            if not 0 <= t < T or (k + 1 < len(rows) and frames[k + 1] == t):
                continue  # outside the clip, or a later prompt of the same object on the same frame replaces it
            box = prompts.xyxy[r].astype(np.float64)
            point = prompts.point[r].astype(np.float64)
            score = float(prompts.score[r])
            tid = index.associate(t, box, point, min_track_iou)
            if not np.isfinite(box).all():
                row = index.row_of.get((tid, t)) if tid is not None else None
                box = objects.xyxy[row].astype(np.float64) if row is not None else _point_box(point, point_box_size)
            plan[t].append(PlannedBox(int(oid), box, point, score, True, velocity(tid, t)))
            if tid is None:
                continue
            nxt = int(frames[k + 1]) if k + 1 < len(rows) else T
            follow(tid, range(t + 1, min(nxt, t + max_carry + 1, T)), score, int(oid))
            if k == 0 and carry_backward > 0:
                follow(tid, range(t - 1, max(t - carry_backward, 0) - 1, -1), score, int(oid))
    return plan
