"""Events: runs of flagged frames, merged across short gaps, with their time span, peak and top objects.

A run of flagged frames starts an event; flagged frames at most ``max_gap`` unflagged frames after the event's
last flagged frame extend it; events with fewer than ``min_length`` frames from first to last flagged frame are
dropped (single-frame blips). Offline: :func:`find_events` on the whole flag sequence; online:
:class:`EventBuilder`, fed frame by frame, returns each event as soon as it is closed (the gap is exceeded).
``events.csv`` (one :meth:`Event.csv_row` per event) is written by :mod:`tao_lab.formats`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np



@dataclass
class Event:
    """start / end: first and last flagged frame (inclusive); objects: [{track_id, cls, score, frame, row, box}] of
    the most anomalous objects inside the event, highest first (filled by :func:`attach_objects`; ``row`` = the
    object's 0-based data row in tracks.csv)."""

    start: int
    end: int
    peak_frame: int
    peak_score: float
    objects: list = field(default_factory=list)
    index: int = 0

    def to_dict(self, fps: float) -> dict:
        fps = max(float(fps), 1e-6)
        return {"event": self.index, "start_frame": self.start, "end_frame": self.end,
                "start_s": round(self.start / fps, 3), "end_s": round((self.end + 1) / fps, 3),
                "duration_s": round((self.end - self.start + 1) / fps, 3), "peak_frame": self.peak_frame,
                "peak_s": round(self.peak_frame / fps, 3), "peak_score": round(float(self.peak_score), 5),
                "objects": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in o.items()}
                            for o in self.objects]}

    def csv_row(self, fps: float) -> str:
        d = self.to_dict(fps)
        ids = " ".join(str(o["track_id"]) for o in self.objects)
        cls = " ".join(str(o.get("cls", "")) for o in self.objects)
        sc = " ".join(f"{o['score']:.4f}" for o in self.objects)
        return (f"{d['event']},{d['start_frame']},{d['end_frame']},{d['start_s']},{d['end_s']},{d['duration_s']},"
                f"{d['peak_frame']},{d['peak_s']},{d['peak_score']},{ids},{cls},{sc}")


def frames_of(seconds: float, fps: float) -> int:
    return max(0, int(round(float(seconds) * float(fps))))


class EventBuilder:
    """Streaming event merging: ``push(frame, flagged, score)`` returns the events closed by this frame;
    ``close()`` returns the open one at the end of the stream. Holds one open event at most."""

    def __init__(self, max_gap: int = 0, min_length: int = 1):
        self.max_gap, self.min_length = max(0, int(max_gap)), max(1, int(min_length))
        self.open: Optional[Event] = None
        self.count = 0

    def _finish(self) -> list[Event]:
        ev, self.open = self.open, None
        if ev is None or ev.end - ev.start + 1 < self.min_length:
            return []
        self.count += 1
        ev.index = self.count
        return [ev]

    def push(self, frame: int, flagged: bool, score: float) -> list[Event]:
        done: list[Event] = []
        if self.open is not None:
            gap = frame - self.open.end - (1 if flagged else 0)  # unflagged frames since the event's last flag
            if gap > self.max_gap:
                done = self._finish()
        if flagged:
            if self.open is None:
                self.open = Event(frame, frame, frame, float(score))
            else:
                self.open.end = frame
                if score > self.open.peak_score:
                    self.open.peak_frame, self.open.peak_score = frame, float(score)
        return done

    def close(self) -> list[Event]:
        return self._finish()


def find_events(flags, scores=None, max_gap: int = 0, min_length: int = 1) -> list[Event]:
    """Events of a whole flag sequence (see the module doc); ``scores`` give each event's peak."""
    flags = np.asarray(flags, bool)
    scores = np.zeros(len(flags)) if scores is None else np.asarray(scores, np.float64)
    b = EventBuilder(max_gap, min_length)
    out: list[Event] = []
    for i in np.flatnonzero(flags):
        out += b.push(int(i), True, float(scores[i]))
    return out + b.close()


def attach_objects(events: list[Event], tracks, top: int = 3, fragment=None) -> None:
    """Fills each event's ``objects`` with its ``top`` most anomalous tracks (each track's highest-scored row in
    the event). ``fragment``: optional {track_id: bool}; fragments rank after real objects."""
    if not events or not len(tracks):
        return
    order = np.argsort(tracks.frame, kind="stable")
    frames = tracks.frame[order]
    for ev in events:
        rows = order[np.searchsorted(frames, ev.start):np.searchsorted(frames, ev.end, side="right")]
        best: dict[int, int] = {}
        for r in rows:
            t = int(tracks.track_id[r])
            if t not in best or tracks.score[r] > tracks.score[best[t]]:
                best[t] = int(r)
        frag = fragment or {}
        ranked = sorted(best.items(), key=lambda kv: (bool(frag.get(kv[0], False)), -float(tracks.score[kv[1]])))
        ev.objects = [{"track_id": t, "cls": int(tracks.cls[r]), "score": float(tracks.score[r]),
                       "frame": int(tracks.frame[r]), "row": int(r), "box": [round(float(v), 1) for v in tracks.xyxy[r]],
                       **({"fragment": True} if frag.get(t, False) else {})}
                      for t, r in ranked[:top]]
