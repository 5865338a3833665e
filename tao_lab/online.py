"""Online mode: the pipeline on a live source, frame by frame, with a ring buffer of the last T frames.

Python API::

    from tao_lab.online import OnlinePipeline, open_source
    online = OnlinePipeline.from_config(cfg)          # a composed infer/eval config; ckpt_path optional
    for out in online.run(0, max_frames=500):         # camera index, "rtsp://...", "http://...", or a file path
        print(out.index, out.frame_score, out.anomalous, out.objects.track_id, out.objects.score)

or on the command line ``python infer.py online=true input=0`` (writes the annotated stream and CSVs through
:class:`tao_lab.outputs.OutputSink`, like the offline run).

This is a short driver over the pipeline's own stage objects, fitted once; each stage runs through its per-frame
interface (:mod:`tao_lab.streaming`): ``detector.stream(ctx).step(frame)``, ``tracker.stream().update(dets)``,
``feature_set.stream(ctx).step(i, frame, boxes)``, ``scorer.stream(T).step(i, objects, features)`` (the scorer's
``score_clip`` on the ring buffer of the last T frames, so track smoothing and frame-score smoothing see the
recent past), the pipeline's threshold and prompt filter on the window, and ``segmenter.stream(ctx).step(...)``.
A new stage works online by implementing its own ``stream``; the base classes' defaults run the per-clip method
on the ring buffer or on a one-frame clip.

- **fit**: the scorer comes from ``ckpt_path``; without one, the first ``fit_seconds`` of the stream are taken as
  normal: they are spooled to a temporary frame folder (bounded memory), the pipeline's scorer and threshold are
  fitted on them exactly as ``infer.py`` does, and the folder is deleted. Those frames are not emitted. Stages
  that asked for the stream's background model (background-subtraction detector, weight-free segmenter) get it
  fitted on the same frames, refitted every ``background_refit`` frames when set.
- A new object that the robust prompt filter must confirm over ``min_matches`` frames gets its mask once confirmed
  (causal: no look-ahead); masks are labelled with the track id of the object they cover.

Latency is bounded by the buffer length T (every per-frame step touches at most T frames) and memory by T frames
plus the fitted models. Each :class:`OnlineFrame` carries its own latency (frame read -> result).
"""
from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from omegaconf import OmegaConf

# the live sources (tao_lab.sources), importable from here as before
from tao_lab.sources import (ReconnectingSource, Source, SourceError, is_network, open_source,  # noqa: F401
                             parse_source, read_frames)  # noqa: F401
from tao_lab.streaming import BufferClip, StreamContext  # noqa: F401 - BufferClip: importable from here too
from tao_lab.types import ObjectTable
from tao_lab.user_errors import ConfigError

log = logging.getLogger(__name__)

#: Bytes of warm-up frames held at the stream's size to measure its objects (working_object_height): the 10 s warm-up
#: of a 640x360 colour stream at 25 fps is 173 MB; a larger stream is measured on its first frames up to this.
OBJECT_SCALE_MEMORY = 256 * 1024 * 1024


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


