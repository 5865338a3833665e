"""Cross-scene validation: one table of leave-one-clip-out frame AUC, scene x planted behaviour set.

For every scene (:mod:`tao_lab.validation.scenes`) and every planted set (:mod:`tao_lab.validation.behaviours`):
for each training clip v of the scene, the scorer (one per variant) is fitted on the scene's OTHER training clips,
clip v with one planted object of the set is scored, and the frames the set labels are the positives; the
negatives are the frames of clip v itself without the plant (``negatives="clean"``, the default; ``"planted"``, the
protocol before it: the planted copy's unlabelled frames, which for a loiterer or a wrong-way walker are the frames
where the plant walks normally, so they measured how unusual a pasted walker's normal phase looks); the frame AUC is
pooled over the held-out clips (micro). Test clips are never read. Defaults are chosen on the mean over
all (scene, set) cells, by a rule written in the variants file before the run.

A camera's held-out training clips come from the same days as the clips a fold is fitted on, so they show the places
people use as often as the fit does; a new day's video does not (Ped2's test clips put several times more people at
the bottom of the picture than its training clips: docs/SCORER_ROUNDS.md). ``withhold=S``
simulates that shift on training clips: each fold's fit leaves out every track that ever stands in one place, the
disc around a random fit footprint that holds the share S of the fit's footprints
(:func:`withhold_place`), so the held-out clip's people who use that place are new to the scorer, as on a new day.
``fragments=P`` simulates another shift of new video: more of its objects are pieces (Ped2's test clips: boxes under
half the expected height are 7.1% of the objects against 1.6% of held-out training objects, session 44). Every
track of a scored clip (the held-out clip and its planted copies, not the fit) is cut with probability P: for a
contiguous stretch of its detections its box keeps only its upper part (:func:`fragment_objects`), as when a
detector loses a person's lower half, and the features are computed again for the cut boxes.
``crowd=True`` simulates a busier day (Ped2's test clips: about 1.4x the objects per frame of its held-out training
clips): every scored clip, the held-out clip and its planted copies, gets the people of a spare clip of the same
camera pasted over it (:mod:`tao_lab.validation.crowd`; :func:`tao_lab.validation.scenes.spare_clips`: a clip none
of the scene's folds fits on); the fit stays as it is.

Planting uses the statistics of the other training clips of the same scene, as that scene's camera sees them
(placement, depth, direction, size and speed per row), so every scene gets its full planted sets. Clip v is planted
at depth band ``(v + set index) % 3``, so every set covers several depths.
"""
from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
from omegaconf import DictConfig

from tao_lab.metrics import frame_metrics
from tao_lab.pipeline import Pipeline, instantiate, progress
from tao_lab.types import Clip, ObjectTable
from tao_lab.validation.behaviours import BEHAVIOURS, NUM_DEPTHS, SceneStats, plant_behaviour
from tao_lab.validation.protocol import planting_pipeline
from tao_lab.validation.scenes import (DEFAULT_SCENES, SCENES, SYNTHETIC_SCENES, camera_view, ped2_train_clips,
                                       spare_clips, synthetic_scene, walkable_ground)

log = logging.getLogger(__name__)

#: cross_scene_validate's negatives: the held-out clip without the plant, or the planted copy's unlabelled frames
NEGATIVES = ("clean", "planted")


@dataclass
class SceneClips:
    """One scene's training clips and, per planted set, one planted copy per training clip (None: not placed)."""

    name: str
    train: list[Clip]
    planted: dict[str, list[Optional[Clip]]] = field(default_factory=dict)
    #: the clip scored when training clip v is held out (None: train[v] itself; crowd_scene: train[v] crowded)
    held_out: Optional[list[Clip]] = None

    def scored_clip(self, v: int) -> Clip:
        return self.train[v] if self.held_out is None else self.held_out[v]


