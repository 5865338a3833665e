"""Online mode: the pipeline on a live source, frame by frame, with a ring buffer of the last T frames.

Python API::

    from tao_lab.online import OnlinePipeline, open_source
    online = OnlinePipeline.from_config(cfg)          # a composed infer/eval config; ckpt_path optional
    for out in online.run(0, max_frames=500):         # camera index, "rtsp://...", "http://...", or a file path
        print(out.index, out.frame_score, out.anomalous, out.objects.track_id, out.objects.score)

or on the command line ``python infer.py online=true input=0`` (writes the annotated stream and CSVs).

How each stage runs online (the offline stages are reused, fitted once):

- **fit**: the scorer comes from ``ckpt_path``; without one, the first ``fit_seconds`` of the stream are taken as
  normal: they are spooled to a temporary frame folder (bounded memory), the pipeline's scorer and threshold are
  fitted on them exactly as ``infer.py`` does, and the folder is deleted. Those frames are not emitted.
- **detect**: :class:`~tao_lab.detect.BackgroundSubtractionDetector` runs on a stream-wide
  :class:`~tao_lab.detect.background.BackgroundModel` fitted on the warm-up frames (optionally refitted every
  ``background_refit`` frames from a reservoir of recent frames); YOLO detectors run per frame (every frame,
  whatever their ``stride``); :class:`~tao_lab.detect.HybridDetector` merges both (its YOLO per frame, its blobs
  from the stream background model); any other detector is run on a one-frame clip.
- **track**: one ultralytics ``BYTETracker`` kept for the whole stream (the adapter of
  :class:`~tao_lab.track.ByteTracker`, same rules incl. ``keep_unmatched``); ids are stream-wide, from 1.
- **features**: the same extractors through :class:`~tao_lab.features.base.FrameContext` (grey and optical flow
  to the previous frame computed lazily, once per frame).
- **score**: the fitted scorer's ``score_clip`` on the objects of the ring buffer (the last T frames), so track
  smoothing and frame-score smoothing see the recent past; the current frame's rows and frame score are emitted.
- **threshold -> prompts -> segment**: the prompt filter runs on the buffer's anomalous objects; the weight-free
  segmenters cut masks on the current frame only, from the stream's background model; other segmenters (SAM2)
  segment the buffer as a clip and the last frame is kept (seconds per frame on a CPU). A new object that the
  robust filter must confirm over ``min_matches`` frames gets its mask once confirmed (causal: no look-ahead).

Latency is bounded by the buffer length T (every per-frame step touches at most T frames) and memory by T frames
plus the fitted models. Each :class:`OnlineFrame` carries its own latency (frame read -> result).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Iterator, Optional, Union

import numpy as np

from tao_lab.types import Clip, ObjectScores, ObjectTable, Prompts

log = logging.getLogger(__name__)

Source = Union[int, str, os.PathLike]


class SourceError(RuntimeError):
    """The live source cannot be opened or read (the message names it)."""


@dataclass
class OnlineFrame:
    """The result for one frame of the stream.

    index: 0-based index of the frame in the stream (warm-up frames included); time_s: index / fps;
    objects: this frame's tracked objects (frame = index, stream-wide track ids >= 1, score = calibrated anomaly
    score); flagged: (K,) bool, object score above the object threshold tau (prompted); frame_score: the frame's
    anomaly score; anomalous: the calibrated frame alarm fires (frame_score above ``OnlinePipeline.alarm.tau``);
    instance_map: (H, W) int32, 0 = background, k = track id k of a segmented anomalous object;
    score_map: (H, W) float16 pixel anomaly score; latency_s: wall time from reading the frame to this result.
    """

    index: int
    time_s: float
    objects: ObjectTable
    flagged: np.ndarray
    frame_score: float
    anomalous: bool
    instance_map: np.ndarray
    score_map: np.ndarray
    latency_s: float
    frame: Optional[np.ndarray] = field(default=None, repr=False)


class BufferClip(Clip):
    """An in-memory clip over a list of frames (the ring buffer as a clip, for stages that want a Clip)."""

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


# ----- sources ----------------------------------------------------------------------------------------------
def parse_source(source: Source) -> Union[int, str]:
    """A camera index (int or digit string) or a path / URL string."""
    if isinstance(source, (int, np.integer)):
        return int(source)
    s = str(source).strip()
    return int(s) if s.isdigit() else s


def open_source(source: Source):
    """``cv2.VideoCapture`` on a camera index, an RTSP/HTTP URL or a video file; SourceError when it won't open."""
    import cv2

    src = parse_source(source)
    if isinstance(src, str) and "://" not in src and not os.path.exists(src):
        raise SourceError(f"online source not found: {src} (give a camera index, an rtsp:// or http:// URL, or a "
                          f"video file)")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise SourceError(f"cannot open online source {src!r} with OpenCV (camera busy or absent, URL unreachable, "
                          f"or unsupported codec)")
    return cap


def read_frames(cap, max_failures: int = 25, live: bool = False) -> Iterator[np.ndarray]:
    """Frames (BGR uint8) until the source ends; a live source may drop up to ``max_failures`` reads in a row."""
    import cv2

    failures = 0
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            failures += 1
            if not live or failures > max_failures:
                return
            time.sleep(0.02)
            continue
        failures = 0
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        yield frame


