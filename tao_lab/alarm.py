"""The frame alarm: which frames are flagged, with a threshold calibrated for a target false-alarm rate.

The object threshold of the ``threshold`` config group (TAO's tau, 1.0 by default) decides which objects become
prompts for the segmenter. It is not a calibrated alarm: the scorer's calibration maps training objects to about
[0, 1], so a frame score above 1 is not rare on new normal video. The alarm is a separate threshold on FRAME
scores, fitted on scores the scorer did not see while it was fitted (in-sample scores are optimistic):

- **cross-fitting** (no checkpoint: ``infer.py`` fitted on the first ``fit_seconds``, the online warm-up, or the
  training clips in ``eval.py``): the fit data is split into ``folds`` parts (one clip's whole tracks, each part
  spanning the clip, with ``split: tracks``; contiguous time blocks with ``split: time``; or whole clips); for each
  part a fresh scorer is fitted on the other parts and scores that part. The pooled
  held-out frame scores are what a normal frame the scorer never saw looks like;
- **held-out window** (``infer.py`` with ``ckpt_path``): the checkpoint never saw the input, so the frame scores of
  the input's first ``fit_seconds`` (assumed normal, as without a checkpoint) are held-out scores already.

On those scores a threshold is fitted for ``target_false_alarm_rate`` (share of normal frames flagged): method
``conformal`` (default; split-conformal quantile, :class:`~tao_lab.threshold.ConformalThreshold`), ``evt``
(generalised Pareto tail, :class:`~tao_lab.threshold.EvtThreshold`) or ``percentile``. The online mode scores
causally (a frame's score sees only the ring buffer's past), so its held-out scores are computed causally too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from tao_lab.config import to_plain
from tao_lab.types import Clip, ObjectTable
from tao_lab.user_errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("conformal", "evt", "percentile")


def build_threshold(method: str, rate: float):
    """The threshold class behind ``alarm.method`` for a target exceedance ``rate`` of normal scores."""
    from tao_lab.threshold import ConformalThreshold, EvtThreshold, PercentileThreshold

    if method == "conformal":
        return ConformalThreshold(rate)
    if method == "evt":
        # the tail starts at 10x the target rate so the fit has tail points on short fit windows
        return EvtThreshold(exceedance=rate, tail_quantile=max(0.5, 1.0 - 10.0 * rate), min_tail=10)
    if method == "percentile":
        return PercentileThreshold(100.0 * (1.0 - rate))
    raise ConfigError(f"alarm.method must be one of {', '.join(METHODS)}, got {method!r}")


@dataclass
class Alarm:
    """A fitted frame alarm: ``alarm(frame_scores) -> bool flags`` (score strictly above ``tau``).

    calibration: how the held-out scores were obtained (shown in summary.json and the report);
    calibration_frames / calibration_rate: how many held-out normal frames, and the share of them above tau
    (the false-alarm rate reached on the fit data).
    """

    threshold: Any
    target_rate: float
    method: str
    calibration: str
    calibration_frames: int
    calibration_rate: float

    @property
    def tau(self) -> float:
        return float(self.threshold.tau)

    def __call__(self, scores) -> np.ndarray:
        return np.asarray(self.threshold(scores), bool)

    def to_dict(self) -> dict:
        out = {"threshold": round(self.tau, 6), "method": self.method,
               "target_false_alarm_rate": self.target_rate,
               "false_alarm_rate_on_held_out_fit_frames": round(self.calibration_rate, 5),
               "held_out_fit_frames": self.calibration_frames, "calibration": self.calibration}
        fallback = getattr(self.threshold, "fallback", None)
        if fallback:
            out["fallback"] = fallback
        return out


def fit_alarm(heldout_scores: np.ndarray, cfg_alarm, calibration: str) -> Alarm:
    """Fits the alarm threshold on held-out normal frame scores (``cfg_alarm``: the ``alarm`` config node)."""
    rate = float(cfg_alarm.get("target_false_alarm_rate", 0.01))
    method = str(cfg_alarm.get("method", "conformal"))
    x = np.asarray(heldout_scores, np.float64).reshape(-1)
    thr = build_threshold(method, rate).fit(x)
    reached = float(np.mean(thr(x))) if len(x) else float("nan")
    alarm = Alarm(thr, rate, method, calibration, int(len(x)), reached)
    log.info("alarm: threshold %.4f on frame scores (%s, target false-alarm rate %g, %.3g reached on %d held-out "
             "frames; %s)", alarm.tau, method, rate, reached, len(x), calibration)
    return alarm


# ----- held-out frame scores --------------------------------------------------------------------------------
def causal_frame_scores(scorer, objects: ObjectTable, features: dict, num_frames: int, window: int) -> np.ndarray:
    """Each frame's score as the online mode computes it: through the scorer's own per-frame form
    (``scorer.stream(window)``, by default the scorer on the last ``window`` frames only, the frame's own score
    being the last of that window: no look-ahead); 0 while the window holds no object."""
    order = np.argsort(objects.frame, kind="stable")
    frames = objects.frame[order]
    starts = np.searchsorted(frames, np.arange(num_frames + 1))
    out = np.zeros(num_frames, np.float32)
    stream = scorer.stream(window)
    for t in range(num_frames):
        rows = order[starts[t]:starts[t + 1]]
        scores = stream.step(t, objects.take(rows), {k: v[rows] for k, v in features.items()})
        if len(scores.scores.objects):
            out[t] = scores.frame_score
    return out


def _frame_scores(scorer, item, causal_window: Optional[int]) -> np.ndarray:
    objects, feats, n = item
    if causal_window:
        return causal_frame_scores(scorer, objects, feats, n, int(causal_window))
    return np.asarray(scorer.score_clip(objects, feats, n).frame_scores, np.float64)


def window_blocks(objects: ObjectTable, features: dict, num_frames: int, folds: int,
                  min_frames: int = 8) -> list[tuple]:
    """Frames [0, num_frames) of one clip's objects cut into ``folds`` contiguous blocks (fewer when a block would be
    shorter than ``min_frames``), each an item ``(objects, features, block length)`` re-indexed from frame 0."""
    if num_frames < 2 * min_frames:
        raise ConfigError(f"{num_frames} frames are too few to calibrate the alarm by cross-fitting (need at least "
                          f"{2 * min_frames}); give a longer fit_seconds")
    k = max(2, min(int(folds), num_frames // max(1, min_frames)))
    edges = np.linspace(0, num_frames, k + 1).round().astype(int)
    return [frame_range(objects, features, int(a), int(b)) for a, b in zip(edges, edges[1:])]


def frame_range(objects: ObjectTable, features: dict, a: int, b: int) -> tuple:
    """The item ``(objects, features, b - a)`` of frames [a, b), re-indexed from frame 0."""
    m = (objects.frame >= a) & (objects.frame < b)
    o = objects.take(m)
    return (ObjectTable(o.frame - a, o.xyxy, o.score, o.track_id, o.cls),
            {name: v[m] for name, v in features.items()}, int(b - a))


class TooFewTracks(ValueError):
    """The fit window holds fewer than two tracks: it cannot be split by track."""


def track_parts(objects: ObjectTable, features: dict, num_frames: int, folds: int) -> list[tuple]:
    """Frames [0, num_frames) of one clip split into ``folds`` parts BY TRACK (round-robin over the tracks in order
    of first appearance; untracked rows round-robin by row), each part an item ``(objects, features, num_frames)``
    spanning the whole window. Unlike time blocks, a track's whole history stays in one part, so what depends on it
    (how long an object has stood still, a running median along the track) is fitted as it will be scored."""
    m = objects.frame < num_frames
    o, feats = objects.take(m), {name: v[m] for name, v in features.items()}
    tids = np.asarray(o.track_id)
    tracked = tids >= 0
    # tracks in order of first appearance (rows are ordered by frame), ties by id
    ids, first_row, inverse = np.unique(tids[tracked], return_index=True, return_inverse=True)
    rank = np.empty(len(ids), int)
    rank[np.lexsort((ids, first_row))] = np.arange(len(ids))
    units = len(ids) + int((~tracked).sum())
    if units < 2:
        raise TooFewTracks(f"{len(ids)} track(s) in the fit window are too few to calibrate the alarm by "
                           "cross-fitting over tracks (need at least 2); give a longer fit_seconds")
    k = max(2, min(int(folds), units))
    part = np.empty(len(o), int)
    part[tracked] = rank[inverse] % k
    part[~tracked] = np.arange(int((~tracked).sum())) % k
    return [(o.take(part == i), {name: v[part == i] for name, v in feats.items()}, int(num_frames))
            for i in range(k)]


def crossfit_items(pipe, items: list, folds: int, causal_window: Optional[int] = None) -> tuple[np.ndarray, str]:
    """Held-out frame scores of every item [(objects, features, num_frames)]: item i belongs to fold i % folds and
    is scored by a fresh scorer fitted on the other folds. A fold whose complement cannot fit a scorer (e.g. no
    objects) is skipped with a warning. Returns (scores, a description)."""
    per_item, how = _crossfit(pipe, items, folds, causal_window)
    return np.concatenate(per_item), how


def crossfit_tracks(pipe, parts: list, folds: int, causal_window: Optional[int] = None) -> tuple[np.ndarray, str]:
    """Held-out frame scores of one window split by :func:`track_parts`: every object is scored by a scorer that
    never saw its track, and a frame's score is the max over the parts (the frame score is a max over objects)."""
    per_part, how = _crossfit(pipe, parts, folds, causal_window, unit="track parts")
    return np.max(np.stack([np.asarray(x, np.float64) for x in per_part]), 0), how


