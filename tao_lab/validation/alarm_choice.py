"""Choosing the frame alarm's defaults (method, target false-alarm rate, cross-fitting folds) on TRAINING clips only.

The alarm (:mod:`tao_lab.alarm`) is calibrated on held-out frame scores of normal data. This protocol runs that
calibration on the cross-scene validation's scenes (:mod:`tao_lab.validation.cross_scene`: Ped2 training clips,
the same clips through simulated cameras, the synthetic scenes) and measures what a user would live with, on the
planted copies of each held-out training clip (fast, cart, wrong way, off the paths, loitering). Two modes, as
the tool calibrates them:

- ``window`` (``infer.py`` / online without a checkpoint): the scorer is fitted on a few seconds of normal video
  of the same camera, here one other training clip of the scene (clip v+1 for held-out clip v), cut into
  ``folds`` time blocks or track parts (``split``); held-out scores by cross-fitting over them
  (:func:`tao_lab.alarm.window_crossfit`).
  Also measured: the share of the fit window's own frames the alarm flags (they are normal by premise);
- ``clips`` (``eval.py``): the scorer is fitted on the scene's other training clips; held-out scores by
  cross-fitting over those clips (whole clips per fold, so ``folds`` above their number changes nothing).

As in the tools, clips mode's detector and segmenter know the scene's training clips (its camera background), window
mode's do not (a video alone: per-clip backgrounds); until session 44 both modes used per-clip backgrounds.

Per candidate: the false-alarm rate on the held-out training clips themselves, untouched (every frame normal;
pooled), the recall of the planted clips' anomalous frames (mean over scene x set cells) and the precision on the
planted clips (pooled; their unlabelled frames can show the planted object walking in before it turns or stands,
so it is only a rough figure). Test clips are never read; the planted labels are the only labels. The rule that
picks the default is written in the candidates file before the run.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
from omegaconf import DictConfig

from tao_lab.pipeline import Pipeline, progress, uses_camera_background
from tao_lab.validation.behaviours import BEHAVIOURS
from tao_lab.validation.cross_scene import build_scenes
from tao_lab.validation.scenes import DEFAULT_SCENES

log = logging.getLogger(__name__)

MODES = ("window", "clips")
CLEAN = "clean"  # the cell of the untouched held-out clips: where false alarms are counted


@dataclass(frozen=True)
class Candidate:
    method: str
    target: float
    folds: int
    split: str = "time"  # how the window mode cuts its fit window (tao_lab.alarm.window_crossfit)

    @property
    def name(self) -> str:
        return f"{self.method}/{self.target:g}/{self.folds}" + ("" if self.split == "time" else f"/{self.split}")


@dataclass
class _Counts:
    """Flag counts of one (candidate, mode, scene, set) cell; set ``CLEAN`` holds the untouched held-out clips."""

    normal: int = 0
    false_alarms: int = 0
    anomalous: int = 0
    hits: int = 0

    def add(self, flags: np.ndarray, labels: np.ndarray) -> None:
        self.normal += int((~labels).sum())
        self.false_alarms += int((flags & ~labels).sum())
        self.anomalous += int(labels.sum())
        self.hits += int((flags & labels).sum())


@dataclass
class AlarmChoiceResult:
    """Per candidate and mode: pooled false-alarm rate, mean recall over (scene, set) cells, pooled precision;
    for the window mode also the share of fit-window frames flagged."""

    candidates: list[Candidate]
    scenes: list[str]
    sets: list[str]
    counts: dict = field(default_factory=dict)  # (candidate, mode, scene, set) -> _Counts
    window: dict = field(default_factory=dict)  # candidate -> [flagged fit frames, fit frames]

    def summary(self, c: Candidate, mode: str) -> dict[str, float]:
        cells = [self.counts[(c, mode, s, k)] for s in self.scenes for k in self.sets
                 if (c, mode, s, k) in self.counts]
        clean = [self.counts[(c, mode, s, CLEAN)] for s in self.scenes if (c, mode, s, CLEAN) in self.counts]
        normal = sum(x.normal for x in clean)
        fa = sum(x.false_alarms for x in clean)
        hits, planted_fa = sum(x.hits for x in cells), sum(x.false_alarms for x in cells)
        recalls = [x.hits / x.anomalous for x in cells if x.anomalous]
        out = {"false_alarm_rate": fa / normal if normal else float("nan"),
               "recall": float(np.mean(recalls)) if recalls else float("nan"),
               "precision": hits / (hits + planted_fa) if hits + planted_fa else float("nan")}
        if mode == "window":
            flagged, total = self.window.get(c, (0, 0))
            out["fit_window_flagged"] = flagged / total if total else float("nan")
        return out

    def table(self) -> str:
        head = (f"{'method/target/folds':<22} | {'window FA':>9} | {'fit flagged':>11} | {'recall':>7} | "
                f"{'precision':>9} || {'clips FA':>8} | {'recall':>7} | {'precision':>9} || {'mean recall':>11}")
        rows = [head, "-" * len(head)]
        for c in self.candidates:
            w, e = self.summary(c, "window"), self.summary(c, "clips")
            rows.append(f"{c.name:<22} | {w['false_alarm_rate']:9.4f} | {w['fit_window_flagged']:11.4f} | "
                        f"{w['recall']:7.4f} | {w['precision']:9.4f} || {e['false_alarm_rate']:8.4f} | "
                        f"{e['recall']:7.4f} | {e['precision']:9.4f} || {self.mean_recall(c):11.4f}")
        return "\n".join(rows)

    def mean_recall(self, c: Candidate) -> float:
        return float(np.nanmean([self.summary(c, m)["recall"] for m in MODES]))


def candidates_from(spec: Mapping) -> list[Candidate]:
    """Every combination of ``methods`` x ``targets`` x ``folds`` of a candidates mapping."""
    from tao_lab.alarm import METHODS

    methods = [str(m) for m in spec.get("methods", ["conformal"])]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"alarm candidates: unknown methods {bad}; expected some of {list(METHODS)}")
    targets = [float(t) for t in spec.get("targets", [0.01])]
    if any(not 0 < t < 1 for t in targets):
        raise ValueError(f"alarm candidates: targets must be in (0, 1), got {targets}")
    folds = [int(f) for f in spec.get("folds", [5])]
    if any(f < 2 for f in folds):
        raise ValueError(f"alarm candidates: folds must be >= 2, got {folds}")
    splits = [str(x) for x in spec.get("splits", ["time"])]
    if any(x not in ("time", "tracks") for x in splits):
        raise ValueError(f"alarm candidates: splits must be 'time' or 'tracks', got {splits}")
    return [Candidate(m, t, f, x) for x, m, t, f in itertools.product(splits, methods, targets, folds)]


def validate_alarm(base_cfg: DictConfig, candidates: Sequence[Candidate], scenes: Sequence[str] = DEFAULT_SCENES,
                   sets: Sequence[str] = BEHAVIOURS, ped2_dir: Optional[str] = None, num_clips: int = 4,
                   num_frames: int = 120, seed: int = 0, show_progress: bool = True) -> AlarmChoiceResult:
    """Runs both calibration modes for every candidate on every scene (see the module docstring)."""
    from tao_lab.alarm import build_threshold, crossfit_items, window_crossfit

    if not candidates:
        raise ValueError("no alarm candidates")
    built = build_scenes(base_cfg, scenes, sets, ped2_dir, num_clips, num_frames, seed, show_progress)
    # clips mode is eval.py: its stages know the camera's training clips (one camera per scene); window mode is
    # infer.py on a video alone, with no training clips: per-clip backgrounds (the same pipeline when no stage
    # uses a camera background)
    clips_pipe = Pipeline(base_cfg)
    clips_pipe.set_camera_clips(cameras=[sc.train for sc in built])
    window_pipe = Pipeline(base_cfg) if uses_camera_background(base_cfg) else clips_pipe
    every = [c for sc in built
             for c in [*sc.train, *(p for clips in sc.planted.values() for p in clips if p is not None)]]
    for mode, pipe in [("clips", clips_pipe), *([("window", window_pipe)] if window_pipe is not clips_pipe else [])]:
        if pipe.cache_dir is not None:  # fill the cache first, in parallel
            pipe.extract(every, f"alarm ({mode} mode)")
    sets = list(dict.fromkeys(sets))
    result = AlarmChoiceResult(list(candidates), [sc.name for sc in built], sets)
    fold_counts = sorted({c.folds for c in candidates})
    window_setups = sorted({(c.split, c.folds) for c in candidates})

    def flag_all(heldout: np.ndarray, scored: list, mode: str, scene: str, setup: Optional[tuple],
                 fit_scores: Optional[np.ndarray] = None) -> None:
        for c in candidates:
            if setup is not None and (c.split, c.folds) != setup:
                continue
            thr = build_threshold(c.method, c.target).fit(heldout)
            for kind, scores, labels in scored:
                result.counts.setdefault((c, mode, scene, kind), _Counts()).add(np.asarray(thr(scores), bool),
                                                                                labels)
            if fit_scores is not None:
                flagged, total = result.window.get(c, (0, 0))
                result.window[c] = (flagged + int(np.asarray(thr(fit_scores), bool).sum()), total + len(fit_scores))

    def score_planted(pipe, scorer, sc, v) -> list:
        held_out = sc.train[v]  # untouched: every frame normal
        s = scorer.score_clip(pipe.tracks(held_out), pipe.features(held_out), held_out.num_frames).frame_scores
        out = [(CLEAN, np.asarray(s, np.float64), np.zeros(held_out.num_frames, bool))]
        for kind in sets:
            clip = sc.planted[kind][v]
            if clip is None:
                continue
            s = scorer.score_clip(pipe.tracks(clip), pipe.features(clip), clip.num_frames).frame_scores
            out.append((kind, np.asarray(s, np.float64), np.asarray(clip.labels, bool)))
        return out

    for sc in built:
        items = [(clips_pipe.tracks(c), clips_pipe.features(c), c.num_frames) for c in sc.train]
        window_items = (items if window_pipe is clips_pipe else
                        [(window_pipe.tracks(c), window_pipe.features(c), c.num_frames) for c in sc.train])
        for v in progress(range(len(sc.train)), f"alarm / {sc.name}: folds", show_progress):
            # clips mode (eval.py): fit on the other clips, cross-fit over them
            others = [it for u, it in enumerate(items) if u != v]
            heldout, _ = crossfit_items(clips_pipe, others, max(fold_counts))
            flag_all(heldout, score_planted(clips_pipe, clips_pipe.new_fitted_scorer(others), sc, v), "clips",
                     sc.name, None)
            # window mode (infer.py / online): fit on another clip of the camera, cut into time blocks
            objects, feats, n = window_items[(v + 1) % len(window_items)]
            for split, folds in window_setups:
                parts, heldout, _ = window_crossfit(window_pipe, objects, feats, n, folds, split)
                final = window_pipe.new_fitted_scorer(parts)
                fit_scores = np.asarray(final.score_clip(objects, feats, n).frame_scores, np.float64)
                flag_all(heldout, score_planted(window_pipe, final, sc, v), "window", sc.name, (split, folds),
                         fit_scores)
        log.info("alarm / %s done", sc.name)
    return result