def crowd_scene(scene: SceneClips, donors: Sequence[Clip]) -> SceneClips:
    """``scene`` whose held-out clips and planted copies are crowded (:class:`tao_lab.validation.crowd.CrowdedClip`):
    training clip v and its planted copies with the people of ``donors[v]`` (a clip of the same camera that no fold
    fits on; its background is computed once for all of them); the training clips the folds fit on stay as they
    are."""
    from tao_lab.validation.crowd import Crowd, CrowdedClip

    if len(donors) != len(scene.train):
        raise ValueError(f"scene {scene.name}: {len(donors)} crowd donors for {len(scene.train)} training clips")
    crowds = [Crowd(d) for d in donors]
    out = SceneClips(scene.name, list(scene.train),
                     held_out=[CrowdedClip(c, crowd) for c, crowd in zip(scene.train, crowds)])
    out.planted = {k: [None if p is None else CrowdedClip(p, crowds[v]) for v, p in enumerate(clips)]
                   for k, clips in scene.planted.items()}
    return out


@dataclass
class CrossSceneResult:
    """auc[variant][scene][set]: frame AUC (NaN: no planted clip could be made); means skip NaN. ``metric``:
    "micro" (pooled over the held-out clips, the default) or "macro" (mean of per-clip AUCs: blind to how the
    held-out clips' score levels differ, so less noisy for anomalies a variant cannot see at all)."""

    scenes: list[str]
    sets: list[str]
    metric: str = "micro"
    auc: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    positives: dict[str, dict[str, int]] = field(default_factory=dict)  # scene -> set -> labelled frames

    def mean(self, variant: str) -> float:
        v = [self.auc[variant][s][p] for s in self.scenes for p in self.sets]
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    def table(self, variant: str) -> str:
        corner = "scene \\ set"
        width = max(len(corner), len("mean"), *(len(s) for s in self.scenes))
        cols = [*self.sets, "mean"]
        head = f"{corner:<{width}} | " + " | ".join(f"{c:>9}" for c in cols)
        rows = [f"[{variant}] frame AUC {self.metric}", head, "-" * len(head)]
        a = np.array([[self.auc[variant][s][p] for p in self.sets] for s in self.scenes], np.float64)
        with np.errstate(all="ignore"), _quiet():
            for s, r in zip(self.scenes, a):
                rows.append(f"{s:<{width}} | " + " | ".join(f"{x:9.4f}" for x in [*r, np.nanmean(r)]))
            rows.append("-" * len(head))
            rows.append(f"{'mean':<{width}} | " + " | ".join(f"{x:9.4f}" for x in [*np.nanmean(a, 0),
                                                                                   self.mean(variant)]))
        return "\n".join(rows)

    def summary(self) -> str:
        """variant x (mean per scene, mean over scenes and sets)."""
        width = max(len("variant"), *(len(v) for v in self.auc))
        cols = [*self.scenes, "MEAN"]
        cw = max(9, *(len(c) for c in cols))
        head = f"{'variant':<{width}} | " + " | ".join(f"{c:>{cw}}" for c in cols)
        rows = [head, "-" * len(head)]
        with np.errstate(all="ignore"), _quiet():
            for v in self.auc:
                per_scene = [np.nanmean([self.auc[v][s][p] for p in self.sets]) for s in self.scenes]
                rows.append(f"{v:<{width}} | " + " | ".join(f"{x:{cw}.4f}" for x in [*per_scene, self.mean(v)]))
        return "\n".join(rows)

    def tables(self) -> str:
        return "\n\n".join([*(self.table(v) for v in self.auc), "mean over sets per scene, and over everything:",
                            self.summary()])


