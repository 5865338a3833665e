"""Hybrid detector: a class-aware detector's boxes plus the background blobs none of its boxes explains.

A COCO detector knows what an object is but misses what COCO lacks (carts, wheelchairs, a skateboarder seen as a
blur) and small far-away people; background subtraction finds anything that moves in a fixed camera but breaks
people into fragments and knows no class. The union keeps each where it is good: every box of the class-aware
detector (``cls`` = its class), and each background blob whose area is not mostly covered by those boxes
(``cls`` = :data:`UNKNOWN_CLASS`). The source of a row is therefore in its class: ``cls == UNKNOWN_CLASS`` rows are
background blobs, the rest come from the class-aware detector. Tracking runs on the union like on any detector.
"""
from __future__ import annotations

import numpy as np

from tao_lab.detector.base import Detector, DetectorStream
from tao_lab.types import Clip, ObjectTable

#: ``cls`` of a background blob that no box of the class-aware detector explains ("unknown" object).
UNKNOWN_CLASS = -1


def class_name(cls: int, names: dict[int, str] | None = None) -> str:
    """Readable class of a ``cls`` value: ``unknown`` for blobs, the detector's name, else the number."""
    if int(cls) == UNKNOWN_CLASS:
        return "unknown"
    return (names or {}).get(int(cls), str(int(cls)))


def covered_fraction(box: np.ndarray, others: np.ndarray) -> float:
    """Fraction of ``box`` (xyxy) covered by the union of ``others`` (K,4) (exact, on the integer pixel grid)."""
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = max(int(np.ceil(box[2])), x1 + 1), max(int(np.ceil(box[3])), y1 + 1)
    cover = np.zeros((y2 - y1, x2 - x1), bool)
    for ox1, oy1, ox2, oy2 in np.asarray(others, np.float32).reshape(-1, 4):
        a, b = int(np.clip(np.floor(ox1) - x1, 0, x2 - x1)), int(np.clip(np.ceil(ox2) - x1, 0, x2 - x1))
        c, d = int(np.clip(np.floor(oy1) - y1, 0, y2 - y1)), int(np.clip(np.ceil(oy2) - y1, 0, y2 - y1))
        cover[c:d, a:b] = True
    return float(cover.mean())


def merge_detections(boxes: ObjectTable, blobs: ObjectTable, explained: float = 0.5) -> ObjectTable:
    """The union of ``boxes`` (class-aware, classes kept) and the ``blobs`` not explained by them.

    A blob is explained when at least ``explained`` of its box area lies inside the union of the same frame's
    ``boxes``; unexplained blobs get ``cls`` = :data:`UNKNOWN_CLASS`. Rows are ordered by frame (boxes first
    within a frame), track ids are -1.
    """
    keep = np.ones(len(blobs), bool)
    if len(boxes) and len(blobs):
        order = np.argsort(boxes.frame, kind="stable")
        frames_sorted = boxes.frame[order]
        for j in range(len(blobs)):
            lo, hi = np.searchsorted(frames_sorted, blobs.frame[j], "left"), np.searchsorted(
                frames_sorted, blobs.frame[j], "right")
            if hi > lo and covered_fraction(blobs.xyxy[j], boxes.xyxy[order[lo:hi]]) >= explained:
                keep[j] = False
    kept = blobs.take(keep)
    unknown = ObjectTable.build(kept.frame, kept.xyxy, kept.score, None, np.full(len(kept), UNKNOWN_CLASS))
    tagged = ObjectTable.build(boxes.frame, boxes.xyxy, boxes.score, None, boxes.cls)
    out = ObjectTable.concat([tagged, unknown])
    return out.take(np.argsort(out.frame, kind="stable"))


class HybridDetector(Detector):
    """Boxes of a class-aware detector plus the unexplained blobs of a background detector (module docstring).

    Args:
        yolo: the class-aware detector (e.g. :class:`tao_lab.detector.YoloDetector`).
        background: the class-agnostic detector whose blobs fill the gaps (e.g.
            :class:`tao_lab.detector.BackgroundSubtractionDetector`).
        explained: a blob at least this fraction of whose area lies inside the class-aware boxes of its frame is
            dropped (it is one of the objects already found, or a fragment of one).
    Output: ``cls`` = the class-aware detector's class, or :data:`UNKNOWN_CLASS` for a blob; ``score`` = either
    detector's confidence; ``track_id`` = -1.

    The pipeline runs (and caches) the two parts as detectors of their own, so a hybrid run re-uses the
    detections of an earlier ``detector=yolo`` or ``detector=background`` run with the same settings.
    """

    has_classes = True
    #: names of the constructor arguments that are detectors of their own (cached separately by the pipeline)
    part_names = ("yolo", "background")

    def __init__(self, yolo: Detector, background: Detector, explained: float = 0.5):
        if not 0.0 < float(explained) <= 1.0:
            raise ValueError(f"explained must be in (0, 1], got {explained}")
        self.yolo = yolo
        self.background = background
        self.explained = float(explained)

    @property
    def parts(self) -> dict[str, Detector]:
        return {name: getattr(self, name) for name in self.part_names}

    @property
    def class_names(self) -> dict[int, str]:
        names = dict(getattr(self.yolo, "class_names", {}) or {})
        names[UNKNOWN_CLASS] = "unknown"
        return names

    def merge(self, yolo: ObjectTable, background: ObjectTable) -> ObjectTable:
        return merge_detections(yolo, background, self.explained)

    def use_camera(self, backgrounds) -> None:
        """Camera backgrounds for the parts that use them (the background detector with scope=camera)."""
        for part in self.parts.values():
            if hasattr(part, "use_camera"):
                part.use_camera(backgrounds)

    def camera_settings(self) -> list[tuple[dict, int]]:
        from tao_lab.detector.camera import camera_settings

        return [kw for part in self.parts.values() for kw in camera_settings(part)]

    def prepare(self) -> None:
        self.yolo.prepare()
        self.background.prepare()

    def detect(self, clip: Clip) -> ObjectTable:
        return self.merge(self.yolo.detect(clip), self.background.detect(clip))

    def stream(self, ctx) -> DetectorStream:
        """Online: both parts per frame (each its own stream: YOLO on the frame, blobs from the stream's background
        model), merged by the same rule."""
        yolo, background = self.yolo.stream(ctx), self.background.stream(ctx)
        return DetectorStream(lambda frame: self.merge(yolo.step(frame), background.step(frame)))


def class_labels(detector: Detector, cls: np.ndarray) -> list[str] | None:
    """Class names of ``cls`` values for labels (``unknown`` for blobs); None for a class-agnostic detector."""
    if not getattr(detector, "has_classes", False):
        return None
    names = getattr(detector, "class_names", None) or {}
    return [class_name(int(c), names) for c in np.asarray(cls).reshape(-1)]
