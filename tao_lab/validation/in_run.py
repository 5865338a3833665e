"""``val/`` metrics inside an eval or train run: the planted-anomaly protocol with the run's own settings.

The protocol is :mod:`tao_lab.validation.protocol` (``python -m tao_lab.validation``): leave-one-clip-out over the
TRAINING clips, each held-out clip with one planted anomalous object per planted set. Here every fold is a
:class:`~tao_lab.pipeline.Pipeline` built from the run's config, so the fold's scorer fit, scores, prompts and masks
go through the stage cache like the run's own (a second run with the same settings recomputes nothing), and the
fold's threshold, prompt filter and segmenter are the run's. Only ``dataset.train`` is read: never a test clip, never
a test label (the caller does not even pass them).

Metrics (config group ``validation``, configs/validation/planted.yaml):

- ``val/frame_auc_<set>``: frame AUC pooled over the held-out clips with that planted set; the same number
  ``python -m tao_lab.validation`` prints for the same config and ``--seed`` (the fold scorer is fitted on the same
  clips with the same config; here it is cached);
- ``val/frame_auc_mean``: their mean (the protocol's "mean" column);
- ``val/object_rbdc`` / ``val/object_tbdc``: RBDC/TBDC of the segmentation's objects against the planted object's
  box (alpha > 0.5, clipped to the frame; regions smaller than ``metrics.gt_min_area`` pixels dropped), on one
  planted copy per held-out clip: clip v carries planted set number v mod the number of sets. Every other object
  the run flags on that clip is a false positive, so these move with the threshold and the prompt filter;
- ``val/pixel_ap``, ``val/pixel_f1_max``, ``val/pixel_auroc`` (``pixel: true``): the standard pixel metrics of the
  run's masks and pixel scores (pooled over every frame of those same planted copies, exact) against the planted
  object's pasted pixels on its labelled frames (:meth:`~tao_lab.validation.planted.PlantedClip.object_mask`): the
  masks' and pixel scores' figure without a test label; every other object the run segments there is a false
  positive, as for RBDC;
- ``val/clips`` (held-out clips) and ``time/validation_s`` (the extra cost).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tao_lab.types import Clip, ObjectTable

log = logging.getLogger(__name__)

MIN_CLIPS = 2  # one held out, at least one to fit on


@dataclass
class InRunValidation:
    """The ``val/`` metrics of a run (empty when skipped) and one line saying what was done or why not."""

    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


def plant_specs(vcfg: DictConfig) -> tuple:
    """The planted sets of the ``validation`` config: ``plants: null`` = the protocol's DEFAULT_PLANTS; a
    ``cut_threshold`` other than null applies to every set."""
    import dataclasses

    from tao_lab.validation.protocol import DEFAULT_PLANTS

    cut = vcfg.get("cut_threshold")
    plants = vcfg.get("plants")
    specs = DEFAULT_PLANTS if plants is None else _configured_plants(plants)
    if cut is not None:
        specs = tuple(dataclasses.replace(s, cut_threshold=float(cut)) for s in specs)
    return specs


def _configured_plants(plants) -> tuple:
    """The ``validation.plants`` list as PlantSpecs (each entry: name, kind, speed, optional duration and
    speed_unit: px, the default, or normal)."""
    from tao_lab.validation.protocol import PlantSpec

    specs = []
    for p in OmegaConf.to_container(plants, resolve=True):
        if not isinstance(p, dict) or not {"name", "kind", "speed"} <= set(p):
            raise ValueError(f"validation.plants: each entry needs name, kind and speed, got {p!r} "
                             "(e.g. {name: fast, kind: walker, speed: [4, 8]})")
        specs.append(PlantSpec(str(p["name"]), str(p["kind"]), tuple(float(s) for s in p["speed"]),
                               tuple(int(d) for d in p.get("duration", (40, 80))),
                               speed_unit=str(p.get("speed_unit", "px"))))
    if not specs:
        raise ValueError("validation.plants is an empty list: give at least one set, or null for the defaults")
    return tuple(specs)


def planted_box_table(clip, min_area: float = 0.0) -> ObjectTable:
    """The planted object of a :class:`~tao_lab.validation.planted.PlantedClip` as GT regions (one track, id 0): the
    box around its alpha > 0.5 (scaled as pasted) in every labelled frame, clipped to the frame; regions under ``min_area`` px dropped."""
    ys, xs = np.nonzero(clip.alpha > 0.5)
    if len(xs) == 0:
        return ObjectTable.empty()
    inner = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    frames = np.flatnonzero(clip.labels)
    tl = clip.top_left[frames]
    # the sprite is pasted scaled by clip.scale[i] about its top-left corner (behaviour plants change it per frame)
    boxes = np.concatenate([tl, tl], axis=1) + inner[None, :] * clip.scale[frames][:, None]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, clip.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, clip.height)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = area > max(float(min_area), 0.0)
    return ObjectTable.build(frames[keep], boxes[keep], track_id=np.zeros(int(keep.sum())))


def cached_planted_clips(train: Sequence[Clip], pipe, specs: Sequence, seed: int,
                         show_progress: bool = True) -> dict[str, list]:
    """:func:`tao_lab.validation.protocol.planted_clips`, with the planted objects (sprite, alpha, positions) kept in
    the stage cache: cutting a walker reads and medians its donor clip's frames, most of a warm run's validation
    time otherwise. The key covers the training clips, their tracks, the sets, the seed and the source code of the
    planting modules, so a changed harness plants afresh; the clips rebuilt from the cache are the same objects
    pasted at the same positions (same clip ids and sources, so their stage outputs are found again)."""
    import dataclasses
    import inspect
    import json
    import os
    from pathlib import Path

    from tao_lab.cache import stable_hash
    from tao_lab.validation import planted as planted_module, protocol as protocol_module
    from tao_lab.validation.planted import PlantedClip
    from tao_lab.validation.protocol import planted_clips

    if pipe.cache_dir is None:
        return planted_clips(train, pipe, specs, seed=seed, show_progress=show_progress)
    spec = {"train": [c.source for c in train], "tracks": pipe.caches["track"].key, "seed": seed,
            "plants": [dataclasses.asdict(s) for s in specs],
            "code": stable_hash([inspect.getsource(planted_module), inspect.getsource(protocol_module)])}
    folder = Path(pipe.cache_dir) / "planted" / stable_hash(spec)
    path = folder / "planted.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {s.name: [PlantedClip(clip, z[f"{s.name}__{v}__sprite"], z[f"{s.name}__{v}__alpha"],
                                             z[f"{s.name}__{v}__top_left"], str(z[f"{s.name}__{v}__tag"]))
                                 for v, clip in enumerate(train)] for s in specs}
        except Exception as exc:  # noqa: BLE001 - an unreadable cache file is replanted, never trusted
            log.warning("cache file %s unreadable (%s); planting again", path, exc)
    planted = planted_clips(train, pipe, specs, seed=seed, show_progress=show_progress)
    arrays = {}
    for name, clips in planted.items():
        for v, clip in enumerate(clips):
            arrays.update({f"{name}__{v}__sprite": clip.sprite, f"{name}__{v}__alpha": clip.alpha,
                           f"{name}__{v}__top_left": clip.top_left,
                           f"{name}__{v}__tag": np.array(clip.clip_id[len(train[v].clip_id) + 1:])})
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"planted.{os.getpid()}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    (folder / "key.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
    return planted


def add_planted_pixels(pixel, clip, score_maps: np.ndarray, shape: str = "pasted") -> None:
    """Feeds ``pixel`` (a PixelMetrics) every frame of a planted clip: the run's pixel scores against the planted
    object's ground truth (``shape``: PlantedClip.object_mask) on its labelled frames (no anomalous pixel
    elsewhere)."""
    empty = np.zeros((clip.height, clip.width), bool)
    for i in range(clip.num_frames):
        pixel.update(np.asarray(score_maps[i], np.float32), clip.object_mask(i, shape) if clip.labels[i] else empty)


@contextlib.contextmanager
def _quiet(name: str, level: int = logging.WARNING):
    """One fold after the other logs its threshold fit: keep those lines out of the run log."""
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


def validation_metrics(cfg: DictConfig, train: Sequence[Clip], dataset_name: str = "dataset",
                       show_progress: Optional[bool] = None) -> InRunValidation:
    """The run's ``val/`` metrics on its TRAINING clips ``train`` (see the module docstring), or a note saying why
    there are none (``validation=none``, fewer than two training clips, a scorer trained with a Lightning Trainer,
    the gt_gating oracle, nowhere to plant an object)."""
    from tao_lab.metrics import PixelMetrics, frame_metrics, rbdc_tbdc
    from tao_lab.pipeline import Pipeline, progress
    from tao_lab.scorer.base import scorer_class
    from tao_lab.validation.protocol import planting_pipeline, specs_at_working_resolution

    vcfg = OmegaConf.select(cfg, "validation")
    kind = "none" if vcfg is None else str(vcfg.get("kind", "planted"))
    if kind == "none":
        return InRunValidation(note="validation=none: no val/ metrics")
    if kind != "planted":
        raise ValueError(f"validation.kind must be 'planted' or 'none', got {kind!r} (configs/validation/)")
    train = list(train)
    if len(train) < MIN_CLIPS:
        note = (f"val/ skipped: {dataset_name} has {len(train)} training clip(s); the planted-anomaly validation "
                f"holds one out and fits on the others, so it needs >= {MIN_CLIPS} (validation=none to silence)")
        log.warning(note)
        return InRunValidation(note=note)
    if scorer_class(cfg.scorer._target_).needs_trainer:
        note = (f"val/ skipped: {cfg.scorer._target_} is trained with a Lightning Trainer and the validation refits "
                f"the scorer once per held-out clip ({len(train)} fits); validation=none to silence")
        log.warning(note)
        return InRunValidation(note=note)

    if cfg.metrics.get("gt_gating", False):
        note = ("val/ skipped: the gt_gating oracle keeps boxes only on frames the labels call anomalous, which "
                "would hand the planted labels to the run; validation=none to silence")
        log.warning(note)
        return InRunValidation(note=note)

    start = time.perf_counter()
    show = bool(cfg.get("progress", True)) if show_progress is None else show_progress
    specs = plant_specs(vcfg)
    seed = int(vcfg.get("seed", 0))
    want_object = bool(vcfg.get("object", True))
    want_pixel = want_object and bool(vcfg.get("pixel", True))
    from tao_lab.validation.planted import GT_SHAPES

    pixel_gt = str(vcfg.get("pixel_gt", "pasted"))
    if want_pixel and pixel_gt not in GT_SHAPES:
        raise ValueError(f"validation.pixel_gt must be one of {GT_SHAPES}, got {pixel_gt!r}")
    pipe = Pipeline(cfg)
    pipe.set_camera_clips(train)  # scope=camera: each clip (and its plants) left out of its own camera background
    try:
        specs = specs_at_working_resolution(specs, train)  # the same anomalies at the run's working resolution
        planter = planting_pipeline(cfg)
        planted = cached_planted_clips(train, planter, specs, seed, show)
    except ValueError as exc:  # e.g. no object to cut a walker from, nowhere to enter: say so, keep the run
        note = f"val/ skipped: could not plant anomalies into the training clips of {dataset_name}: {exc}"
        log.warning(note)
        return InRunValidation(note=note)
    object_clips = [planted[specs[v % len(specs)].name][v] for v in range(len(train))]
    if pipe.cache_dir is not None:  # extract the planted clips in parallel first (no-op when cached)
        pipe.extract([c for clips in planted.values() for c in clips], "validation planted")

    def run_fold(v: int) -> list[tuple]:
        """Fold v: a pipeline whose scorer is fitted without training clip v, and per planted set (spec, clip,
        scores, its segmentation (its objects without pixel metrics) or None)."""
        fold = Pipeline(cfg)
        fold.set_camera_clips(train)
        fold.show_progress = False
        fold.fit_scorer([c for u, c in enumerate(train) if u != v])  # cached by config and clips
        out = []
        for spec in specs:
            clip = planted[spec.name][v]
            scores = fold.scores(clip)
            segmented = None
            if want_object and clip is object_clips[v]:
                # the whole segmentation (cached like the run's own) when its score maps feed the pixel metrics
                segmented = fold.segment_objects(clip, scores) if pixel is None else fold.segmentation(clip, scores)
            out.append((spec, clip, scores, segmented))
        return out

    frame_scores: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    gt_regions, detections = {}, {}
    pixel = PixelMetrics() if want_pixel else None
    min_area = float(cfg.metrics.get("gt_min_area", 20))
    with _quiet("tao_lab.pipeline"):
        workers = pipe.workers(len(train))
        if pipe.cache_dir is not None and workers > 1 and pipe.worker_kind() == "process":
            # the folds on forked workers first, into the stage cache (fits, scores, masks); the loop below reads
            # them back. The segmenter's network is readied here once, not once per worker.
            from tao_lab.clip_workers import run_jobs
            from tao_lab.pipeline import progress_bar

            def fill_cache(v: int) -> None:  # the fold's outputs stay in the cache: nothing crosses the pipe
                run_fold(v)

            pipe.segmenter.prepare()
            with progress_bar(f"validation folds ({workers} processes)", len(train), show) as bar:
                run_jobs(fill_cache, list(range(len(train))), workers, "process",
                         library_threads=cfg.get("worker_library_threads", 1), on_done=bar.update)
        for v in progress(range(len(train)), "validation folds", show):
            for spec, clip, scores, segmented in run_fold(v):
                frame_scores[spec.name].append(np.asarray(scores.frame_scores, np.float64))
                if segmented is None:
                    continue
                if pixel is None:
                    detections[clip.clip_id] = segmented
                else:
                    detections[clip.clip_id] = segmented.objects
                    add_planted_pixels(pixel, clip, segmented.score_maps, pixel_gt)
                gt_regions[clip.clip_id] = planted_box_table(clip, min_area)

    metrics: dict[str, float] = {}
    for spec in specs:
        labels = [c.labels for c in planted[spec.name]]
        metrics[f"val/frame_auc_{spec.name}"] = float(frame_metrics(frame_scores[spec.name], labels)["auc_micro"])
    metrics["val/frame_auc_mean"] = float(np.mean([metrics[f"val/frame_auc_{s.name}"] for s in specs]))
    if want_object:
        obj = rbdc_tbdc(gt_regions, detections, num_frames=sum(c.num_frames for c in object_clips),
                        group_ties=bool(cfg.metrics.get("group_ties", False)))
        metrics["val/object_rbdc"], metrics["val/object_tbdc"] = float(obj["rbdc"]), float(obj["tbdc"])
    if pixel is not None:
        px = pixel.compute(fpr_limit=float(cfg.metrics.get("fpr_limit", 0.3)))
        metrics.update({"val/pixel_ap": float(px["ap"]), "val/pixel_f1_max": float(px["f1_max"]),
                        "val/pixel_auroc": float(px["auroc"])})
    metrics["val/clips"] = float(len(train))
    seconds = time.perf_counter() - start
    metrics["time/validation_s"] = round(seconds, 3)
    what = "frame AUC per planted set" + (" + RBDC/TBDC on the planted objects" if want_object else "") + \
        (f" + pixel metrics on their {'pasted pixels' if pixel_gt == 'pasted' else 'outlines (convex hull)'}"
         if want_pixel else "")
    pace = ""
    if any(s.speed_unit == "normal" for s in specs):  # what one unit of the planted speeds is on this camera
        from tao_lab.validation.planted import normal_moving_speed

        unit = normal_moving_speed([planter.tracks(c) for c in train])
        pace = (f", speeds in multiples of the training tracks' normal pace ({unit:.2f} px/frame)" if unit else "")
    note = (f"val/: {what}, leave-one-clip-out on the {len(train)} training clips of {dataset_name} with "
            f"{len(specs)} planted sets{pace} (seed {seed}; test clips not read), {seconds:.1f} s")
    log.info(note)
    return InRunValidation(metrics, note)
