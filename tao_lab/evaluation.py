"""Evaluation: streams the test clips through the pipeline into the frame, pixel and object metrics.

Keys follow ``<split>/<level>_<metric>[_<protocol>]``. Standard-protocol keys carry no suffix; TAO-protocol keys
end in ``_tao`` (REFERENCE.md §2: GT-nonempty frames only, per-frame average, and ``pixel_aupro_tao`` is TAO's
PR-AUC, not a region-overlap AUPRO). When the ``gt_gating`` oracle is on, every key is suffixed ``_gtgated``
so an oracle number can never be mistaken for a label-free one.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from omegaconf import DictConfig

from tao_lab.cache import StageCache
from tao_lab.dataset.label_check import check_labels_match_masks, check_mode
from tao_lab.pipeline import Pipeline, progress
from tao_lab.scene_check import SceneCheck
from tao_lab.types import Clip, ObjectTable

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_video: list[dict] = field(default_factory=list)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    overlays: list[tuple[np.ndarray, str]] = field(default_factory=list)  # (BGR frame with masks drawn, caption)
    per_kind: list[dict] = field(default_factory=list)  # frame figures per GT anomaly kind (metrics.by_kind)


#: Bump when tracks_from_masks changes what it returns: part of the GT-tracks cache key.
GT_TRACKS_METHOD = "tracks_from_masks/v1"


def gt_source(clip: Clip) -> str:
    """Everything a clip's derived GT was made from, for cache keys: the frames (``clip.source``), the frame labels
    (their count sets how many masks are read) and the pixel masks. Mask readers with a ``signature()`` (mask files'
    paths, sizes and mtimes, or an in-memory hash) are asked for it; any other mask callable is hashed by content."""
    gt = clip.gt
    labels = "none"
    if gt is not None and gt.frame_labels is not None:
        lab = np.asarray(gt.frame_labels, bool)
        labels = f"{len(lab)}:{hashlib.sha1(np.packbits(lab).tobytes()).hexdigest()[:12]}"
    masks = "none"
    if gt is not None and gt.mask is not None:
        signature = getattr(gt.mask, "signature", None)
        if callable(signature):
            masks = signature()
        else:  # unknown source: read every mask once
            h = hashlib.sha1()
            for m in gt.masks():
                m = np.asarray(m, bool)
                h.update(str(m.shape).encode())
                h.update(np.packbits(m).tobytes())
            masks = "content:" + h.hexdigest()[:16]
    return f"{clip.source}|labels={labels}|masks={masks}"


def gt_tracks_for(clip: Clip, cache_dir: Optional[str], min_area: int) -> Optional[ObjectTable]:
    """The clip's GT object tracks: shipped with the dataset, else derived from its pixel masks (cached; the key
    covers the frames, labels and masks, so edited masks are never answered with tracks of the old ones)."""
    if clip.gt is None:
        return None
    if clip.gt.tracks is not None:
        return clip.gt.tracks
    if clip.gt.mask is None:
        return None
    from tao_lab.metrics import tracks_from_masks

    cache = StageCache(cache_dir, "gt_tracks", {"min_area": min_area, "method": GT_TRACKS_METHOD})
    source = gt_source(clip) if cache.enabled else clip.source
    return cache.get_or_compute(clip.clip_id, source, lambda: tracks_from_masks(clip.gt.masks(), min_area=min_area))


def evaluate_clips(pipe: Pipeline, clips: list[Clip], cfg: DictConfig, split: str = "test",
                   num_overlays: int = 0, pixel_curves: bool = False) -> EvalResult:
    """Runs the whole pipeline on ``clips`` and computes every configured metric.

    num_overlays: also render this many overlay frames (the most anomalous frame of each clip, highest first).
    pixel_curves: also return the pixel ROC/PR/PRO curves (an extra pass over the pixel scores; for loggers).
    """
    from tao_lab import metrics as M

    mcfg = cfg.metrics
    fpr_limit = float(mcfg.get("fpr_limit", 0.3))
    standard = M.PixelMetrics() if mcfg.get("pixel_standard", True) else None
    tao = M.TaoPixelMetrics() if mcfg.get("pixel_tao", True) else None
    frame_scores, frame_labels, per_video = [], [], []
    detections, gt_tracks = {}, {}
    labelled_tracks: list = []  # GT tracks of the clips with frame labels, aligned with frame_scores
    on_mismatch = check_mode(mcfg.get("label_mask_mismatch", "error"))
    # Partial pixel GT (UCSD Ped1 has masks for 10 of 36 test clips): frame metrics use every labelled clip,
    # pixel and object metrics only the clips with masks, so an unmasked clip counts neither as "all normal"
    # pixels nor as a clip whose detections are all false positives.
    masked_ids = {c.clip_id for c in clips if _has_masks(c)}
    # (the pixel metrics add pixel_num_frames themselves: the frames of these clips)
    counts = {"num_clips": len(clips), "pixel_num_clips": len(masked_ids)}
    if 0 < len(masked_ids) < len(clips):
        log.warning("pixel masks exist for %d of %d %s clips: pixel and object metrics use those %d clips only, "
                    "frame metrics all clips with frame labels", len(masked_ids), len(clips), split,
                    len(masked_ids))
    overlays: list = []
    scene_check = SceneCheck(getattr(pipe, "scorer", None))  # label-free, tao_lab/scene_check.py

    pipe.prefetch(clips, split)
    for clip in progress(clips, f"evaluate {split}", pipe.show_progress):
        scores = pipe.scores(clip, segment_next=True)
        scene_check.add(scores)
        seg = pipe.segmentation(clip, scores)
        labels = clip.gt.frame_labels if clip.gt is not None else None
        if labels is not None:
            if len(labels) != clip.num_frames:
                raise ValueError(f"clip {clip.clip_id}: {len(labels)} frame labels for {clip.num_frames} frames")
            frame_scores.append(np.asarray(scores.frame_scores, np.float64))
            frame_labels.append(np.asarray(labels, bool))
            labelled_tracks.append(clip.gt.tracks)
        has_masks = clip.clip_id in masked_ids
        if has_masks and (standard is not None or tao is not None):
            start = time.perf_counter()
            nonempty = np.zeros(clip.num_frames, bool)
            for i, gt_mask in enumerate(clip.gt.masks()):
                score_map = seg.score_maps[i]  # float16: exact, fixed-size histogram in PixelMetrics
                nonempty[i] = np.any(gt_mask)
                if standard is not None:
                    standard.update(score_map, gt_mask)
                if tao is not None:
                    tao.update(score_map, gt_mask)
            # the masks are read here anyway, so the cross-check with the frame labels costs nothing extra
            check_labels_match_masks(labels, nonempty, f"{split} clip {clip.clip_id} ({clip.source or 'no source'})",
                                     on_mismatch)
            pipe.timings["metrics_pixel"] += time.perf_counter() - start
        if mcfg.get("object", True) and (has_masks or (clip.gt is not None and clip.gt.tracks is not None)):
            # detections only where GT objects are known: on a clip without masks or tracks every detection
            # would count as a false positive
            detections[clip.clip_id] = seg.objects
            tracks = gt_tracks_for(clip, pipe.cache_dir, int(mcfg.get("gt_min_area", 20)))
            if tracks is not None:
                gt_tracks[clip.clip_id] = tracks
        per_video.append({**_video_row(clip, scores.frame_scores, labels, seg), "pixel_gt": has_masks})
        if num_overlays > 0:
            from tao_lab.report.overlay import best_frame_overlay

            overlays.append(best_frame_overlay(clip, scores, seg, pipe.threshold))
            overlays = sorted(overlays, key=lambda o: -o[0])[:num_overlays]

    out: dict[str, float] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    if frame_labels:
        for k, v in M.frame_metrics(frame_scores, frame_labels).items():
            out[f"frame_{k}"] = v
        alarm = getattr(pipe, "alarm", None)
        if alarm is not None:  # the operating point at the calibrated alarm threshold (tao_lab.alarm)
            out.update(alarm_operating_point(alarm, frame_scores, frame_labels, cfg,
                                             [c.fps for c in clips if c.gt is not None and
                                              c.gt.frame_labels is not None]))
        from tao_lab.report.plots import frame_curves

        curves.update(frame_curves(frame_scores, frame_labels))
    has_pixel_gt = bool(masked_ids)
    if standard is not None and has_pixel_gt:
        threshold = float(pipe.threshold.tau) if pipe.threshold is not None else None
        for k, v in standard.compute(fpr_limit=fpr_limit, threshold=threshold).items():
            if np.ndim(v) == 0:
                out[f"pixel_{k}"] = v
        if pixel_curves:
            from tao_lab.report.plots import pixel_curves as compute_pixel_curves

            curves.update(compute_pixel_curves(standard))
    if tao is not None and has_pixel_gt:
        for k, v in tao.compute().items():
            if np.ndim(v) == 0:
                out[f"pixel_{k}"] = v
    if mcfg.get("object", True) and gt_tracks:
        object_frames = sum(c.num_frames for c in clips if c.clip_id in detections)
        counts["object_num_clips"], counts["object_num_frames"] = len(detections), object_frames
        obj = M.rbdc_tbdc(gt_tracks, detections, num_frames=object_frames,
                          group_ties=bool(mcfg.get("group_ties", False)))
        out["object_rbdc"], out["object_tbdc"] = obj["rbdc"], obj["tbdc"]
        curves["object"] = {k: obj[k] for k in ("fpr", "rbdr", "tbdr") if k in obj}

    per_kind = []
    if frame_labels:
        from tao_lab.metrics.by_kind import per_kind_frame_table

        per_kind = per_kind_frame_table(frame_scores, frame_labels, labelled_tracks,
                                        getattr(clips[0], "kind_names", None))

    counts["frame_num_clips"] = len(frame_labels)
    suffix = "_gtgated" if mcfg.get("gt_gating", False) else ""
    metrics = {f"{split}/{k}{suffix}": float(v) for k, v in out.items()}
    metrics.update({f"{split}/{k}": float(v) for k, v in counts.items()})
    metrics.update(scene_check.metrics(split))
    return EvalResult(metrics=metrics, per_video=per_video, curves=curves,
                      overlays=[(img, caption) for _, img, caption in overlays], per_kind=per_kind)


def _has_masks(clip: Clip) -> bool:
    return clip.gt is not None and clip.gt.mask is not None and clip.gt.frame_labels is not None


def alarm_operating_point(alarm, frame_scores: list, frame_labels: list, cfg, fps: list) -> dict[str, float]:
    """``frame_alarm_{precision,recall,false_alarm_rate,event_recall}`` of the flagged frames, events merged as
    in infer.py (config ``events``), plus the event counts (``alarm_events``, ``alarm_false_events``)."""
    from tao_lab.events import find_events, frames_of
    from tao_lab.metrics.operating_point import operating_point

    ecfg = cfg.get("events") or {}
    flags = [alarm(s) for s in frame_scores]
    events = [[(e.start, e.end) for e in find_events(f, s, frames_of(ecfg.get("max_gap_s", 0.5), r),
                                                     max(1, frames_of(ecfg.get("min_length_s", 0.2), r)))]
              for f, s, r in zip(flags, frame_scores, fps)]
    op = operating_point(flags, frame_labels, events)
    return {"frame_alarm_precision": op["precision"], "frame_alarm_recall": op["recall"],
            "frame_alarm_false_alarm_rate": op["false_alarm_rate"], "frame_alarm_event_recall": op["event_recall"],
            "alarm_events": op["events"], "alarm_false_events": op["false_events"],
            "alarm_anomalous_intervals": op["anomalous_intervals"]}


def _video_row(clip: Clip, frame_scores: np.ndarray, labels: Optional[np.ndarray], seg) -> dict:
    row = {"video": clip.clip_id, "frames": clip.num_frames, "objects_segmented": int(len(seg.objects)),
           "max_frame_score": float(np.max(frame_scores)) if len(frame_scores) else float("nan")}
    if labels is not None:
        labels = np.asarray(labels, bool)
        row["anomalous_frames"] = int(labels.sum())
        if 0 < labels.sum() < len(labels):
            from tao_lab.metrics import frame_metrics

            row["frame_auc"] = float(frame_metrics([frame_scores], [labels])["auc_micro"])
    return row