def _crossfit(pipe, items: list, folds: int, causal_window: Optional[int] = None,
              unit: str = "parts") -> tuple[list, str]:
    k = max(2, min(int(folds), len(items)))
    out, used = [], 0
    for f in range(k):
        train = [items[i] for i in range(len(items)) if i % k != f]
        try:
            scorer = pipe.new_fitted_scorer(train, single_process=True)  # rank 0 alone under DDP
        except ValueError as exc:
            log.warning("alarm cross-fitting: fold %d of %d skipped (%s)", f + 1, k, exc)
            continue
        used += 1
        out.extend(_frame_scores(scorer, items[i], causal_window) for i in range(len(items)) if i % k == f)
    if not out:
        from tao_lab.pipeline import NoTrainingObjectsError

        if sum(len(it[0]) for it in items) == 0:  # an empty scene: the callers name the input and the ways out
            raise NoTrainingObjectsError("the fit data hold no detected object: nothing to fit the scorer on")
        raise ConfigError("alarm cross-fitting: no fold could fit a scorer (too few objects in the fit data); "
                          "give a longer fit_seconds or a checkpoint")
    how = (f"{used}-fold cross-fitting over {len(items)} {unit} of the fit data"
           + (f", causal scores (window {causal_window} frames)" if causal_window else ""))
    return out, how


