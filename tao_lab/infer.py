"""Inference on any video or frame folder, with no ground truth (``python infer.py input=PATH``).

The scorer comes from ``ckpt_path`` (train.py's checkpoint) or, without one, is fitted on the first ``fit_seconds``
of the input itself, which is assumed normal (the log, ``NOTE.txt`` and the report say so).

Everything is written into ``<run dir>/outputs/`` by :class:`tao_lab.outputs.OutputSink` (the online mode's
too), built in ``outputs.partial/`` and renamed only when complete, so a failed or interrupted run never leaves
outputs that look complete (``summary.json`` is the last file written); the formats are :mod:`tao_lab.formats`:

- ``annotated.mp4``: every frame with the masks (colour per object), boxes, ``id score`` labels (red = above the
  threshold) and a timeline bar of the frame scores with the current position;
- ``masks/<frame:06d>.png``: per-frame instance masks, 16-bit PNG, 0 = background, k = object id k (the ids of
  ``segments.csv``), one file per frame (0-based index in the name);
- ``objects.csv``: every tracked object, ``track_id,frame_id,x_min,y_min,x_max,y_max,score,flagged`` (0-based
  frames, pixels, x2/y2 exclusive; flagged = score above the object threshold tau), the same schema online;
- ``tracks.csv``: the same rows without ``flagged``; ``tracks_mot.txt``: the same tracks in MOTChallenge format
  (``frame,id,x,y,w,h,score,-1,-1,-1``, 1-based frames);
- ``segments.csv``: the segmented (anomalous) objects, the boxes of their masks, same columns as tracks.csv (the
  detections for RBDC/TBDC);
- ``tracks.txt`` / ``detections.txt``: the tracked and the segmented objects in the RBDC/TBDC text formats of
  :mod:`tao_lab.metrics` (``track_id,frame_id,x_min,y_min,x_max,y_max`` and ``frame_id,x_min,y_min,x_max,y_max,
  score``; 0-based frames, inclusive max corner), ready for ``python -m tao_lab.metrics object``;
- ``frame_scores.csv``: ``frame_id,time_s,score,anomalous`` (anomalous = flagged by the calibrated frame alarm,
  :mod:`tao_lab.alarm`); ``prompts.csv``: the segmenter prompts;
- ``events.csv``: runs of flagged frames (:mod:`tao_lab.events`) with start, end, peak and top objects;
- ``report.html``: a self-contained report opening with the events (choosing one plays annotated.mp4 from it)
  and the score timeline, then the summary, the gallery of the most anomalous objects (real objects before
  fragments, :mod:`tao_lab.fragments`) and the configuration used; ``NOTE.txt``: how the scorer was obtained;
  ``summary.json``: counts, the alarm (target and reached false-alarm rate), the events and timings.

Memory stays bounded on long videos: frames are streamed, and the pipeline runs on chunks of ``chunk_seconds``
(masks of one chunk in memory at a time); track and object ids are made unique across chunks by an offset.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
from omegaconf import DictConfig

from tao_lab.types import Clip, ObjectTable, Prompts, SubClip
from tao_lab.user_errors import ConfigError

log = logging.getLogger(__name__)


class InferenceInputError(RuntimeError):
    """The input video / frame folder / stream cannot be read (the message names it and says what to check)."""


# ----- input ------------------------------------------------------------------------------------------------
def open_input(cfg: DictConfig) -> Clip:
    """The one input clip, or InferenceInputError with a message naming the input."""
    from tao_lab.pipeline import load_dataset

    source = cfg.get("input")
    try:
        dataset = load_dataset(cfg)
    except InferenceInputError:
        raise
    except Exception as exc:  # DataError, cv2 errors, OS errors: all mean "cannot read this input"
        from tao_lab.user_errors import unwrap

        raise InferenceInputError(f"cannot read input {source!r}: {unwrap(exc)}") from exc
    if len(dataset.test) != 1:
        raise InferenceInputError(f"infer expects one input video or frame folder, {source!r} gave "
                                  f"{len(dataset.test)} clips; run infer once per video")
    clip = dataset.test[0]
    if clip.num_frames < 2:
        raise InferenceInputError(f"input {source!r} has {clip.num_frames} decodable frame(s); need at least 2")
    return clip


def fit_frames(cfg: DictConfig, clip: Clip) -> int:
    """Frames in the first ``fit_seconds`` of the input: the scorer's fit data without a checkpoint, and with one
    the alarm's held-out calibration frames (assumed normal either way)."""
    n_fit = max(2, int(round(float(cfg.fit_seconds) * clip.fps)))
    if n_fit >= clip.num_frames and cfg.get("ckpt_path"):
        n_fit = max(2, clip.num_frames // 2)
        log.warning("fit_seconds=%s covers the whole input: the alarm is calibrated on its first half (%d frames)",
                    cfg.fit_seconds, n_fit)
    if n_fit >= clip.num_frames:
        # a user's error (a short input), so one message and exit 2, not a traceback; suggest a window that leaves
        # most of the input to score
        suggest = max(2, int(0.4 * clip.num_frames)) / clip.fps
        raise ConfigError(f"fit_seconds={cfg.fit_seconds} covers the whole input ({clip.num_frames} frames, "
                          f"{clip.num_frames / clip.fps:.1f} s at {clip.fps:g} fps): give a shorter fit_seconds "
                          f"(e.g. fit_seconds={suggest:.1f}, the first 40%) or a trained ckpt_path")
    return n_fit


def chunk_clip(clip: Clip, a: int, b: int) -> Clip:
    """The clip the pipeline processes for frames [a, b) (the same id, so the stage cache is shared)."""
    return clip if (a, b) == (0, clip.num_frames) else SubClip(clip, a, b, clip_id=f"{clip.clip_id}@{a}-{b}")


def fit_or_load(pipe, cfg: DictConfig, clip: Clip, first_chunk: tuple[int, int]):
    """Loads the scorer from ckpt_path or fits it on the first fit_seconds of ``clip``, and calibrates the alarm
    (:func:`tao_lab.alarm.fit_on_window`). Returns (the note to show, the Alarm, frames in the fit window)."""
    from tao_lab.alarm import fit_on_window

    n_fit = fit_frames(cfg, clip)
    # the window's objects come from the first processing chunk, detected and tracked as the main pass does
    window_clip = chunk_clip(clip, 0, max(first_chunk[1], n_fit))
    if cfg.get("ckpt_path"):
        pipe.fit_scorer([], ckpt_path=cfg.ckpt_path)
        alarm = fit_on_window(pipe, cfg, window_clip, n_fit, from_checkpoint=True)
        return f"scorer loaded from checkpoint {cfg.ckpt_path}", alarm, n_fit
    note = (f"no checkpoint given: the scorer was fitted on the first {float(cfg.fit_seconds):g} s ({n_fit} frames) "
            f"of the input itself, assumed to be normal; anomalies in that part cannot be found")
    log.warning(note)
    from tao_lab.pipeline import NoTrainingObjectsError

    try:
        alarm = fit_on_window(pipe, cfg, window_clip, n_fit, from_checkpoint=False)
    except NoTrainingObjectsError:
        raise NoTrainingObjectsError(
            f"input {cfg.get('input')!r}: its first {float(cfg.fit_seconds):g} s ({n_fit} frames), on which the scorer "
            f"is fitted when no checkpoint is given, hold no detected object (an empty scene). Fit on a longer "
            f"window that shows normal activity, e.g. fit_seconds={_longer_window(cfg.fit_seconds, clip)} (it must "
            f"stay below the input's {clip.num_frames / max(clip.fps, 1e-6):g} s), or give a scorer trained with "
            f"train.py: ckpt_path=<train run dir>/scorer.ckpt") from None
    return note, alarm, n_fit


def _longer_window(fit_seconds: float, clip: Clip) -> str:
    """A fit_seconds suggestion: twice the current window, kept below the input's length."""
    longest = (clip.num_frames - 1) / max(clip.fps, 1e-6)
    return f"{min(2 * float(fit_seconds), 0.9 * longest):.3g}"


def chunk_bounds(num_frames: int, fps: float, chunk_seconds: Optional[float], height: int = 0, width: int = 0,
                 max_chunk_mb: Optional[float] = None) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the processing chunks (the last one absorbs a short tail).

    A chunk lasts ``chunk_seconds`` (None/0 = the whole video) and is shortened so that its mask maps
    ((T, H, W) float16 scores + int32 ids = 6 bytes per pixel) stay under ``max_chunk_mb``.
    """
    size = num_frames if not chunk_seconds or chunk_seconds <= 0 else int(round(float(chunk_seconds) * fps))
    if max_chunk_mb and height and width:
        size = min(size, int(float(max_chunk_mb) * 2 ** 20 // (6 * height * width)))
    size = max(8, size)
    if size >= num_frames:
        return [(0, num_frames)]
    starts = list(range(0, num_frames, size))
    if len(starts) > 1 and num_frames - starts[-1] < size // 4:
        starts.pop()
    return [(s, starts[k + 1] if k + 1 < len(starts) else num_frames) for k, s in enumerate(starts)]


def _offset(table: ObjectTable, frame_offset: int, id_offset: int) -> ObjectTable:
    ids = np.where(table.track_id >= 0, table.track_id + id_offset, table.track_id)
    return ObjectTable(table.frame + frame_offset, table.xyxy, table.score, ids, table.cls)


# ----- the run ----------------------------------------------------------------------------------------------
def run_inference(cfg: DictConfig, logger=None) -> dict:
    """``python infer.py``: offline on a file/folder, or ``online=true`` on a live source (tao_lab.online).

    logger: optional experiment logger (tao_lab.loggers); gets the numeric summary and the most anomalous frame.
    """
    if cfg.get("online", False):
        from tao_lab.online import run_online

        summary = run_online(cfg)
        if logger is not None:
            lat = {f"online/latency_{k}": v for k, v in summary.get("latency", {}).items()}
            logger.log_metrics({**lat, "online/anomalous_frames": summary["anomalous_frames"]})
        return summary

    from tao_lab.pipeline import Pipeline, progress

    start_time = time.perf_counter()
    clip = open_input(cfg)
    pipe = Pipeline(cfg)
    chunks = chunk_bounds(clip.num_frames, clip.fps, cfg.get("chunk_seconds"), clip.height, clip.width,
                          cfg.get("max_chunk_mb"))
    fit_note, alarm, n_fit = fit_or_load(pipe, cfg, clip, chunks[0])
    tau = float(pipe.threshold.tau)  # the object threshold: which objects become prompts (TAO's tau)

    from tao_lab.outputs import OutputSink

    with OutputSink(cfg.paths.output_dir, masks=bool(cfg.get("write_masks", True))) as sink:
        result, key_frame = _process(cfg, pipe, clip, chunks, sink, tau, alarm, n_fit, fit_note, start_time,
                                     progress)
        out_dir = sink.finish(result, list_files=True)
    result["outputs"] = str(out_dir)
    if logger is not None:
        logger.log_metrics({f"infer/{k}": v for k, v in result.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if key_frame is not None and hasattr(logger, "log_images"):
            logger.log_images("infer/most_anomalous_frame", [key_frame])
    print(f"\ntao_lab infer on {clip.source or clip.clip_id}")
    print(f"  NOTE: {fit_note}")
    for k in ("frames", "seconds", "objects_scored", "tracks", "objects_segmented", "anomalous_frames",
              "flagged_in_fit_window", "alarm_threshold", "prompt_threshold_tau", "time_s"):
        print(f"  {k:<22} {result[k]}")
    a = result["alarm"]
    print(f"  alarm: target false-alarm rate {a['target_false_alarm_rate']:g}, "
          f"{a['false_alarm_rate_on_held_out_fit_frames']:.4g} reached on {a['held_out_fit_frames']} held-out "
          f"fit frames ({a['calibration']})")
    if result.get("scene_check"):
        from tao_lab.scene_check import DESCRIPTION

        print(f"  scene check: {DESCRIPTION}, whole video / fit window (README \"Scene check\"):\n    " + ", ".join(
                  f"{g} {v['video']:.4f} / {v['fit_window']:.4f}" for g, v in result["scene_check"].items()))
    print(f"  events: {len(result['events'])}")
    for ev in result["events"][:10]:
        print(f"    #{ev['event']:<3} {ev['start_s']:8.2f} s - {ev['end_s']:8.2f} s  peak {ev['peak_score']:.3f}  "
              f"tracks {' '.join(str(o['track_id']) for o in ev['objects'])}")
    print(f"outputs: {out_dir}" + (f"\nreport:  {out_dir / 'report.html'}" if cfg.get("report", True) else ""))
    return result


def _process(cfg, pipe, clip: Clip, chunks: list, sink, tau: float, alarm, n_fit: int, fit_note: str,
             start_time: float, progress) -> tuple[dict, Optional[tuple]]:
    """Runs the pipeline chunk by chunk and writes every output into ``sink`` (an OutputSink); returns (the
    summary, the most anomalous annotated frame or None)."""
    show = bool(cfg.get("progress", True))
    frame_scores = np.zeros(clip.num_frames, np.float32)
    tracks, segmented, prompts = [], [], []
    id_offset, obj_offset = 0, 0
    write_masks = sink.masks
    from tao_lab.scene_check import SceneCheck

    scene_check = SceneCheck(pipe.scorer)
    # pass 1: the pipeline chunk by chunk; masks go to disk right away, so one chunk's maps are in memory
    for k, (a, b) in enumerate(progress(chunks, f"pipeline ({len(chunks)} chunk{'s' * (len(chunks) > 1)})", show)):
        part = chunk_clip(clip, a, b)
        scores = pipe.scores(part, segment_next=True)
        scene_check.add(scores)
        seg = pipe.segmentation(part, scores)
        pr = pipe.prompts(part, scores)
        frame_scores[a:b] = np.asarray(scores.frame_scores, np.float32)[: b - a]
        tracks.append(_offset(scores.objects, a, id_offset))
        segmented.append(_offset(seg.objects, a, obj_offset))
        prompts.append(Prompts(pr.frame + a, np.where(pr.obj_id >= 0, pr.obj_id + obj_offset, pr.obj_id), pr.xyxy,
                               pr.point, pr.score))
        if write_masks:
            inst = seg.instance_maps
            for i in range(b - a):
                m = np.zeros((clip.height, clip.width), np.int32) if inst is None else inst[i]
                m = np.where(m > 0, m + obj_offset, 0)
                sink.add_mask(a + i, m)
        id_offset += int(scores.objects.track_id.max(initial=0))
        top = int(seg.objects.track_id.max(initial=0))
        if seg.instance_maps is not None:
            top = max(top, int(seg.instance_maps.max(initial=0)))
        obj_offset += top
        del scores, seg
    tracks_t, seg_t = ObjectTable.concat(tracks), ObjectTable.concat(segmented)
    prompts_t = Prompts(*(np.concatenate([getattr(p, f) for p in prompts]) for f in
                          ("frame", "obj_id", "xyxy", "point", "score"))) if prompts else Prompts.empty()
    flagged = alarm(frame_scores)  # the calibrated frame alarm (tau above is the prompt filter's object cut)

    # objects.csv: every tracked object, flagged when above the object threshold (the online schema too)
    sink.add_objects(tracks_t, np.asarray(pipe.threshold(tracks_t.score), bool) if len(tracks_t)
                     else np.zeros(0, bool))
    sink.write_tables(tracks=tracks_t, segments=seg_t, prompts=prompts_t)
    times = np.arange(clip.num_frames) / max(clip.fps, 1e-6)
    sink.add_frame_scores(np.arange(clip.num_frames), times, frame_scores, flagged)
    sink.write_note(fit_note)

    # events: runs of flagged frames; their top objects and the gallery rank real objects before fragments
    from tao_lab.events import attach_objects, find_events, frames_of
    from tao_lab.fragments import fragment_reasons, rank_tracks

    ecfg = cfg.get("events") or {}
    reasons = fragment_reasons(tracks_t, clip.height, clip.width, **dict(cfg.get("fragments") or {}))
    events = find_events(flagged, frame_scores, frames_of(ecfg.get("max_gap_s", 0.5), clip.fps),
                         max(1, frames_of(ecfg.get("min_length_s", 0.2), clip.fps)))
    attach_objects(events, tracks_t, int(ecfg.get("top_objects", 3)), {t: bool(r) for t, r in reasons.items()})
    sink.add_events(events, clip.fps)

    # pass 2: stream the frames once more for the annotated video and the gallery / event crops
    gallery_rows = rank_tracks(tracks_t, reasons, int(cfg.get("gallery_size", 12)))
    event_rows = [o["row"] for ev in events for o in ev.objects[:1]]
    from tao_lab.detector.hybrid import class_labels

    gallery, key_frame, event_crops = _render(cfg, clip, sink, frame_scores, tracks_t, seg_t, tau, alarm.tau,
                                              gallery_rows, reasons, event_rows, progress, show,
                                              labels_of=lambda cls: class_labels(pipe.detector, cls))

    summary = {"input": str(cfg.get("input")), "frames": int(clip.num_frames), "fps": float(clip.fps),
               "seconds": round(clip.num_frames / max(clip.fps, 1e-6), 2),
               "size": f"{clip.width}x{clip.height}", "objects_scored": int(len(tracks_t)),
               "tracks": int(len(np.unique(tracks_t.track_id))), "objects_segmented": int(len(seg_t)),
               "anomalous_frames": int(flagged.sum()), "alarm_threshold": round(alarm.tau, 6),
               "flagged_in_fit_window": int(flagged[:n_fit].sum()), "fit_window_frames": int(n_fit),
               "alarm": alarm.to_dict(), "prompt_threshold_tau": round(tau, 4),
               "events": [ev.to_dict(clip.fps) for ev in events],
               "max_frame_score": round(float(frame_scores.max(initial=0.0)), 4), "chunks": len(chunks),
               "scorer": fit_note, "time_s": round(time.perf_counter() - start_time, 2),
               "scene_check": {g: {"video": round(here, 5), "fit_window": round(train, 5)}
                               for g, (here, train) in scene_check.shares().items()}}
    if cfg.get("report", True):
        from tao_lab.report.runs import write_infer_report

        sink.report(lambda out: write_infer_report(out / "report.html", cfg, clip, summary, frame_scores, alarm.tau,
                                                   flagged, gallery, fit_note, key_frame, event_crops))
    summary["time_s"] = round(time.perf_counter() - start_time, 2)
    return summary, key_frame


def _render(cfg, clip: Clip, sink, frame_scores, tracks: ObjectTable, seg: ObjectTable, tau: float,
            alarm_tau: float, gallery_rows: list[int], reasons: dict, event_rows: list[int], progress, show: bool,
            labels_of=None):
    """Writes annotated.mp4 (if enabled) and returns (gallery [(crop, caption)], the most anomalous annotated
    frame as (image, caption) or None, {row: crop} of the events' top objects).

    tau: the object threshold (objects drawn red above it); alarm_tau: the frame alarm (timeline, "ANOMALY")."""
    from tao_lab.report.overlay import TimelineBar, compose_frame, crop_with_context, draw_objects

    write_video = bool(cfg.get("write_video", True))
    if not write_video and not gallery_rows and not event_rows:
        return [], None, {}
    top = int(np.argmax(frame_scores)) if len(frame_scores) else -1
    key_frame = None
    by_frame: dict[int, list[int]] = {}
    for r in dict.fromkeys([*gallery_rows, *event_rows]):
        by_frame.setdefault(int(tracks.frame[r]), []).append(r)
    crops: dict[int, np.ndarray] = {}
    writer = sink.video(clip.fps) if write_video else None
    names = labels_of(tracks.cls) if labels_of is not None and write_video else None  # class per row, or None
    timeline = TimelineBar(frame_scores, clip.width, alarm_tau) if write_video else None
    t_order = np.argsort(tracks.frame, kind="stable")
    t_starts = np.searchsorted(tracks.frame[t_order], np.arange(clip.num_frames + 1))
    # the video is closed (or, on an error, removed) by the sink
    frames = clip.frames() if write_video else ((i, clip.frame(i)) for i in sorted(by_frame))
    it = enumerate(frames) if write_video else frames
    for i, frame in progress(it, "render video" if write_video else "gallery", show,
                             total=clip.num_frames if write_video else len(by_frame)):
        inst = sink.mask(i)
        if i in by_frame:
            for r in by_frame[i]:
                # a wide margin: the object with what it is doing and where (context, not just the box)
                crops[r] = crop_with_context(frame, tracks.xyxy[r], pad=0.75, instance_map=inst)
        if writer is not None:
            rows = t_order[t_starts[i]:t_starts[i + 1]]
            img = draw_objects(frame, inst, tracks.xyxy[rows], tracks.track_id[rows], tracks.score[rows], tau=tau,
                               classes=None if names is None else [names[r] for r in rows])
            text = f"frame {i}  t={i / max(clip.fps, 1e-6):.1f}s  score {frame_scores[i]:.2f}" + \
                   ("  ANOMALY" if frame_scores[i] > alarm_tau else "")
            composed = compose_frame(img, timeline, i, text)
            writer.write(composed)
            if i == top:
                key_frame = (composed, f"frame {i} (t={i / max(clip.fps, 1e-6):.1f} s), frame score "
                                       f"{frame_scores[i]:.3f}, alarm threshold {alarm_tau:.3g}")
    gallery = []
    for r in gallery_rows:
        if r in crops:
            s = float(tracks.score[r])
            why = reasons.get(int(tracks.track_id[r]), "short")
            cap = (f"track {int(tracks.track_id[r])}  score {s:.3f}{' (prompted)' if s > tau else ''}\n"
                   f"frame {int(tracks.frame[r])}  t={int(tracks.frame[r]) / max(clip.fps, 1e-6):.1f}s"
                   + (f"\nfragment ({why})" if why else ""))
            gallery.append((crops[r], cap))
    return gallery, key_frame, {r: crops[r] for r in event_rows if r in crops}
