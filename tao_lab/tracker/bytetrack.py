"""ByteTrack (ultralytics' ``BYTETracker``) fed by any detector through a small adapter."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tao_lab.tracker.base import Tracker, TrackerStream, relabel_tracks
from tao_lab.types import Clip, ObjectTable


class _Detections:
    """The minimal ``Boxes``-like object BYTETracker.update reads: conf, cls, xywh (centre), xyxy, len, masking."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, np.float32).reshape(-1)
        self.cls = np.asarray(cls, np.float32).reshape(-1)

    @property
    def xywh(self) -> np.ndarray:
        x1, y1, x2, y2 = self.xyxy.T
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "_Detections":
        return _Detections(self.xyxy[index], self.conf[index], self.cls[index])


def width_jumps(track_width: np.ndarray, det_width: np.ndarray, max_change: float) -> np.ndarray:
    """(T, D) bool: pairs whose box widths say they are not the same object from one frame to the next.

    ``track_width`` (T,) the widths of the tracks' last detections, ``det_width`` (D,) the detections'. A pair jumps
    when the detection is more than ``max_change`` x wider or narrower than the track: what a merge with a neighbour
    beside it, the split after it, or another object taking over the track (a cart where a walker was) looks like.
    Heights are not compared: a walker's box cut to its head and shoulders for a few frames (a blob broken by the
    background) and whole again afterwards is still the walker, and the scorer's ``piece_carry`` relies on such
    pieces staying in their track.
    """
    tw = np.asarray(track_width, np.float64).reshape(-1)
    dw = np.asarray(det_width, np.float64).reshape(-1)
    g = float(max_change)
    return (dw[None, :] > g * tw[:, None]) | (tw[:, None] > g * dw[None, :])


