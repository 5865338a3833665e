"""Trackers: ``Tracker.track(detections: ObjectTable, clip) -> ObjectTable`` (ids restart at 1 in every clip).

- :class:`ByteTracker` (ultralytics' BYTETracker behind a small adapter; ultralytics imported only when it runs);
- :class:`NoTracker` (``tracker=none``): per-frame scoring, every detection its own id.
"""
from tao_lab.tracker.base import NoTracker, Tracker, TrackerStream, relabel_tracks
from tao_lab.tracker.bytetrack import ByteTracker

__all__ = ["Tracker", "TrackerStream", "NoTracker", "ByteTracker", "relabel_tracks"]
