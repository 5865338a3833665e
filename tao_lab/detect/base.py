"""The detector interface: ``Detector.detect(clip) -> ObjectTable`` with track_id = -1."""
from __future__ import annotations

from tao_lab.types import Clip, ObjectTable


class Detector:
    """Finds objects in every frame of a clip.

    ``detect`` returns one row per (frame, box): 0-based ``frame``, ``xyxy`` float32 in original pixels,
    ``score`` in [0, 1] (detector confidence), ``track_id`` = -1, ``cls`` = detector class (0 when class-agnostic).
    Rows are ordered by frame.
    """

    #: True when ``cls`` tells what the object is (a detector trained on classes); False for class-agnostic
    #: detectors, whose ``cls`` is always 0 (the scorer's ``class`` attribute refuses those).
    has_classes = False

    def detect(self, clip: Clip) -> ObjectTable:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, clip: Clip) -> ObjectTable:
        return self.detect(clip)