class _quiet:
    """Silences numpy's 'mean of empty slice' warning (an all-NaN row prints as nan)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def withhold_place(items: Sequence[tuple], heights: Sequence[int], share: float,
                   rng: np.random.Generator) -> tuple[list[tuple], float]:
    """The fit items (objects, features, num_frames) without every track that has a footprint in one place.

    The place is the disc (distances in frame heights) around the footprint (box bottom centre) of a fit object
    drawn with ``rng`` whose radius takes in the share ``share`` of the fit's footprints; every track with a
    footprint inside is left out whole (an untracked object alone), with its feature rows. heights: the frame
    height (px) of each item, the unit of the distances. Returns (items, share of the fit's objects left out)."""
    if not 0.0 < float(share) < 1.0:
        raise ValueError(f"withhold_place must be a share in (0, 1), got {share!r}")
    feet = []
    for (objects, _, _), height in zip(items, heights):
        box = np.asarray(objects.xyxy, np.float64)
        feet.append(np.column_stack([(box[:, 0] + box[:, 2]) / 2 / height, box[:, 3] / height]))
    every = np.concatenate(feet) if feet else np.zeros((0, 2))
    if len(every) == 0:
        return list(items), 0.0
    centre = every[rng.integers(len(every))]
    radius = np.quantile(np.linalg.norm(every - centre, axis=1), float(share))
    out, left_out = [], 0
    for (objects, features, num_frames), f in zip(items, feet):
        inside = np.linalg.norm(f - centre, axis=1) <= radius
        track = np.asarray(objects.track_id, np.int64)
        withheld = inside | ((track >= 0) & np.isin(track, track[inside & (track >= 0)]))
        keep = ~withheld
        left_out += int(withheld.sum())
        out.append((objects.take(keep), {k: np.asarray(v)[keep] for k, v in features.items()}, num_frames))
    if left_out == len(every):
        raise ValueError("withhold_place left no object to fit on")
    return out, left_out / len(every)


def fragment_objects(objects: ObjectTable, probability: float, rng: np.random.Generator,
                     stretch: tuple[float, float] = (0.3, 0.6), keep: tuple[float, float] = (0.3, 0.6)
                     ) -> tuple[ObjectTable, np.ndarray]:
    """``objects`` with some tracks cut to pieces: each track (track id >= 0, at least two detections) is picked
    with ``probability``; for a picked track a contiguous run of a share ``stretch`` (drawn uniformly) of its
    detections, at a random start, keeps only the top share ``keep`` (drawn once per track) of its box height (the
    box's top, left and right stay). Untracked objects are left as they are. Returns (objects, cut (N,) bool)."""
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(f"fragments must be a probability in [0, 1], got {probability!r}")
    from tao_lab.scorer.scene import track_segments

    box = np.asarray(objects.xyxy, np.float64).copy()
    cut = np.zeros(len(objects), bool)
    for rows in track_segments(objects):  # each track's rows in frame order
        if rng.random() >= probability:
            continue
        n = max(1, int(round(rng.uniform(*stretch) * len(rows))))
        start = int(rng.integers(0, len(rows) - n + 1))
        share = rng.uniform(*keep)
        sel = rows[start:start + n]
        box[sel, 3] = box[sel, 1] + share * (box[sel, 3] - box[sel, 1])
        cut[sel] = True
    return ObjectTable(objects.frame, box, objects.score, objects.track_id, objects.cls), cut


def _check_names(kind: str, names: Sequence[str], allowed: Sequence[str]) -> list[str]:
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"unknown {kind} {bad}: expected some of {list(allowed)}")
    if not names:
        raise ValueError(f"no {kind} selected")
    return list(dict.fromkeys(names))


def plant_scene(name: str, train: Sequence[Clip], pipeline: Pipeline, sets: Sequence[str], seed: int = 0,
                show_progress: bool = True, animate: bool = False, off_path_ground: bool = False,
                occlusion: bool = False) -> SceneClips:
    """Planted copies of each training clip of a scene, one per set (leave-one-clip-out statistics; walkers cut
    from the next training clip; animated with ``animate``: see plant_behaviour). off_path_ground: the off_path
    set plants off the scene's walkable ground (scenes.walkable_ground; False: wherever no training object stood,
    as before off-path round 1 and in the benchmarks that reuse these plants). occlusion: each object is pasted
    behind the clip's nearer objects (tao_lab.validation.planted.PlantedClip)."""
    if len(train) < 2:
        raise ValueError(f"scene {name}: leave-one-clip-out validation needs >= 2 training clips, got {len(train)}")
    tracks = [pipeline.tracks(c) for c in progress(train, f"tracks ({name})", show_progress)]
    out = SceneClips(name, list(train))
    walkable = walkable_ground(name, train[0].width, train[0].height) if off_path_ground else None
    stats = [dataclasses.replace(SceneStats.fit([t for u, t in enumerate(tracks) if u != v], c.width, c.height),
                                 walkable=walkable) for v, c in enumerate(train)]
    for k, kind in enumerate(sets):
        clips: list[Optional[Clip]] = []
        for v, clip in enumerate(train):
            d = (v + 1) % len(train)
            rng = np.random.default_rng(_seed(seed, name, kind, v))
            try:
                clips.append(plant_behaviour(clip, kind, stats[v], (train[d], tracks[d]), rng,
                                             depth=(v + k) % NUM_DEPTHS, animate=animate, occlusion=occlusion))
            except ValueError as err:
                log.warning("scene %s, set %s, clip %s: not planted (%s)", name, kind, clip.clip_id, err)
                clips.append(None)
        out.planted[kind] = clips
    return out