def fit_on_window(pipe, cfg, clip: Clip, num_frames: int, from_checkpoint: bool,
                  causal_window: Optional[int] = None) -> Alarm:
    """The scorer (unless it comes from a checkpoint) and the alarm of ``infer.py`` / the online mode, from the
    first ``num_frames`` of ``clip`` (assumed normal).

    The objects and features are those of ``clip`` itself (the clip the main pass scores, so detections and tracks
    are made the same way). Without a checkpoint the window is cut into ``alarm.folds`` time blocks: the final
    scorer is fitted on all blocks as separate parts (so per-part calibrations, e.g. leave-one-video-out, work as
    in the cross-fitted scorers, and their scores are comparable), and each block's held-out scores come from a
    scorer fitted on the other blocks. With a checkpoint the window is held out already and scored by it.
    """
    from tao_lab.cache import stable_hash

    acfg = cfg.get("alarm") or {}
    folds = int(acfg.get("folds", 5))
    objects, feats = pipe.tracks(clip), pipe.features(clip)
    if from_checkpoint:
        window = frame_range(objects, feats, 0, int(num_frames))
        scores = _frame_scores(pipe.scorer, window, causal_window)
        how = (f"held-out window: the checkpoint's scores of the first {num_frames} frames of the input (not seen "
               f"in training, assumed normal)" + (", causal scores" if causal_window else ""))
        return fit_alarm(scores, acfg, how)
    blocks, scores, how = window_crossfit(pipe, objects, feats, int(num_frames), folds,
                                          str(acfg.get("split", "time")), causal_window)
    pipe.set_scorer(pipe.new_fitted_scorer(blocks),
                    key=stable_hash({"up": pipe.caches["features"].spec, "scorer": to_plain(cfg.scorer),
                                     "window_of": clip.source, "frames": int(num_frames), "blocks": len(blocks),
                                     "seed": cfg.get("seed")}))
    return fit_alarm(scores, acfg, how)


