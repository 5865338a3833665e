"""The detector interface: ``Detector.detect(clip) -> ObjectTable`` with track_id = -1, and its per-frame form
``Detector.stream(ctx) -> DetectorStream`` for the online mode (tao_lab.streaming)."""
from __future__ import annotations

import numpy as np

from tao_lab.types import Clip, ObjectTable


class Detector:
    """Finds objects in every frame of a clip.

    ``detect`` returns one row per (frame, box): 0-based ``frame``, ``xyxy`` float32 in original pixels,
    ``score`` in [0, 1] (detector confidence), ``track_id`` = -1, ``cls`` = detector class (0 when class-agnostic).
    Rows are ordered by frame.

    ``stream(ctx)`` returns the per-frame form (online): ``.step(frame) -> ObjectTable`` of that frame's boxes
    (``frame`` = 0). The default runs ``detect`` on a one-frame clip; detectors with state worth keeping across
    frames (a background model, a loaded network) override it.
    """

    #: True when ``cls`` tells what the object is (a detector trained on classes); False for class-agnostic
    #: detectors, whose ``cls`` is always 0 (the scorer's ``class`` attribute refuses those).
    has_classes = False

    def detect(self, clip: Clip) -> ObjectTable:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, clip: Clip) -> ObjectTable:
        return self.detect(clip)

    def prepare(self) -> None:
        """Imports the heavy libraries ``detect`` will need, in the calling thread (see
        :meth:`tao_lab.tracker.base.Tracker.prepare` for why). The default needs nothing."""

    def stream(self, ctx) -> "DetectorStream":
        """The per-frame detector for a stream (``ctx``: :class:`tao_lab.streaming.StreamContext`)."""
        return DetectorStream(lambda frame: self.detect(_one_frame(frame, ctx.fps)))


class DetectorStream:
    """``step(frame) -> ObjectTable``: the boxes of one frame (BGR uint8), ``frame`` column 0, track ids -1."""

    def __init__(self, step):
        self._step = step

    def step(self, frame: np.ndarray) -> ObjectTable:
        return self._step(frame)


def _one_frame(frame: np.ndarray, fps: float) -> Clip:
    from tao_lab.streaming import BufferClip

    return BufferClip([frame], "frame", fps)