def buffered_iou(a: np.ndarray, b: np.ndarray, buffer: float) -> np.ndarray:
    """(A, B) IoU of xyxy boxes ``a`` (A,4) and ``b`` (B,4), each first enlarged by ``buffer`` x its own width and
    height on every side (0: plain IoU).

    Why: a box that moves more than its own width between two frames has no overlap with where it was, so IoU
    association loses it and every frame of a fast object starts a new track. Enlarged in proportion to its own size,
    a box overlaps its next position at any distance from the camera alike (Yang et al., "Hard to Track Objects with
    Irregular Motions and Similar Appearances? Make It Easier by Buffering the Matching Space", WACV 2023).
    """
    def grow(x):
        x = np.asarray(x, np.float64).reshape(-1, 4)
        wh = np.concatenate([x[:, 2:] - x[:, :2]] * 2, axis=1) * float(buffer)
        return x + wh * np.array([-1.0, -1.0, 1.0, 1.0])

    a, b = grow(a), grow(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _gated_bytetracker(args, max_size_change, buffer):
    """ultralytics' BYTETracker whose association cost of the first stage and of unconfirmed tracks (``get_dists``)
    is changed by two options; with both off (None, 0) the plain BYTETracker.

    ``buffer`` > 0: the IoU is that of the boxes enlarged by ``buffer`` x their size (:func:`buffered_iou`), so a
    fast object keeps its track. ``max_size_change``: pairs that :func:`width_jumps` flags are refused. A track's
    width is that of its last matched detection, not the Kalman filter's (which tracks aspect and height apart, so a
    box cut to half its height for a frame swings its predicted width). The second association, on low-score boxes,
    keeps ByteTrack's plain IoU."""
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.trackers.utils import matching

    if max_size_change is None and not buffer:
        return BYTETracker(args)

    class GatedBYTETracker(BYTETracker):
        def update(self, results, img=None, feats=None, **kwargs):
            out = super().update(results, img, feats, **kwargs)
            if max_size_change is None:  # only the width gate reads the tracks' last widths
                return out
            widths = results.xywh[:, 2]
            for t in self.tracked_stracks:  # the tracks matched or born in this frame keep their detection's width
                if t.frame_id == self.frame_id and t.idx is not None and 0 <= int(t.idx) < len(widths):
                    t.last_width = float(widths[int(t.idx)])
            return out

        def get_dists(self, tracks, detections):
            if buffer and len(tracks) and len(detections):
                iou = buffered_iou(np.array([t.xyxy for t in tracks]), np.array([d.xyxy for d in detections]),
                                   buffer)
                dists = 1.0 - iou
                if self.args.fuse_score:
                    dists = matching.fuse_score(dists, detections)
            else:
                dists = super().get_dists(tracks, detections)
            if max_size_change is not None and len(tracks) and len(detections):
                track_width = np.array([getattr(t, "last_width", t.tlwh[2]) for t in tracks], np.float64)
                det_width = np.array([d.tlwh[2] for d in detections], np.float64)
                dists = np.where(width_jumps(track_width, det_width, max_size_change), 1.0, dists)
            return dists

    return GatedBYTETracker(args)


class ByteTracker(Tracker):
    """ByteTrack association (Kalman filter + IoU, a second pass on low-confidence boxes) for any detector.

    Args (ultralytics' names):
        track_high_thresh: detections with score >= this take part in the first association.
        track_low_thresh: detections with score in (low, high) take part only in the second association.
        new_track_thresh: an unmatched detection starts a new track only when its score >= this.
        track_buffer: frames a lost track is kept for re-identification.
        match_thresh: maximum IoU distance (1 - IoU) of a match in the first association.
        fuse_score: multiply IoU similarity by detection score in the first association.
        keep_unmatched: detections that ByteTrack leaves without a track (score below the thresholds, or not
            matched while no new track was allowed) keep their row with a fresh one-row track id instead of being
            dropped; on by default because a fast anomalous object is exactly what IoU association tends to miss.
        max_size_change: None (ByteTrack as published) or a factor: a track and a detection whose box widths differ
            by more than it either way are not matched (:func:`width_jumps`): a walker's identity is not handed on to
            the cart or the group its blob met.
        buffer: 0 (plain IoU) or a fraction: the first association's IoU is that of the boxes enlarged by this x
            their width and height on every side (:func:`buffered_iou`), so an object moving more than its own width
            per frame keeps its track.
    The output keeps the detection rows and boxes (not the Kalman-smoothed boxes): see :class:`Tracker`.
    A new BYTETracker is built per clip and ids are renumbered 1..K per clip (ultralytics numbers tracks from a
    counter that older versions shared across the process).
    """

    def __init__(self, track_high_thresh: float = 0.25, track_low_thresh: float = 0.1,
                 new_track_thresh: float = 0.25, track_buffer: int = 30, match_thresh: float = 0.8,
                 fuse_score: bool = True, keep_unmatched: bool = True, max_size_change: float | None = None,
                 buffer: float = 0.0):
        self.args = SimpleNamespace(tracker_type="bytetrack", track_high_thresh=float(track_high_thresh),
                                    track_low_thresh=float(track_low_thresh),
                                    new_track_thresh=float(new_track_thresh), track_buffer=int(track_buffer),
                                    match_thresh=float(match_thresh), fuse_score=bool(fuse_score))
        self.keep_unmatched = bool(keep_unmatched)
        if max_size_change is not None and not float(max_size_change) > 1.0:
            raise ValueError(f"tracker.max_size_change must be null or a factor > 1, got {max_size_change!r}")
        self.max_size_change = None if max_size_change is None else float(max_size_change)
        if not float(buffer or 0.0) >= 0.0:
            raise ValueError(f"tracker.buffer must be >= 0 (0 = plain IoU), got {buffer!r}")
        self.buffer = float(buffer or 0.0)

    def prepare(self) -> None:
        from tao_lab.no_network import disable_ultralytics_sync, set_offline_env

        set_offline_env()
        disable_ultralytics_sync()  # imports ultralytics (and torch)
        import ultralytics.trackers.byte_tracker  # noqa: F401

    def _new_tracker(self):
        self.prepare()
        return _gated_bytetracker(self.args, self.max_size_change, self.buffer)

    def track(self, detections: ObjectTable, clip: Clip) -> ObjectTable:
        n = len(detections)
        ids = np.full(n, -1, np.int64)
        if n:
            if np.any(np.diff(detections.frame) < 0):
                raise ValueError("ByteTracker needs detections ordered by frame")
            tracker = self._new_tracker()
            starts = np.searchsorted(detections.frame, np.arange(clip.num_frames + 1))
            for f in range(clip.num_frames):
                lo, hi = starts[f], starts[f + 1]
                tracker.update(_Detections(detections.xyxy[lo:hi], detections.score[lo:hi], detections.cls[lo:hi]))
                # tracks updated or born in this frame (including unconfirmed newborns, which already own an id)
                for t in tracker.tracked_stracks:
                    if t.frame_id == tracker.frame_id and t.idx is not None and 0 <= int(t.idx) < hi - lo:
                        ids[lo + int(t.idx)] = int(t.track_id)
            unmatched = ids < 0
            if self.keep_unmatched and unmatched.any():
                ids[unmatched] = ids.max(initial=0) + 1 + np.arange(int(unmatched.sum()))
        keep = ids >= 0
        out = ObjectTable(detections.frame, detections.xyxy, detections.score, ids, detections.cls).take(keep)
        out.track_id = relabel_tracks(out.track_id)
        return out

    def stream(self) -> "ByteTrackStream":
        """Online: one BYTETracker for the whole stream, same rules (incl. ``keep_unmatched``)."""
        return ByteTrackStream(self)


class ByteTrackStream(TrackerStream):
    """One BYTETracker kept for a whole stream; ids are stream-wide from 1, in order of first appearance.

    Bounded memory on endless streams: the map of ByteTrack ids to stream ids forgets dropped tracks, and only
    the last 64 removed tracks are kept (ByteTrack keeps them only to keep them out of its lost pool).
    """

    def __init__(self, tracker: ByteTracker):
        super().__init__()
        self.keep_unmatched = tracker.keep_unmatched
        self.tracker = tracker._new_tracker()
        self.ids: dict[int, int] = {}  # ByteTrack id -> stream id

    def update(self, detections: ObjectTable) -> np.ndarray:
        n = len(detections)
        out = np.full(n, -1, np.int64)
        self.tracker.update(_Detections(detections.xyxy, detections.score, detections.cls))
        fid = self.tracker.frame_id
        if n:
            # tracks updated or born in this frame (including unconfirmed newborns, which already own an id)
            for t in self.tracker.tracked_stracks:
                if t.frame_id == fid and t.idx is not None and 0 <= int(t.idx) < n:
                    raw = int(t.track_id)
                    if raw not in self.ids:
                        self.ids[raw] = self.next_id
                        self.next_id += 1
                    out[int(t.idx)] = self.ids[raw]
            missing = out < 0
            if self.keep_unmatched and missing.any():
                out[missing] = self.next_id + np.arange(int(missing.sum()))
                self.next_id += int(missing.sum())
        if fid % 100 == 0:  # forget ids of tracks ByteTrack has dropped
            alive = {int(t.track_id) for t in (*self.tracker.tracked_stracks, *self.tracker.lost_stracks)}
            self.ids = {k: v for k, v in self.ids.items() if k in alive}
        removed = getattr(self.tracker, "removed_stracks", None)
        if removed is not None and len(removed) > 64:
            self.tracker.removed_stracks = removed[-64:]
        return out
