"""The tracker interface (per clip: ``track``; per frame, online: ``stream``) and the trivial tracker."""
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

    ``stream()`` returns the per-frame form (online): ``.update(detections) -> (N,) int64`` track ids of one
    frame's detections, stream-wide (>= 1, never reused; -1 = the row is dropped). The default links nothing
    (every detection its own id, as :class:`NoTracker`); a tracker that can link frame by frame overrides it.
    """

    def track(self, detections: ObjectTable, clip: Clip) -> ObjectTable:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, detections: ObjectTable, clip: Clip) -> ObjectTable:
        return self.track(detections, clip)

    def prepare(self) -> None:
        """Imports the heavy libraries ``track`` will need, in the calling thread. The pipeline calls it before it
        spreads clips over worker threads: importing torch in one thread while another runs OpenCV has crashed
        the process with a floating point exception (SIGFPE) on this stack. The default needs nothing."""

    def stream(self) -> "TrackerStream":
        if type(self).stream is Tracker.stream and not isinstance(self, NoTracker):
            import logging

            logging.getLogger(__name__).warning("%s has no per-frame mode: online, every detection gets its own "
                                                "track id (no linking)", type(self).__name__)
        return TrackerStream()


class TrackerStream:
    """Per-frame tracking: ``update(detections) -> (N,) int64`` ids (stream-wide, >= 1; -1 = dropped).

    This base links nothing: every detection gets a fresh id (:class:`NoTracker`'s rule, stream-wide).
    """

    def __init__(self):
        self.next_id = 1

    def update(self, detections: ObjectTable) -> np.ndarray:
        out = self.next_id + np.arange(len(detections), dtype=np.int64)
        self.next_id += len(detections)
        return out


class NoTracker(Tracker):
    """No linking (``tracker=none``): per-frame scoring.

    Every detection becomes its own one-row track (ids 1..N in row order), so track-level smoothing in the scorer
    is a no-op and each object is scored from its own frame only.
    """

    def track(self, detections: ObjectTable, clip: Clip) -> ObjectTable:
        return ObjectTable(detections.frame, detections.xyxy, detections.score,
                           np.arange(1, len(detections) + 1), detections.cls)