def is_network(source: Source) -> bool:
    return "://" in str(parse_source(source)) and not isinstance(parse_source(source), int)


class ReconnectingSource:
    """The frames of a source; a network stream (rtsp://, http://, ...) that drops is reopened with backoff.

    A drop is not the end of the stream: after ``max_failures`` failed reads in a row the capture is released and
    reopened up to ``attempts`` times, waiting ``delay_s``, then ``delay_s * backoff``, ... (at most ``max_delay_s``)
    between attempts; the first frame after a successful reopen ends the gap. Each gap is recorded in ``gaps`` as
    ``{"after_frame", "start_s", "length_s", "attempts"}`` (start_s: wall seconds since the source was opened;
    after_frame: 0-based index of the last frame read before the gap). The stream ends when a file ends, or when
    the attempts are spent (``stopped`` says why). Files and cameras are not reopened.
    """

    def __init__(self, source: Source, live: Optional[bool] = None, attempts: int = 10, delay_s: float = 1.0,
                 backoff: float = 2.0, max_delay_s: float = 30.0, max_failures: int = 25):
        self.source = source
        src = parse_source(source)
        self.live = (isinstance(src, int) or "://" in str(src)) if live is None else bool(live)
        self.network = is_network(source)
        self.attempts, self.delay_s = max(0, int(attempts)), max(0.0, float(delay_s))
        self.backoff, self.max_delay_s = max(1.0, float(backoff)), max(0.0, float(max_delay_s))
        self.max_failures = int(max_failures)
        self.gaps: list[dict] = []
        self.stopped = "end of stream"
        self.frames_read = 0
        self.cap = open_source(source)
        self._t0 = time.perf_counter()

    @property
    def fps(self) -> float:
        import cv2

        fps = self.cap.get(cv2.CAP_PROP_FPS) if self.cap is not None else 0.0
        return float(fps) if fps and 0 < fps < 1000 else 0.0

    def _reopen(self) -> Optional[tuple[Any, int]]:
        """(capture, attempts used) of a reopened stream that gave a frame, else None when the attempts are spent."""
        delay = self.delay_s
        for attempt in range(1, self.attempts + 1):
            time.sleep(delay)
            delay = min(delay * self.backoff, self.max_delay_s)
            try:
                cap = open_source(self.source)
            except SourceError as exc:
                log.warning("reconnect attempt %d/%d to %s failed: %s", attempt, self.attempts, self.source, exc)
                continue
            ok, frame = cap.read()
            if ok and frame is not None:
                self._pending = frame
                return cap, attempt
            cap.release()
            log.warning("reconnect attempt %d/%d to %s: opened but no frame", attempt, self.attempts, self.source)
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        self._pending = None
        try:
            while True:
                for frame in read_frames(self.cap, self.max_failures, self.live):
                    self.frames_read += 1
                    yield frame
                if not self.network or self.attempts == 0:
                    return
                start = time.perf_counter()
                log.warning("stream %s dropped after frame %d; reconnecting (up to %d attempts)", self.source,
                            self.frames_read - 1, self.attempts)
                self.cap.release()
                self.cap = None
                got = self._reopen()
                if got is None:
                    self.stopped = f"stream lost: {self.attempts} reconnection attempts failed"
                    self.gaps.append({"after_frame": self.frames_read - 1,
                                      "start_s": round(start - self._t0, 3),
                                      "length_s": round(time.perf_counter() - start, 3),
                                      "attempts": self.attempts, "reconnected": False})
                    return
                self.cap, used = got
                self.gaps.append({"after_frame": self.frames_read - 1, "start_s": round(start - self._t0, 3),
                                  "length_s": round(time.perf_counter() - start, 3), "attempts": used,
                                  "reconnected": True})
                log.warning("stream %s back after %.1f s (%d attempt(s))", self.source, self.gaps[-1]["length_s"],
                            used)
                frame, self._pending = self._pending, None
                self.frames_read += 1
                yield frame
        finally:
            self.release()

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# ----- per-stage online adapters ----------------------------------------------------------------------------
class _OnlineByteTrack:
    """One BYTETracker for the whole stream, with the rules of :class:`tao_lab.track.ByteTracker`."""

    def __init__(self, tracker_cfg_obj):
        from tao_lab.track.bytetrack import ByteTracker, _Detections

        self._Detections = _Detections
        self.keep_unmatched = bool(getattr(tracker_cfg_obj, "keep_unmatched", True))
        self.tracker = tracker_cfg_obj._new_tracker() if isinstance(tracker_cfg_obj, ByteTracker) else None
        self.ids: dict[int, int] = {}  # ByteTrack id -> stream id
        self.next_id = 1

    def update(self, xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray) -> np.ndarray:
        n = len(score)
        out = np.full(n, -1, np.int64)
        self.tracker.update(self._Detections(xyxy, score, cls))
        fid = self.tracker.frame_id
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
        if fid % 100 == 0:  # forget ids of tracks ByteTrack has dropped (bounded memory on endless streams)
            alive = {int(t.track_id) for t in (*self.tracker.tracked_stracks, *self.tracker.lost_stracks)}
            self.ids = {k: v for k, v in self.ids.items() if k in alive}
        # ByteTrack keeps up to 1000 removed tracks (Kalman state each) only to keep them out of its lost pool;
        # tracks removed this long ago cannot be in it any more, so a short history is enough on endless streams
        removed = getattr(self.tracker, "removed_stracks", None)
        if removed is not None and len(removed) > 64:
            self.tracker.removed_stracks = removed[-64:]
        return out