def build_scenes(base_cfg: DictConfig, scenes: Sequence[str], sets: Sequence[str], ped2_dir: Optional[str],
                 num_clips: Optional[int], num_frames: Optional[int], seed: int = 0,
                 show_progress: bool = True, animate: bool = False,
                 off_path_ground: bool = False, occlusion: bool = False) -> list[SceneClips]:
    """Every selected scene with its planted sets (Ped2 plants are made once and warped for the cameras); walkers
    animated with ``animate``, off-path walkers off the walkable ground with ``off_path_ground`` and objects pasted
    behind nearer ones with ``occlusion`` (cross_scene_validate's defaults; the benchmarks that reuse these plants keep
    the rigid walkers, planted off the path wherever no training object stood and pasted over everything, that their
    documented numbers were measured with)."""
    scenes = _check_names("scene", scenes, SCENES)
    sets = _check_names("planted set", sets, BEHAVIOURS)
    planter = planting_pipeline(base_cfg)  # the plants do not depend on the detector's background scope
    out: list[SceneClips] = []
    ped2: Optional[list[Clip]] = None
    if any(s not in SYNTHETIC_SCENES for s in scenes):
        if not ped2_dir:
            raise ValueError("the Ped2 scenes need the Ped2 folder: --ped2-dir ../shared/datasets/ucsd_ped2")
        ped2 = ped2_train_clips(ped2_dir, num_clips, num_frames)
    for name in scenes:
        train = synthetic_scene(name, num_clips, num_frames) if name in SYNTHETIC_SCENES else camera_view(name, ped2)
        out.append(plant_scene(name, train, planter, sets, seed, show_progress, animate, off_path_ground, occlusion))
    return out


