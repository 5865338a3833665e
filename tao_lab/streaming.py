"""What the stages share when they run frame by frame (online): the stream's size and window, its background.

Every stage has a per-clip method and a per-frame one next to it (docs in each base class):

- detector: ``Detector.stream(ctx) -> DetectorStream``, ``.step(frame) -> ObjectTable`` (frame 0, track_id -1);
- tracker: ``Tracker.stream() -> TrackerStream``, ``.update(detections) -> (N,) track ids`` (stream-wide, >= 1;
  -1 = row dropped);
- features: ``FeatureSet.stream(ctx) -> FeatureStream``, ``.step(index, frame, boxes, classes=None) -> {name: (K, D)}``;
- scorer: ``ObjectScorer.stream(window) -> ScorerStream``, ``.step(objects, features) -> WindowScores``;
- segmenter: ``Segmenter.stream(ctx) -> SegmenterStream``, ``.step(frame, prompts, scores, num_frames) ->
  (instance_map, score_map)`` of the current frame.

The base classes give a default that runs the per-clip method on the ring buffer (or on a one-frame clip), so a
new stage works online unchanged; a stage overrides ``stream`` when it can do better (one ByteTrack for the whole
stream, a background model fitted once on the warm-up frames, masks cut from the current frame only).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_lab.types import Clip


class BufferClip(Clip):
    """An in-memory clip over a list of frames (the ring buffer as a clip, for stages that want a Clip)."""

    memoize_frames = False  # in memory already

    def __init__(self, frames: list[np.ndarray], clip_id: str = "buffer", fps: float = 25.0, source: str = ""):
        h, w = frames[0].shape[:2]
        super().__init__(clip_id, len(frames), h, w, fps, None, source or f"buffer:{clip_id}")
        self._frames = frames

    def _read(self, i: int) -> np.ndarray:
        return self._frames[i]


class StreamInfo(Clip):
    """Size and fps of the stream, for extractors' ``begin(clip)`` (reading frames from it is an error)."""

    def __init__(self, height: int, width: int, fps: float, source: str):
        super().__init__("stream", 1 << 30, height, width, fps, None, source)

    def _read(self, i: int) -> np.ndarray:
        raise RuntimeError("the stream's frames are not addressable; use the ring buffer")


class StreamContext:
    """The stream as the stages see it when they start streaming.

    height, width, fps, source: the stream's; window: T, the ring buffer length (frames) of the stages that look
    at the recent past (scorer, clip segmenters); background_refit: refit the shared background model every this
    many frames (0 = never). The background model is shared: the first stage asking for it (the detector, built
    first) fixes its settings, and it is fitted once on the warm-up frames (:meth:`fit`).
    """

    def __init__(self, height: int, width: int, fps: float, source: str = "stream", window: int = 16,
                 background_refit: int = 0):
        self.height, self.width = int(height), int(width)
        self.fps = float(fps)
        self.source = str(source)
        self.window = int(window)
        self.background_refit = int(background_refit)
        self._background = None
        self._after_fit: list = []  # what the stages fit on the warm-up frames once the background is fitted
        from tao_lab.features.flow_memo import FlowMemo  # lazily: tao_lab.features imports OpenCV

        self.flows = FlowMemo(clips=1)  # the current frame's flow, left by the detector for the features

    @property
    def info(self) -> StreamInfo:
        return StreamInfo(self.height, self.width, self.fps, self.source)

    def background(self, kwargs: Optional[dict] = None):
        """The stream's :class:`tao_lab.detector.background.StreamBackground` (created on the first request)."""
        if self._background is None:
            from tao_lab.detector.background import StreamBackground

            self._background = StreamBackground(dict(kwargs or {}), self.background_refit)
        return self._background

    def after_fit(self, fit) -> None:
        """``fit(warmup)`` is called with the warm-up frames once the background model is fitted on them (a stage's
        own model of the warm-up, e.g. the detector's expected blob heights)."""
        self._after_fit.append(fit)

    def fit(self, warmup: Clip) -> None:
        """Fits what the stages asked for (the background model, then their :meth:`after_fit` models) on the warm-up
        frames."""
        if self._background is not None:
            self._background.fit(warmup)
        for fit in self._after_fit:
            fit(warmup)

    def end_frame(self, frame: np.ndarray, index: int) -> bool:
        """After every stage has seen frame ``index``: True when the background model was refitted."""
        return self._background is not None and self._background.observe(frame, index)