# ----- sources ----------------------------------------------------------------------------------------------
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
                 keep_frames: bool = True, working_height: Optional[int] = None,
                 working_min_height: Optional[int] = None, working_object_height: Optional[float] = None):
        if buffer_frames < 2:
            raise ConfigError(f"buffer_frames must be >= 2, got {buffer_frames}")
        self.pipe = pipe
        self.T = int(buffer_frames)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.background_refit = int(background_refit)
        self.keep_frames = bool(keep_frames)
        # frames taller than this are processed shrunk to it, as offline (tao_lab.dataset.resize; None = as they come)
        self.working_height, self.working_min_height = working_height, working_min_height
        # a camera whose objects are small is processed enlarged, measured on the warm-up frames as offline on the
        # training clips (tao_lab.dataset.object_scale; None = off); the factor found, once measured
        self.working_object_height = working_object_height
        self.object_scale: Optional[float] = None
        self.timings: dict[str, float] = {}
        self.index = 0
        self.stages: dict[str, Any] = {}  # the stages' per-frame forms, built by warmup()
        # the calibrated frame alarm (tao_lab.alarm), fitted in warmup(); the pipeline's object threshold only
        # chooses the prompts
        self.alarm = None

    @classmethod
    def from_config(cls, cfg, fps: float = 25.0) -> "OnlinePipeline":
        """Builds the Pipeline from ``cfg``; loads ``cfg.ckpt_path`` when given (else :meth:`warmup` fits)."""
        from tao_lab.pipeline import Pipeline

        pipe = Pipeline(cfg)
        if cfg.get("ckpt_path"):
            pipe.fit_scorer([], ckpt_path=cfg.ckpt_path)
        return cls(pipe, buffer_frames=int(cfg.get("buffer_frames", 16)), fps=fps,
                   background_refit=int(cfg.get("background_refit", 0) or 0),
                   working_height=cfg.get("working_height"), working_min_height=cfg.get("working_min_height"),
                   working_object_height=cfg.get("working_object_height"))

    @property
    def fitted(self) -> bool:
        return self.pipe.scorer is not None and self.pipe.threshold is not None

    def warmup(self, frames: list[np.ndarray] | Iterator[np.ndarray], source: str = "stream") -> str:
        """Fits what the stream needs from its first frames (treated as normal) and starts the stages' streams.

        When the pipeline has no fitted scorer, fits the scorer and threshold on these frames, and calibrates the
        frame alarm; fits the background model the stages asked for. The frames are spooled to a temporary folder
        of PNGs, so memory does not grow with the warm-up length. Returns a note for the log.
        """
        from tao_lab.dataset.clips import FrameFolderClip
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
                from tao_lab.pipeline import NoTrainingObjectsError

                # fits the scorer too when there is no checkpoint; causal held-out scores, since online a
                # frame's score sees only the ring buffer's past
                try:
                    self.alarm = fit_on_window(self.pipe, self.pipe.cfg, clip, n, from_checkpoint,
                                               causal_window=self.T)
                except NoTrainingObjectsError:
                    raise NoTrainingObjectsError(
                        f"online source {source!r}: its first {n} frames ({n / self.fps:.3g} s), on which the scorer "
                        f"is fitted when no checkpoint is given, hold no detected object (an empty scene). Warm up "
                        f"on a longer stretch that shows normal activity (a larger fit_seconds), or give a scorer "
                        f"trained with train.py: ckpt_path=<train run dir>/scorer.ckpt") from None
            self.start(clip, str(source))
            self.stages["features"].prime(last)  # the first emitted frame gets real flow
            self.index = n
            return note or f"scorer from checkpoint; background fitted on the first {n} frames"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def start(self, warmup_clip, source: str = "stream") -> None:
        """Starts every stage's per-frame form on a stream of ``warmup_clip``'s size; the stages' shared
        background model is fitted on ``warmup_clip`` (:meth:`warmup` calls this with the warm-up frames)."""
        if not self.fitted:
            raise RuntimeError("the online pipeline needs a fitted scorer: give ckpt_path or call warmup(frames)")
        self.height, self.width = int(warmup_clip.height), int(warmup_clip.width)
        self.context = StreamContext(self.height, self.width, self.fps, source, self.T, self.background_refit)
        pipe = self.pipe
        # the detector first: its background settings are the stream's (tao_lab.streaming.StreamContext)
        self.stages = {"detect": pipe.detector.stream(self.context), "track": pipe.tracker.stream(),
                       "features": pipe.feature_set.stream(self.context), "score": pipe.scorer.stream(self.T),
                       "segment": pipe.segmenter.stream(self.context)}
        self.context.fit(warmup_clip)

    def _tick(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now

    def process(self, frame: np.ndarray, read_time: Optional[float] = None) -> OnlineFrame:
        """Runs every stage on one frame (BGR uint8, the stream's size) and returns its result."""
        from tao_lab.segmenter.base import label_by_track

        if not self.stages:
            raise RuntimeError("call warmup(first_frames) (or build with a ckpt and warmup for the background) "
                               "before process()")
        t0 = read_time if read_time is not None else time.perf_counter()
        start = time.perf_counter()
        if frame.shape[:2] != (self.height, self.width):
            raise SourceError(f"frame {self.index} has size {frame.shape[1]}x{frame.shape[0]}, the stream started "
                              f"with {self.width}x{self.height}")
        i, st = self.index, self.stages
        dets = st["detect"].step(frame)
        start = self._tick("detect", start)
        ids = st["track"].update(dets)
        keep = ids >= 0
        objects = ObjectTable(np.full(int(keep.sum()), i), dets.xyxy[keep], dets.score[keep], ids[keep],
                              dets.cls[keep])
        start = self._tick("track", start)
        feats = st["features"].step(i, frame, objects.xyxy, objects.cls)
        start = self._tick("features", start)
        window = st["score"].step(i, objects, feats)
        obj_scores = window.current
        flagged = np.asarray(self.pipe.threshold(obj_scores), bool) if len(obj_scores) else np.zeros(0, bool)
        start = self._tick("score", start)
        prompts = self.pipe.select_prompts(self.pipe.above_threshold(window.scores), window.num_frames)
        start = self._tick("prompts", start)
        inst, smap = st["segment"].step(frame, prompts, window.scores, window.num_frames)
        inst = label_by_track(inst, objects)
        start = self._tick("segment", start)
        if self.context.end_frame(frame, i):
            self._tick("background_refit", start)
        self.index += 1
        cur_objects = objects.with_score(obj_scores) if len(objects) else objects
        frame_score = window.frame_score
        anomalous = bool(self.alarm(frame_score)) if self.alarm is not None else \
            bool(frame_score > float(self.pipe.threshold.tau))
        return OnlineFrame(index=i, time_s=i / self.fps, objects=cur_objects, flagged=flagged,
                           frame_score=frame_score, anomalous=anomalous, instance_map=inst,
                           score_map=smap, latency_s=time.perf_counter() - t0,
                           frame=frame if self.keep_frames else None)

    # ----- driving a source -------------------------------------------------------------------------------
    def _object_scaled(self, frames: Iterator[np.ndarray], n_warm: int) -> Iterator[np.ndarray]:
        """The stream's frames enlarged by the factor ``working_object_height`` asks for (as offline,
        :mod:`tao_lab.dataset.object_scale`): the factor the scorer's training clips were processed at when the
        scorer records one (a checkpoint's ``fit_resolution``) for a camera of the stream's size, else measured on
        the warm-up frames: they are held in memory at the stream's size until measured (at most
        :data:`OBJECT_SCALE_MEMORY` bytes; the measurement reads those held)."""
        from tao_lab.dataset.object_scale import camera_object_scale, scaled_size
        from tao_lab.dataset.resize import resample

        if self.working_object_height is None:
            self.object_scale = 1.0
            yield from frames
            return
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        held = [first]
        record = getattr(getattr(self.pipe, "scorer", None), "fit_resolution", None)
        if record is not None and [int(first.shape[0]), int(first.shape[1])] == list(record["camera_size"]):
            self.object_scale = float(record["object_scale"])
            log.info("object scale: the stream is processed %s, as the scorer's training clips",
                     "at its own size" if self.object_scale == 1.0 else f"enlarged {self.object_scale:.2f}x")
        else:
            if record is not None:
                log.warning("object scale: the scorer's training camera was %dx%d, the stream's frames are %dx%d; "
                            "the stream's object scale is measured on its warm-up", record["camera_size"][1],
                            record["camera_size"][0], first.shape[1], first.shape[0])
            size = first.nbytes
            while len(held) < n_warm and size < OBJECT_SCALE_MEMORY:
                frame = next(frames, None)
                if frame is None:
                    break
                held.append(frame)
                size += frame.nbytes
            cfg = OmegaConf.merge(self.pipe.cfg, {"working_object_height": self.working_object_height})
            self.object_scale = camera_object_scale([BufferClip(held, "warmup")], cfg, "the stream's warm-up")
        f = self.object_scale
        for frame in itertools.chain(held, frames):
            yield frame if f == 1.0 else resample(frame, *scaled_size(frame.shape[0], frame.shape[1], f))

    def _at_working_resolution(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The stream's frames at the working resolution (taller than ``working_height``: shrunk to it, area-averaged;
        shorter than ``working_min_height``: enlarged to it, bilinear), as offline."""
        from tao_lab.dataset.resize import resample, working_size

        noted = False
        for frame in frames:
            h, w = frame.shape[:2]
            size = working_size(h, w, self.working_height, self.working_min_height)
            if size == (h, w):
                yield frame
                continue
            if not noted:
                log.info("working resolution: the stream's %dx%d frames are processed at %dx%d (boxes and masks in "
                         "those pixels)", w, h, size[1], size[0])
                noted = True
            yield resample(frame, *size)

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
            n_warm = max(2, int(round(float(fit_seconds) * self.fps)))
            frames = self._at_working_resolution(self._object_scaled(iter(self.source), n_warm))
            if max_frames is not None and n_warm >= max_frames:
                raise ConfigError(f"max_frames={max_frames} leaves nothing after the {n_warm} warm-up frames "
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

    Outputs (:class:`tao_lab.outputs.OutputSink`: ``<run dir>/outputs/``, built in ``outputs.partial/`` and renamed
    when the stream ends, reaches ``max_frames``, loses a network source for good or is stopped with Ctrl+C):
    ``annotated.mp4``, ``objects.csv`` (every tracked object: track_id,frame_id,box,score,flagged), ``masks/``
    (``online_masks=true``), ``frame_scores.csv`` (frame_id,time_s,score,anomalous,latency_ms), ``events.csv``
    (each event written when it closes), ``gaps.csv`` (network drops), ``NOTE.txt``, ``report.html`` and
    ``summary.json`` (alarm, events, gaps, latency statistics). Everything that grows with the stream is written
    as it comes, never held whole: memory stays flat after the warm-up. An error removes the partial folder.
    """
    from tao_lab.detector.hybrid import class_labels
    from tao_lab.events import EventBuilder, frames_of
    from tao_lab.outputs import OutputSink
    from tao_lab.report.overlay import TIMELINE_HEIGHT, compose_frame, draw_objects, rolling_bar
    from tao_lab.report.runs import write_online_report

    online = OnlinePipeline.from_config(cfg)
    source = cfg.get("input")
    write = bool(cfg.get("online_outputs", True))
    write_video = write and bool(cfg.get("write_video", True))
    write_masks = write and bool(cfg.get("online_masks", False))
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

    def close_events(done):
        for ev in done:
            ev.objects = sorted(open_objs.values(), key=lambda o: -o["score"])[:top_k]
            if len(events_listed) < max_listed:
                events_listed.append(ev.to_dict(online.fps))
        sink.add_events(done, online.fps)
        if done:
            open_objs.clear()

    with OutputSink(cfg.paths.output_dir, masks=write_masks, latency=True) as sink:
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
                close_events(builder.push(out.index, out.anomalous, out.frame_score))
                sink.add_objects(out.objects, out.flagged)
                if out.anomalous:
                    for r in range(len(out.objects)):
                        t, sc = int(out.objects.track_id[r]), float(out.objects.score[r])
                        if t not in open_objs or sc > open_objs[t]["score"]:
                            open_objs[t] = {"track_id": t, "cls": int(out.objects.cls[r]), "score": sc,
                                            "frame": out.index,
                                            "box": [round(float(v), 1) for v in out.objects.xyxy[r]]}
                sink.add_frame_scores([out.index], [out.time_s], [out.frame_score], [out.anomalous],
                                      [out.latency_s * 1000])
                if write_masks:
                    sink.add_mask(out.index, out.instance_map)
                if write_video and out.frame is not None:
                    history.append(out.frame_score)
                    img = draw_objects(out.frame, out.instance_map, out.objects.xyxy, out.objects.track_id,
                                       out.objects.score, tau=float(online.pipe.threshold.tau),
                                       classes=class_labels(online.pipe.detector, out.objects.cls))
                    bar = rolling_bar(list(history), img.shape[1], online.alarm.tau, TIMELINE_HEIGHT)
                    text = f"frame {out.index}  score {out.frame_score:.2f}  {out.latency_s * 1000:.0f} ms" + \
                           ("  ANOMALY" if out.anomalous else "")
                    sink.video(online.fps).write(np.vstack([compose_frame(img, None, out.index, text), bar]))
        except KeyboardInterrupt:
            stopped = "stopped by the user (Ctrl+C)"
        finally:
            if builder is not None:
                close_events(builder.close())
        src = getattr(online, "source", None)
        if src is not None and stopped == "end of stream":
            stopped = src.stopped
        gaps = list(src.gaps) if src is not None else []
        sink.write_gaps(gaps)
        note = getattr(online, "warmup_note", "")
        sink.write_note(note)
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
            sink.report(lambda out_dir: write_online_report(out_dir, cfg, summary))
        out_dir = sink.finish(summary)
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