def cross_scene_validate(base_cfg: DictConfig, variants: Mapping[str, DictConfig],
                         scenes: Sequence[str] = DEFAULT_SCENES, sets: Sequence[str] = BEHAVIOURS,
                         ped2_dir: Optional[str] = None, num_clips: Optional[int] = 4,
                         num_frames: Optional[int] = 120, seed: int = 0,
                         show_progress: bool = True, metric: str = "micro",
                         fit_clips: Optional[int] = None, animate: bool = True,
                         off_path_ground: bool = True, negatives: str = "clean",
                         withhold: Optional[float] = None, fragments: Optional[float] = None,
                         crowd: bool = False, occlusion: bool = True) -> CrossSceneResult:
    """Leave-one-clip-out frame AUC of each variant on each (scene, planted set); see the module docstring.

    variants: {name: composed config}; scorers must fit without a Lightning Trainer. The stage cache is used as
    usual (variants that change only the scorer share one extraction). metric: "micro" (pooled) or "macro".
    fit_clips: fit each fold on only this many of the other clips (the ones after the held-out clip, cyclically)
    instead of all of them: how a variant behaves when a camera has few training clips (same plants and features).
    animate: planted walkers move their limbs (False: the rigid cut-outs of rounds 1-22). off_path_ground: the
    off_path set plants off each scene's walkable ground (False: wherever no training object stood, rounds before
    off-path round 1). negatives: "clean" (the held-out clip's own frames without the plant) or "planted" (the
    planted copy's unlabelled frames; the protocol of every round before the loiter look of session 41).
    withhold: each fold's fit leaves out the tracks of one place holding this share of its footprints
    (:func:`withhold_place`; None: the fit keeps every object). fragments: each track of a scored clip is cut to its
    upper part for a stretch with this probability, features computed again (:func:`fragment_objects`; the same cuts
    for every variant; None: off). crowd: every scored clip gets a crowd from a spare clip of its camera
    (:func:`crowd_scene`; the fit does not). occlusion: each planted object is pasted behind the scored clip's nearer
    objects (tao_lab.validation.planted.PlantedClip; False: over everything, every round before session 60)."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if metric not in ("micro", "macro"):
        raise ValueError(f"metric must be 'micro' or 'macro', got {metric!r}")
    if fit_clips is not None and int(fit_clips) < 1:
        raise ValueError(f"fit_clips must be >= 1 (or None = all other clips), got {fit_clips!r}")
    if withhold is not None and not 0.0 < float(withhold) < 1.0:
        raise ValueError(f"withhold must be a share in (0, 1) (or None), got {withhold!r}")
    if fragments is not None and not 0.0 < float(fragments) <= 1.0:
        raise ValueError(f"fragments must be a probability in (0, 1] (or None), got {fragments!r}")
    from tao_lab.dataset.resize import working_bounds
    from tao_lab.scorer.base import scorer_class

    for name, cfg in variants.items():
        if scorer_class(cfg.scorer._target_).needs_trainer:
            raise ValueError(f"variant {name!r}: {cfg.scorer._target_} is trained with a Lightning Trainer; "
                             "this validation refits the scorer once per held-out clip and supports scorers "
                             "fitted without one (scorer=attribute)")
    # the crowd's donors first: a camera without enough spare clips is refused before any planting
    donors = spare_clips(list(dict.fromkeys(scenes)), num_clips, num_frames, ped2_dir) if crowd else None
    built = build_scenes(base_cfg, scenes, sets, ped2_dir, num_clips, num_frames, seed, show_progress, animate,
                         off_path_ground, occlusion)
    if donors is not None:
        built = [crowd_scene(sc, donors[sc.name]) for sc in built]
    sets = list(dict.fromkeys(sets))
    result = CrossSceneResult([s.name for s in built], sets, metric)
    for sc in built:
        result.positives[sc.name] = {k: int(sum(c.labels.sum() for c in clips if c is not None))
                                     for k, clips in sc.planted.items()}
    front_ends: dict[tuple, Pipeline] = {}  # one extraction per distinct detector/tracker/features and resolution
    cut_inputs: dict[tuple, tuple] = {}  # (front end, scene, fold, set) -> the scorer's input with cut tracks
    measured: dict = {}  # each scene's object height, measured once per detector (working_object_height)
    for name, cfg in variants.items():
        # the same plants for every variant, each seen at the variant's working resolution (tao_lab.dataset.resize)
        bounds = working_bounds(cfg)
        scenes_seen = [_at_working_resolution(sc, cfg, measured) for sc in built]
        pipe = Pipeline(cfg)
        pipe.set_camera_clips(cameras=[sc.train for sc in scenes_seen])  # one camera per scene
        key = (pipe.caches["features"].key, bounds)
        if key not in front_ends:
            front_ends[key] = pipe
            if pipe.cache_dir is not None:  # fill the cache first, in parallel
                every = [c for sc in scenes_seen for c in
                         [*sc.train, *(sc.held_out or []),
                          *(p for clips in sc.planted.values() for p in clips if p is not None)]]
                pipe.extract(every, name)
        pipe = front_ends[key]
        result.auc[name] = {}

        def scored(clip: Clip, sc_name: str, v: int, kind: str) -> tuple:
            """The scorer's input for a held-out or planted clip: as extracted, or with cut tracks (fragments)."""
            if fragments is None:
                return pipe.tracks(clip), pipe.features(clip), clip.num_frames
            memo = (key, sc_name, v, kind)
            if memo not in cut_inputs:  # the same cuts for every variant: seeded by scene, fold and set only
                objects, _ = fragment_objects(pipe.tracks(clip), fragments,
                                              np.random.default_rng(_seed(seed, sc_name, "fragments", v, kind)))
                cut_inputs[memo] = (objects, pipe.feature_set.extract(clip, objects, progress=False),
                                    clip.num_frames)
            return cut_inputs[memo]

        for sc in scenes_seen:
            items = [(pipe.tracks(c), pipe.features(c), c.num_frames) for c in sc.train]
            scores: dict[str, list[np.ndarray]] = {k: [] for k in sets}
            labels: dict[str, list[np.ndarray]] = {k: [] for k in sets}
            for v in progress(range(len(sc.train)), f"{name} / {sc.name}: folds", show_progress):
                scorer = instantiate(cfg.scorer)
                fit = fold_clips(v, len(items), fit_clips)
                fit_items = [items[u] for u in fit]
                if withhold is not None:  # the same place for every variant: seeded by scene and fold only
                    fit_items, gone = withhold_place(fit_items, [sc.train[u].height for u in fit], withhold,
                                                     np.random.default_rng(_seed(seed, sc.name, "withhold", v)))
                    log.info("%s / %s, fold %d: %.1f%% of the fit's objects withheld", name, sc.name, v, 100 * gone)
                scorer.fit_clips(fit_items)
                scorer.eval()
                clean = (np.asarray(scorer.score_clip(*scored(sc.scored_clip(v), sc.name, v, "")).frame_scores,
                                    np.float64) if negatives == "clean" else None)
                for k in sets:
                    clip = sc.planted[k][v]
                    if clip is None:
                        continue
                    out = scorer.score_clip(*scored(clip, sc.name, v, k))
                    frame, lab = np.asarray(out.frame_scores, np.float64), np.asarray(clip.labels, bool)
                    if clean is not None:  # labelled frames against the same clip's frames without the plant
                        frame = np.concatenate([frame[lab], clean])
                        lab = np.r_[np.ones(int(lab.sum()), bool), np.zeros(len(clean), bool)]
                    scores[k].append(frame)
                    labels[k].append(lab)
            result.auc[name][sc.name] = {
                k: _auc(scores[k], labels[k], metric) for k in sets}
            log.info("%s / %s: %s", name, sc.name, result.auc[name][sc.name])
    return result