def window_crossfit(pipe, objects: ObjectTable, features: dict, num_frames: int, folds: int, split: str,
                    causal_window: Optional[int] = None) -> tuple[list, np.ndarray, str]:
    """(parts, held-out frame scores, description) of one fit window, split into ``folds`` time blocks
    (``split="time"``) or track parts (``"tracks"``, :func:`track_parts`)."""
    if split not in ("time", "tracks"):
        raise ConfigError(f"alarm.split must be 'time' or 'tracks', got {split!r}")
    if split == "tracks":
        try:
            parts = track_parts(objects, features, num_frames, folds)
        except TooFewTracks as exc:  # time blocks still say what can be said (or name an empty scene)
            log.info("alarm: %s; cutting the fit window into time blocks instead", exc)
        else:
            return (parts, *crossfit_tracks(pipe, parts, folds, causal_window))
    blocks = window_blocks(objects, features, num_frames, folds)
    return (blocks, *crossfit_items(pipe, blocks, folds, causal_window))


def calibrate_on_training(pipe, cfg, train_clips: list[Clip]) -> Alarm:
    """The alarm of ``eval.py``: cross-fitting over the (normal) training clips, whole clips per fold (a single
    training clip is split like a fit window, by ``alarm.split``)."""
    from tao_lab.artifacts import RawArrays
    from tao_lab.cache import StageCache

    acfg = cfg.get("alarm") or {}
    folds = int(acfg.get("folds", 5))
    split = str(acfg.get("split", "time"))

    def heldout_scores() -> RawArrays:
        items = [(pipe.tracks(c), pipe.features(c), c.num_frames) for c in train_clips]
        if len(items) == 1:
            _, scores, how = window_crossfit(pipe, *items[0], folds, split)
            how = how.replace("of the fit data", "of the training clip")
        else:
            scores, how = crossfit_items(pipe, items, folds)
            how = how.replace("parts of the fit data", "training clips")
        return RawArrays(scores=np.asarray(scores, np.float64), how=np.array(how))

    # The held-out scores depend on the scorer and its fit data only, not on the alarm's method or target nor on
    # anything downstream (threshold, prompts, segmenter): cached, a sweep over those re-fits no fold scorer.
    spec = pipe.scorer_spec(train_clips)
    spec.update(train_clips=[c.source for c in train_clips], folds=folds,  # clip order decides the folds
                split=split if len(train_clips) == 1 else None)
    cache = StageCache(pipe.cache_dir, "alarm_heldout", spec)
    record = cache.get_or_compute("training", "heldout", heldout_scores)
    return fit_alarm(np.asarray(record["scores"], np.float64), acfg, str(record["how"]))
