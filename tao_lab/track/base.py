"""The tracker interface and the trivial tracker."""
from __future__ import annotations

import numpy as np

from tao_lab.types import Clip, ObjectTable


def relabel_tracks(track_id: np.ndarray) -> np.ndarray:
    """Renumbers ids to 1..K in order of first appearance (rows are in frame order), so ids restart per clip."""
    track_id = np.asarray(track_id, dtype=np.int64)
    if len(track_id) == 0:
        return track_id.copy()
    _, first, inverse = np.unique(track_id, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    return rank[inverse]


class Tracker:
    """Links the detections of one clip into tracks.

    ``track`` returns the SAME rows as ``detections`` (same order, boxes, scores, classes) with ``track_id`` set:
    ids are >= 1, restart at 1 in every clip and are numbered in order of first appearance. Keeping the rows
    means features may be extracted before or after tracking, and no detection is ever lost.
    """

    def track(self, detections: ObjectTable, clip: Clip) -> ObjectTable:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, detections: ObjectTable, clip: Clip) -> ObjectTable:
        return self.track(detections, clip)


class NoTracker(Tracker):
    """No linking (``tracker=none``): per-frame scoring.

    Every detection becomes its own one-row track (ids 1..N in row order), so track-level smoothing in the scorer
    is a no-op and each object is scored from its own frame only.
    """

    def track(self, detections: ObjectTable, clip: Clip) -> ObjectTable:
        return ObjectTable(detections.frame, detections.xyxy, detections.score,
                           np.arange(1, len(detections) + 1), detections.cls)