def _at_working_resolution(scene: SceneClips, cfg: DictConfig, measured: Optional[dict] = None) -> SceneClips:
    """``scene`` with its training and planted clips at ``cfg``'s working resolution: enlarged by the factor
    ``working_object_height`` asks for the scene's camera (measured on its training clips,
    :mod:`tao_lab.dataset.object_scale`), then bounded by ``working_height`` / ``working_min_height`` (the same clips
    when none is resized). ``measured``: object heights already measured (:func:`camera_object_scale`)."""
    from tao_lab.dataset.object_scale import camera_object_scale, scaled_clips
    from tao_lab.dataset.resize import at_working_resolution

    factor = camera_object_scale(scene.train, cfg, f"scene {scene.name}", measured)
    bounds = cfg.get("working_height"), cfg.get("working_min_height")

    def seen(clips: list) -> list:
        return at_working_resolution(scaled_clips(clips, factor), *bounds)

    out = SceneClips(scene.name, seen(scene.train), held_out=None if scene.held_out is None else seen(scene.held_out))
    out.planted = {k: [None if c is None else seen([c])[0] for c in clips] for k, clips in scene.planted.items()}
    return out


def average_results(results: Sequence[CrossSceneResult]) -> CrossSceneResult:
    """One result whose every cell is the mean over ``results`` (the same variants, scenes, sets and metric, e.g. the
    same protocol planted with several seeds; NaN cells are skipped) and whose positives are summed: a paired
    difference of 0.005 on one planting is inside the spread of plantings (README), the mean over several is not."""
    if not results:
        raise ValueError("average_results needs at least one result")
    first = results[0]
    for r in results[1:]:
        if (r.scenes, r.sets, r.metric, list(r.auc)) != (first.scenes, first.sets, first.metric, list(first.auc)):
            raise ValueError("average_results: the results differ in scenes, sets, metric or variants")
    out = CrossSceneResult(list(first.scenes), list(first.sets), first.metric)
    with np.errstate(all="ignore"), _quiet():
        for v in first.auc:
            out.auc[v] = {sc: {k: float(np.nanmean([r.auc[v][sc][k] for r in results])) for k in first.sets}
                          for sc in first.scenes}
    out.positives = {sc: {k: int(sum(r.positives[sc][k] for r in results)) for k in first.sets}
                     for sc in first.scenes}
    return out


def fold_clips(held_out: int, num_clips: int, fit_clips: Optional[int] = None) -> list[int]:
    """The clips a fold fits on: every clip but the held-out one, or only the ``fit_clips`` that follow it
    (cyclically), so each clip is still held out once and every fit set has the same size."""
    others = [(held_out + d) % num_clips for d in range(1, num_clips)]
    if fit_clips is None:
        return sorted(others)
    if int(fit_clips) > len(others):
        raise ValueError(f"fit_clips={fit_clips} but a fold has only {len(others)} other clips")
    return sorted(others[:int(fit_clips)])


def _auc(scores: list[np.ndarray], labels: list[np.ndarray], metric: str = "micro") -> float:
    if not scores:
        return float("nan")
    lab = np.concatenate(labels)
    if lab.all() or not lab.any():
        return float("nan")
    return float(frame_metrics(scores, labels)[f"auc_{metric}"])