class _OnlineNoTrack:
    def __init__(self):
        self.next_id = 1

    def update(self, xyxy, score, cls) -> np.ndarray:
        out = self.next_id + np.arange(len(score), dtype=np.int64)
        self.next_id += len(score)
        return out


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


# ----- the online pipeline ----------------------------------------------------------------------------------
class OnlinePipeline:
    """Frame-by-frame anomaly detection around a fitted :class:`tao_lab.pipeline.Pipeline`.

    pipe: a Pipeline whose scorer and threshold are fitted (``fit_scorer``), or not yet (then call
        :meth:`warmup` with the first frames of the stream, which also fits the scorer).
    buffer_frames: T, the ring buffer length (frames).
    fps: the stream's frame rate (for times and the warm-up length).
    background_refit: refit the stream's background model every this many frames (0 = never) from a reservoir of
        ``num_samples`` frames sampled every ``background_refit // num_samples`` frames.
    keep_frames: attach each input frame to its OnlineFrame (for drawing).
    """

    def __init__(self, pipe, buffer_frames: int = 16, fps: float = 25.0, background_refit: int = 0,
                 keep_frames: bool = True):
        if buffer_frames < 2:
            raise ValueError(f"buffer_frames must be >= 2, got {buffer_frames}")
        self.pipe = pipe
        self.T = int(buffer_frames)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.background_refit = int(background_refit)
        self.keep_frames = bool(keep_frames)
        self.timings: dict[str, float] = {}
        self.index = 0
        self.background = None
        self._buffer: deque = deque(maxlen=self.T)  # (index, frame, objects, features)
        self._prev_grey: Optional[np.ndarray] = None
        self._reservoir: deque = deque()
        self._ready = False
        # the calibrated frame alarm (tao_lab.alarm), fitted in warmup(); the pipeline's object threshold only
        # chooses the prompts
        self.alarm = None

    # ----- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, fps: float = 25.0) -> "OnlinePipeline":
        """Builds the Pipeline from ``cfg``; loads ``cfg.ckpt_path`` when given (else :meth:`warmup` fits)."""
        from tao_lab.pipeline import Pipeline

        pipe = Pipeline(cfg)
        if cfg.get("ckpt_path"):
            pipe.fit_scorer([], ckpt_path=cfg.ckpt_path)
        return cls(pipe, buffer_frames=int(cfg.get("buffer_frames", 16)), fps=fps,
                   background_refit=int(cfg.get("background_refit", 0) or 0))

    @property
    def fitted(self) -> bool:
        return self.pipe.scorer is not None and self.pipe.threshold is not None

    def warmup(self, frames: list[np.ndarray] | Iterator[np.ndarray], source: str = "stream") -> str:
        """Fits what the stream needs from its first frames (treated as normal).

        Fits the stream background model (background-subtraction detector / weight-free segmenter) and, when the
        pipeline has no fitted scorer, the scorer and threshold on these frames. The frames are spooled to a
        temporary folder of PNGs, so memory does not grow with the warm-up length. Returns a note for the log.
        """
        from tao_lab.data.clips import FrameFolderClip
        import cv2

        tmp = Path(tempfile.mkdtemp(prefix="tao_online_warmup_"))
        try:
            n, last = 0, None
            for frame in frames:
                cv2.imwrite(str(tmp / f"{n:06d}.png"), frame)
                n, last = n + 1, frame
            if n < 2:
                raise SourceError(f"online source {source!r} gave {n} frame(s) during warm-up; need at least 2")
            clip = FrameFolderClip(str(tmp), clip_id=f"{Path(str(source)).name or 'stream'}-warmup", fps=self.fps)
            note = ""
            from_checkpoint = self.fitted
            if not self.fitted:
                note = (f"no checkpoint given: the scorer was fitted on the first {n} frames "
                        f"({n / self.fps:.1f} s) of the stream, assumed to be normal")
                log.warning(note)
            if self.alarm is None or not from_checkpoint:
                from tao_lab.alarm import fit_on_window

                # fits the scorer too when there is no checkpoint; causal held-out scores, since online a
                # frame's score sees only the ring buffer's past
                from tao_lab.pipeline import NoTrainingObjectsError

                try:
                    self.alarm = fit_on_window(self.pipe, self.pipe.cfg, clip, n, from_checkpoint,
                                               causal_window=self.T)
                except NoTrainingObjectsError:
                    raise NoTrainingObjectsError(
                        f"online source {source!r}: its first {n} frames ({n / self.fps:.3g} s), on which the scorer "
                        f"is fitted when no checkpoint is given, hold no detected object (an empty scene). Warm up "
                        f"on a longer stretch that shows normal activity (a larger fit_seconds), or give a scorer "
                        f"trained with train.py: ckpt_path=<train run dir>/scorer.ckpt") from None
            self._fit_background(clip)
            self._setup(clip.height, clip.width, str(source))
            self._prev_grey = cv2.cvtColor(last, cv2.COLOR_BGR2GRAY)  # the first emitted frame gets real flow
            self.index = n
            return note or f"scorer from checkpoint; background fitted on the first {n} frames"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _background_kwargs(self) -> Optional[dict]:
        from tao_lab.detect import BackgroundSubtractionDetector

        from tao_lab.detect import HybridDetector

        det = self.pipe.detector
        if isinstance(det, HybridDetector) and isinstance(det.background, BackgroundSubtractionDetector):
            det = det.background
        if isinstance(det, BackgroundSubtractionDetector):
            return det.background_kwargs
        seg = self.pipe.segmenter
        if getattr(seg, "foreground", None) == "background_model":
            return dict(getattr(seg, "background", {}) or {})
        return None

    def _fit_background(self, clip: Clip) -> None:
        from tao_lab.detect.background import BackgroundModel

        kwargs = self._background_kwargs()
        if kwargs is None:
            kwargs = {}
        self.background = BackgroundModel(**kwargs).fit(clip)
        self._bg_kwargs = kwargs

    def _setup(self, height: int, width: int, source: str) -> None:
        from tao_lab.detect import BackgroundSubtractionDetector, HybridDetector, YoloDetector
        from tao_lab.features.base import FlowEstimator
        from tao_lab.track import ByteTracker

        if not self.fitted:
            raise RuntimeError("the online pipeline needs a fitted scorer: give ckpt_path or call warmup(frames)")
        self.height, self.width = int(height), int(width)
        det = self.pipe.detector
        self._det_kind = ("background" if isinstance(det, BackgroundSubtractionDetector) else
                          "yolo" if isinstance(det, YoloDetector) else
                          "hybrid" if isinstance(det, HybridDetector) and isinstance(det.yolo, YoloDetector)
                          and isinstance(det.background, BackgroundSubtractionDetector) else "generic")
        trk = self.pipe.tracker
        self._tracker = _OnlineByteTrack(trk) if isinstance(trk, ByteTracker) else _OnlineNoTrack()
        exts = self.pipe.extractors
        # the same extractor objects, in the same order, as extract_features() uses offline
        self._extractors = list(exts.values()) if isinstance(exts, Mapping) else list(exts)
        info = StreamInfo(self.height, self.width, self.fps, source)
        for e in self._extractors:
            e.begin(info)
        # the same optical flow as the offline feature pass (FeatureSet's shared estimator settings)
        fs = getattr(self.pipe, "feature_set", None)
        self._flow = FlowEstimator(**dict(getattr(fs, "flow_kwargs", None) or {}))
        seg = self.pipe.segmenter
        self._seg_kind = ("foreground" if getattr(seg, "foreground", None) == "background_model"
                          and hasattr(seg, "object_mask") and hasattr(seg, "plan") else
                          "boxes" if type(seg).__name__ == "FilledBoxSegmenter" else "generic")
        self._ready = True

    # ----- per frame --------------------------------------------------------------------------------------
    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now

    def _detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        det = self.pipe.detector
        if self._det_kind == "background":
            diff = self.background.difference(frame)
            fg = self.background.clean(diff > self.background.threshold)
            boxes, scores = det.boxes_from_mask(fg, diff)
            return boxes, scores, np.zeros(len(boxes), np.int64), (diff, fg)
        if self._det_kind == "yolo":
            xyxy, conf, cls = det.predict_frames([frame])[0]
            return xyxy, conf, cls, None
        if self._det_kind == "hybrid":
            xyxy, conf, cls = det.yolo.predict_frames([frame])[0]
            diff = self.background.difference(frame)
            fg = self.background.clean(diff > self.background.threshold)
            blobs, blob_scores = det.background.boxes_from_mask(fg, diff)
            merged = det.merge(ObjectTable.build(np.zeros(len(xyxy)), xyxy, conf, None, cls),
                               ObjectTable.build(np.zeros(len(blobs)), blobs, blob_scores))
            return merged.xyxy, merged.score, merged.cls, (diff, fg)
        table = det.detect(BufferClip([frame], "frame", self.fps))
        return table.xyxy, table.score, table.cls, None

    def _foreground(self, frame: np.ndarray, cached):
        if cached is not None:
            return cached
        diff = self.background.difference(frame)
        return diff, self.background.clean(diff > self.background.threshold)

    def process(self, frame: np.ndarray, read_time: Optional[float] = None) -> OnlineFrame:
        """Runs every stage on one frame (BGR uint8, the stream's size) and returns its result."""
        from tao_lab.features.base import FrameContext
        from tao_lab.segment.base import SegmentationBuilder

        if not self._ready:
            raise RuntimeError("call warmup(first_frames) (or build with a ckpt and warmup for the background) "
                               "before process()")
        t0 = read_time if read_time is not None else time.perf_counter()
        start = time.perf_counter()
        if frame.shape[:2] != (self.height, self.width):
            raise SourceError(f"frame {self.index} has size {frame.shape[1]}x{frame.shape[0]}, the stream started "
                              f"with {self.width}x{self.height}")
        i = self.index
        xyxy, det_score, cls, fg_cache = self._detect(frame)
        start = self._tick("detect", start)
        ids = self._tracker.update(xyxy, det_score, cls) if len(det_score) else np.zeros(0, np.int64)
        if len(det_score) == 0 and isinstance(self._tracker, _OnlineByteTrack):
            self._tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0))
        keep = ids >= 0
        objects = ObjectTable(np.full(int(keep.sum()), i), xyxy[keep], det_score[keep], ids[keep], cls[keep])
        start = self._tick("track", start)
        ctx = FrameContext(i, frame, self._flow, self._prev_grey, None)
        feats = {e.name: (np.asarray(e.compute(ctx, objects.xyxy), np.float32).reshape(len(objects), e.dim)
                          if len(objects) else np.zeros((0, e.dim), np.float32)) for e in self._extractors}
        self._prev_grey = ctx.grey
        start = self._tick("features", start)
        self._buffer.append((i, frame, objects, feats))

        # score the buffer: window-relative frame indices 0..W-1, the current frame is the last one
        first = self._buffer[0][0]
        w = i - first + 1
        win_objs = ObjectTable.concat([ObjectTable(o.frame - first, o.xyxy, o.score, o.track_id, o.cls)
                                       for _, _, o, _ in self._buffer])
        win_feats = {name: np.concatenate([f[name] for _, _, _, f in self._buffer]) for name in feats}
        scores: ObjectScores = self.pipe.scorer.score_clip(win_objs, win_feats, w)
        cur = scores.objects.frame == w - 1
        obj_scores = scores.objects.score[cur]
        frame_score = float(np.asarray(scores.frame_scores)[w - 1]) if w - 1 < len(scores.frame_scores) else 0.0
        tau = float(self.pipe.threshold.tau)
        flagged = np.asarray(self.pipe.threshold(obj_scores), bool) if len(obj_scores) else np.zeros(0, bool)
        start = self._tick("score", start)

        anomalous = scores.objects.take(np.asarray(self.pipe.threshold(scores.objects.score), bool)) \
            if len(scores.objects) else ObjectTable.empty()
        prompts: Prompts = self.pipe.prompt_filter(anomalous, w) if len(anomalous) else Prompts.empty()
        start = self._tick("prompts", start)
        inst = np.zeros((self.height, self.width), np.int32)
        smap = np.zeros((self.height, self.width), np.float16)
        if len(prompts):
            seg = self.pipe.segmenter
            if self._seg_kind in ("foreground", "boxes"):
                items = seg.plan(prompts, scores, w)[w - 1]
                if items:
                    builder = SegmentationBuilder(1, self.height, self.width)
                    if self._seg_kind == "foreground":
                        # the segmenter's own per-frame step, on the stream's background model
                        diff, fg = self._foreground(frame, fg_cache)
                        masks, pix = seg.frame_masks(frame, items, diff, fg)
                    else:
                        masks = np.zeros((len(items), self.height, self.width), bool)
                        pix = np.zeros(masks.shape, np.float32)
                        from tao_lab.segment.boxes import box_slices

                        for k, it in enumerate(items):
                            masks[k][box_slices(it.box, self.height, self.width)] = True
                            pix[k] = it.score
                    builder.set_frame(0, [it.obj_id for it in items], masks, [it.score for it in items], pix)
                    out = builder.build()
                    inst, smap = out.instance_maps[0], out.score_maps[0]
            else:
                clip = BufferClip([f for _, f, _, _ in self._buffer], "buffer", self.fps)
                out = seg.segment(clip, prompts, scores)
                inst, smap = out.instance_maps[w - 1], out.score_maps[w - 1]
            inst = self._relabel(inst, objects)
        start = self._tick("segment", start)
        self._maybe_refit(frame, i)
        self.index += 1
        cur_objects = objects.with_score(obj_scores.astype(np.float32)) if len(objects) else objects
        anomalous = bool(self.alarm(frame_score)) if self.alarm is not None else bool(frame_score > tau)
        return OnlineFrame(index=i, time_s=i / self.fps, objects=cur_objects, flagged=flagged,
                           frame_score=frame_score, anomalous=anomalous, instance_map=inst,
                           score_map=smap, latency_s=time.perf_counter() - t0,
                           frame=frame if self.keep_frames else None)

    @staticmethod
    def _relabel(inst: np.ndarray, objects: ObjectTable) -> np.ndarray:
        """Prompt ids are per buffer; label each mask with the track id of the object it overlaps most."""
        labels = [int(k) for k in np.unique(inst) if k > 0]
        if not labels:
            return inst
        out = np.zeros_like(inst)
        from tao_lab.segment.base import mask_box

        boxes = np.stack([mask_box(inst == k) for k in labels])
        iou = _iou_matrix(boxes, objects.xyxy)
        used = set()
        next_free = int(objects.track_id.max(initial=0)) + 1_000_000  # never collides with a live track id
        for r, k in enumerate(labels):
            j = int(np.argmax(iou[r])) if iou.shape[1] else -1
            if j >= 0 and iou[r, j] > 0.1 and j not in used:
                used.add(j)
                out[inst == k] = int(objects.track_id[j])
            else:
                out[inst == k] = next_free + r
        return out

    def _maybe_refit(self, frame: np.ndarray, i: int) -> None:
        if self.background_refit <= 0 or self.background is None:
            return
        n = max(1, self.background.num_samples)
        every = max(1, self.background_refit // n)
        if i % every == 0:
            self._reservoir.append(frame)
            while len(self._reservoir) > n:
                self._reservoir.popleft()
        if i % self.background_refit == 0 and len(self._reservoir) >= 3:
            from tao_lab.detect.background import BackgroundModel

            start = time.perf_counter()
            self.background = BackgroundModel(**self._bg_kwargs).fit_frames(list(self._reservoir))
            self._tick("background_refit", start)

    # ----- driving a source -------------------------------------------------------------------------------
    def run(self, source: Source, max_frames: Optional[int] = None, fit_seconds: float = 10.0,
            live: Optional[bool] = None, reconnect: Optional[Mapping] = None) -> Iterator[OnlineFrame]:
        """Opens ``source`` and yields one OnlineFrame per frame after the warm-up.

        The first ``fit_seconds`` of the stream fit the background model (and the scorer when there is no
        checkpoint) and are not emitted. ``max_frames`` counts every frame read, warm-up included. A network
        stream that drops is reopened (``reconnect``: attempts, delay_s, backoff, max_delay_s of
        :class:`ReconnectingSource`); the scorer, tracker and buffer carry over, and the gaps are in
        ``self.source.gaps``.
        """
        self.source = ReconnectingSource(source, live=live, **dict(reconnect or {}))
        try:
            if self.source.fps:
                self.fps = self.source.fps
            frames = iter(self.source)
            n_warm = max(2, int(round(float(fit_seconds) * self.fps)))
            if max_frames is not None and n_warm >= max_frames:
                raise ValueError(f"max_frames={max_frames} leaves nothing after the {n_warm} warm-up frames "
                                 f"(fit_seconds={fit_seconds})")
            def first(n):  # the warm-up frames go straight to warmup()'s spool folder, never all in memory
                for k, f in enumerate(frames):
                    yield f
                    if k + 1 >= n:
                        return

            self.warmup_note = self.warmup(first(n_warm), source=str(source))
            count = self.index
            while max_frames is None or count < max_frames:
                t_read = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                yield self.process(frame, read_time=t_read)
                count += 1
        finally:
            self.source.release()


# ----- infer.py online=true ---------------------------------------------------------------------------------
def latency_summary(latencies) -> dict[str, float]:
    """mean / p50 / p95 / max (ms) and frames/s of a list of latencies (s) or a :class:`LatencyStats`."""
    if isinstance(latencies, LatencyStats):
        return latencies.summary()
    if not len(latencies):
        return {}
    a = np.asarray(latencies) * 1000.0
    return {"frames": int(len(a)), "mean_ms": round(float(a.mean()), 2), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "max_ms": round(float(a.max()), 2),
            "fps": round(1000.0 / float(a.mean()), 1) if a.mean() > 0 else float("inf")}


class LatencyStats:
    """Latency statistics in constant memory (a stream may run for days): count, sum, max and a histogram of
    0.1 ms bins up to 10 s (percentiles to 0.1 ms; slower frames fall in the last bin)."""

    BIN_MS, BINS = 0.1, 100_000

    def __init__(self):
        self.count, self.total, self.max = 0, 0.0, 0.0
        self.hist = np.zeros(self.BINS, np.int64)

    def add(self, seconds: float) -> None:
        ms = float(seconds) * 1000.0
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.hist[min(int(ms / self.BIN_MS), self.BINS - 1)] += 1

    def _percentile(self, q: float) -> float:
        k = np.searchsorted(np.cumsum(self.hist), q / 100.0 * self.count)
        return (int(k) + 0.5) * self.BIN_MS

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {}
        mean = self.total / self.count
        return {"frames": self.count, "mean_ms": round(mean, 2), "p50_ms": round(self._percentile(50), 2),
                "p95_ms": round(self._percentile(95), 2), "max_ms": round(self.max, 2),
                "fps": round(1000.0 / mean, 1) if mean > 0 else float("inf")}


def run_online(cfg) -> dict:
    """``python infer.py online=true input=SOURCE``: streams SOURCE, writes the annotated stream and CSVs.

    Outputs (``<run dir>/outputs/``, built in ``outputs.partial/`` and renamed when the stream ends, reaches
    ``max_frames``, loses a network source for good or is stopped with Ctrl+C): ``annotated.mp4``,
    ``objects.csv`` (track_id,frame_id,box,score,flagged), ``frame_scores.csv``
    (frame_id,time_s,score,anomalous,latency_ms), ``events.csv`` (each event written when it closes),
    ``gaps.csv`` (network drops), ``NOTE.txt``, ``report.html`` and ``summary.json`` (alarm, events, gaps, latency
    statistics). Everything that grows with the stream is written as it comes, never held whole: memory stays
    flat after the warm-up. An error removes the partial folder.
    """
    import json

    from tao_lab.events import EVENT_HEADER, EventBuilder, frames_of
    from tao_lab.detect.hybrid import class_labels
    from tao_lab.report.overlay import TIMELINE_HEIGHT, VideoWriter, compose_frame, draw_objects

    online = OnlinePipeline.from_config(cfg)
    source = cfg.get("input")
    out_dir = Path(cfg.paths.output_dir) / "outputs"
    tmp_dir = out_dir.with_name("outputs.partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    write = bool(cfg.get("online_outputs", True))
    writer = VideoWriter(tmp_dir / "annotated.mp4", 25.0) if write and cfg.get("write_video", True) else None
    latency = LatencyStats()
    stopped = "end of stream"
    n_anom = 0
    history: deque = deque(maxlen=300)
    ecfg = cfg.get("events") or {}
    top_k = int(ecfg.get("top_objects", 3))
    max_listed = int(cfg.get("summary_max_events", 1000))
    events_listed: list[dict] = []  # the first summary_max_events events (all of them are in events.csv)
    builder = None
    open_objs: dict[int, dict] = {}  # track id -> its best row inside the open event (bounded by the event)

    def close_events(done, ev_f):
        for ev in done:
            ev.objects = sorted(open_objs.values(), key=lambda o: -o["score"])[:top_k]
            ev_f.write(ev.csv_row(online.fps) + "\n")
            ev_f.flush()
            if len(events_listed) < max_listed:
                events_listed.append(ev.to_dict(online.fps))
        if done:
            open_objs.clear()

    try:
        obj_f = open(tmp_dir / "objects.csv", "w")
        fs_f = open(tmp_dir / "frame_scores.csv", "w")
        ev_f = open(tmp_dir / "events.csv", "w")
        obj_f.write("track_id,frame_id,x_min,y_min,x_max,y_max,score,flagged\n")
        fs_f.write("frame_id,time_s,score,anomalous,latency_ms\n")
        ev_f.write(EVENT_HEADER + "\n")
        try:
            stream = online.run(source, max_frames=cfg.get("max_frames"), fit_seconds=float(cfg.fit_seconds),
                                reconnect=dict(cfg.get("reconnect") or {}))
            if cfg.get("progress", True):
                from tqdm.auto import tqdm

                stream = tqdm(stream, desc="online frames", unit="frame", dynamic_ncols=True)
            for out in stream:
                if builder is None:  # the fps is known once the stream is open
                    builder = EventBuilder(frames_of(ecfg.get("max_gap_s", 0.5), online.fps),
                                           max(1, frames_of(ecfg.get("min_length_s", 0.2), online.fps)))
                latency.add(out.latency_s)
                n_anom += int(out.anomalous)
                if latency.count == 1 and writer is not None:
                    writer.fps = online.fps
                close_events(builder.push(out.index, out.anomalous, out.frame_score), ev_f)
                for r in range(len(out.objects)):
                    x1, y1, x2, y2 = out.objects.xyxy[r]
                    obj_f.write(f"{int(out.objects.track_id[r])},{out.index},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},"
                                f"{float(out.objects.score[r]):.6f},{int(out.flagged[r])}\n")
                    t, sc = int(out.objects.track_id[r]), float(out.objects.score[r])
                    if out.anomalous and (t not in open_objs or sc > open_objs[t]["score"]):
                        open_objs[t] = {"track_id": t, "cls": int(out.objects.cls[r]), "score": sc,
                                        "frame": out.index, "box": [round(float(v), 1) for v in (x1, y1, x2, y2)]}
                fs_f.write(f"{out.index},{out.time_s:.3f},{out.frame_score:.6f},{int(out.anomalous)},"
                           f"{out.latency_s * 1000:.2f}\n")
                if writer is not None and out.frame is not None:
                    history.append(out.frame_score)
                    alarm_tau = online.alarm.tau
                    img = draw_objects(out.frame, out.instance_map, out.objects.xyxy, out.objects.track_id,
                                       out.objects.score, tau=float(online.pipe.threshold.tau),
                                       classes=class_labels(online.pipe.detector, out.objects.cls))
                    bar = _rolling_bar(list(history), img.shape[1], alarm_tau, TIMELINE_HEIGHT)
                    text = f"frame {out.index}  score {out.frame_score:.2f}  {out.latency_s * 1000:.0f} ms" + \
                           ("  ANOMALY" if out.anomalous else "")
                    writer.write(np.vstack([compose_frame(img, None, out.index, text), bar]))
        except KeyboardInterrupt:
            stopped = "stopped by the user (Ctrl+C)"
        finally:
            if builder is not None:
                close_events(builder.close(), ev_f)
            obj_f.close()
            fs_f.close()
            ev_f.close()
        src = getattr(online, "source", None)
        if src is not None and stopped == "end of stream":
            stopped = src.stopped
        gaps = list(src.gaps) if src is not None else []
        with open(tmp_dir / "gaps.csv", "w") as f:
            f.write("after_frame,start_s,length_s,attempts,reconnected\n")
            for g in gaps:
                f.write(f"{g['after_frame']},{g['start_s']},{g['length_s']},{g['attempts']},{int(g['reconnected'])}\n")
        if writer is not None:
            writer.close()
        note = getattr(online, "warmup_note", "")
        (tmp_dir / "NOTE.txt").write_text(note + "\n")
        n_events = builder.count if builder is not None else 0
        summary = {"input": str(source), "mode": "online", "stopped": stopped, "buffer_frames": online.T,
                   "fps": online.fps, "warmup_frames": int(online.index - latency.count),
                   "frames_emitted": latency.count, "anomalous_frames": n_anom,
                   "alarm_threshold": round(online.alarm.tau, 6) if online.alarm is not None else None,
                   "alarm": online.alarm.to_dict() if online.alarm is not None else None,
                   "prompt_threshold_tau": round(float(online.pipe.threshold.tau), 4), "scorer": note,
                   "events_total": n_events, "events": events_listed, "gaps": gaps,
                   "latency": latency.summary(),
                   "stage_seconds": {k: round(v, 3) for k, v in online.timings.items()}}
        if cfg.get("report", True):
            write_online_report(tmp_dir, cfg, summary)
        (tmp_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    lat = summary["latency"]
    print(f"\ntao_lab online on {source}: {summary['frames_emitted']} frames after {summary['warmup_frames']} "
          f"warm-up frames ({summary['stopped']})")
    print(f"  NOTE: {summary['scorer']}")
    if summary["alarm"]:
        a = summary["alarm"]
        print(f"  alarm threshold {a['threshold']:.4g} (target false-alarm rate {a['target_false_alarm_rate']:g}, "
              f"{a['false_alarm_rate_on_held_out_fit_frames']:.4g} on {a['held_out_fit_frames']} held-out frames)")
    print(f"  flagged frames {n_anom}, events {n_events}, gaps {len(gaps)}")
    if lat:
        print(f"  latency per frame: mean {lat['mean_ms']} ms, p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
              f"max {lat['max_ms']} ms ({lat['fps']} frames/s)")
    print(f"outputs: {out_dir}")
    summary["outputs"] = str(out_dir)
    return summary


def _timeline_from_csv(path: Path, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray, float]:
    """(scores, flags, frames per point) of frame_scores.csv read in blocks and max-pooled to at most
    ``max_points`` points (a days-long stream is never loaded whole)."""
    import csv

    n = sum(1 for _ in open(path)) - 1
    step = max(1, -(-n // max_points))
    scores, flags = [], []
    cur_s, cur_f, k = -np.inf, 0, 0
    with open(path) as f:
        for row in csv.DictReader(f):
            cur_s, cur_f, k = max(cur_s, float(row["score"])), max(cur_f, int(row["anomalous"])), k + 1
            if k == step:
                scores.append(cur_s), flags.append(cur_f)
                cur_s, cur_f, k = -np.inf, 0, 0
    if k:
        scores.append(cur_s), flags.append(cur_f)
    return np.asarray(scores), np.asarray(flags, bool), float(step)


def write_online_report(out: Path, cfg, summary: dict) -> Path:
    """report.html of an online run: events (seeking annotated.mp4), the score timeline, gaps, summary."""
    from tao_lab.report.events import events_html
    from tao_lab.report.html import write_report
    from tao_lab.report.plots import timeline_png

    scores, flags, step = _timeline_from_csv(out / "frame_scores.csv")
    a = summary.get("alarm") or {}
    plot = timeline_png(scores, tau=a.get("threshold"), fps=summary["fps"] / step, flagged=flags,
                        title="frame anomaly score after the warm-up (red: flagged by the alarm)") \
        if len(scores) else None
    # the video starts after the warm-up, event times are stream times
    lead = events_html(summary["events"], {}, plot, summary["fps"],
                       video="annotated.mp4" if (out / "annotated.mp4").exists() else None,
                       video_offset_s=summary["warmup_frames"] / max(summary["fps"], 1e-6))
    notes = [summary.get("scorer", ""), f"Stopped: {summary['stopped']}."]
    if a:
        notes.append(f"Alarm: frame score above {a['threshold']:.4g}, fitted for a target false-alarm rate of "
                     f"{a['target_false_alarm_rate']:g} ({a['calibration']}); "
                     f"{a['false_alarm_rate_on_held_out_fit_frames']:.4g} reached on {a['held_out_fit_frames']} "
                     f"held-out warm-up frames.")
    shown = {k: v for k, v in summary.items() if k not in ("events", "gaps", "alarm", "scorer", "latency",
                                                           "stage_seconds")}
    shown.update({f"latency_{k}": v for k, v in summary.get("latency", {}).items()})
    return write_report(out / "report.html", title=f"tao_lab online: {summary['input']}", notes=notes, lead=lead,
                        summary=shown, tables=[("Stream gaps (network drops)", summary["gaps"])])


def _rolling_bar(scores: list[float], width: int, tau: float, height: int) -> np.ndarray:
    """The last scores as a bar strip (newest on the right), threshold dotted; for live output."""
    bar = np.full((height, width, 3), 30, np.uint8)
    if not scores:
        return bar
    s = np.asarray(scores, np.float64)
    hi = max(float(s.max()), tau * 1.25, 1e-6)
    n = len(s)
    xs = np.linspace(0, width - 1, n).astype(int) if n > 1 else np.array([width - 1])
    for k in range(n):
        x0 = xs[k]
        x1 = xs[k + 1] if k + 1 < n else width
        top = height - 3 - int(round(min(s[k] / hi, 1.0) * (height - 6)))
        bar[top:height - 3, x0:max(x1, x0 + 1)] = (60, 60, 235) if s[k] >= tau else (200, 160, 60)
    ty = height - 3 - int(round(min(tau / hi, 1.0) * (height - 6)))
    bar[max(0, ty), ::4] = (255, 255, 255)
    return bar
