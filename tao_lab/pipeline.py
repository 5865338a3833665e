"""Stage orchestration: builds each stage from the config, runs it per clip and caches its output.

    frames -detect-> detections -track-> tracks -features-> features -score-> ObjectScores
           -threshold-> anomalous objects -prompt filter-> Prompts -segment-> Segmentation

Each stage's cache key covers its own config and the keys of everything upstream (see :mod:`tao_lab.cache`), so a
run that changes only the threshold re-uses detections, tracks, features and scores from an earlier run.
The threshold enters the downstream keys as its fitted value, so two threshold configs that fit the same tau
share prompts and masks too.
"""
from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tao_lab import frame_memo
from tao_lab.artifacts import remove_orphan_temps
from tao_lab.cache import StageCache, stable_hash
from tao_lab.config import to_plain
from tao_lab.distributed import is_rank_zero, planned_world_size, wait_for_files
from tao_lab.types import Clip, Dataset, ObjectScores, ObjectTable, Prompts, Segmentation
from tao_lab.user_errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("detect", "track", "features", "score", "prompts", "segment")

#: Bump a stage's number when its code starts giving other outputs for the same config and input: the number then
#: joins that stage's cache key (and so every key downstream). At 1 it adds nothing, so existing caches stay valid.
#: Scorers have their own ``cache_version`` class attribute (tao_lab.scorer.base.ObjectScorer).
CODE_VERSIONS = {"detect": 1, "track": 1, "features": 1, "prompts": 1, "segment": 1}

#: Trainer settings that change where and how a fit is reported, not what it learns (left out of the scorer key).
_TRAINER_KEYS_WITHOUT_EFFECT = frozenset({"default_root_dir", "enable_progress_bar", "enable_model_summary",
                                          "log_every_n_steps", "logger"})


class NoTrainingObjectsError(ValueError):
    """The clips the scorer would be fitted on hold no detected object, so there is nothing to fit it on.

    Callers that know where the clips came from (infer's fitting window, the online warm-up) re-raise it with the
    input's name and what to change."""


def _versioned(stage: str, spec: dict) -> dict:
    """``spec`` plus the stage's code version when it is not 1 (see CODE_VERSIONS)."""
    version = CODE_VERSIONS.get(stage, 1)
    return spec if version == 1 else {**spec, "code": version}


def instantiate(node: Any, **kwargs) -> Any:
    from hydra.utils import instantiate as hydra_instantiate

    return hydra_instantiate(node, **kwargs)


def progress(items: Iterable, desc: str, enabled: bool = True, total: Optional[int] = None):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


@contextmanager
def progress_bar(desc: str, total: int, enabled: bool = True) -> Iterator[Any]:
    """A progress bar to ``update()`` by hand (work finishing out of order, e.g. on workers); closed at the end."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, total=total, leave=False, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def worker_kind(cfg: DictConfig) -> str:
    """``process`` or ``thread``: config ``worker_kind`` where this platform can fork (tao_lab/clip_workers.py),
    threads when a stage is configured to run on a GPU (CUDA does not survive fork)."""
    from tao_lab.clip_workers import resolve_kind

    kind = resolve_kind(str(cfg.get("worker_kind", "process")))
    if kind == "process":
        cuda = sorted(d for d in _configured_devices(cfg) if d.startswith("cuda"))
        if cuda:
            log.info("worker_kind=process: a stage runs on %s, and CUDA does not survive fork: worker threads", cuda[0])
            return "thread"
    return kind


def fit_camera_statistics(cameras, stages: Iterable[Any], clips: list[Clip], workers: int, kind: str,
                          library_threads: Optional[int] = 1) -> None:
    """Fits, on the workers, the training clips' statistics that the camera backgrounds of ``clips`` need for
    ``stages`` (tao_lab.detector.camera), and keeps them in ``cameras``: forked workers would otherwise each fit every
    one of them again (a Ped2 training clip's takes about 0.13 s; threads share one set anyway). No-op for threads,
    or without camera backgrounds."""
    if cameras is None or kind != "process":
        return
    from tao_lab.clip_workers import run_jobs
    from tao_lab.detector.camera import camera_settings

    todo = cameras.missing_statistics([s for stage in stages for s in camera_settings(stage)], clips)
    if len(todo) < 2:  # nothing to split
        return
    stats = run_jobs(lambda job: cameras.clip_statistics(*job), todo, min(workers, len(todo)), kind,
                     library_threads=library_threads)
    for (clip, kwargs), fitted in zip(todo, stats):
        cameras.add_statistics(clip, kwargs, fitted)


def _configured_devices(cfg: DictConfig) -> set[str]:
    """Every ``device`` value set in the stage groups' configs (nested ones too)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "device" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for group in ("detector", "features", "scorer", "segmenter"):
        if cfg.get(group) is not None:
            walk(OmegaConf.to_container(cfg[group], resolve=False))
    return found


def _bookkeeping_since(before: dict, after: dict) -> dict:
    """The counters a job added (:meth:`Pipeline._bookkeeping` before and after it)."""
    return {part: {k: v - before[part].get(k, 0) for k, v in after[part].items() if v != before[part].get(k, 0)}
            for part in after}


SEGMENTER_CHECKPOINT = "segmenter.ckpt"  # train.py writes it next to scorer.ckpt (tao_lab.tasks.train)


def use_segmenter_beside_scorer(cfg: DictConfig) -> Optional[str]:
    """With ``ckpt_path`` (a trained scorer) and the learned segmenter without a ``checkpoint``, sets
    ``segmenter.checkpoint`` (in place) to the ``segmenter.ckpt`` that train.py wrote beside that scorer, when the file
    is there: the run then segments with the network trained with its scorer, where a video without training clips
    would otherwise fall back to the classical step. Returns the path it set, else None."""
    ckpt = cfg.get("ckpt_path")
    seg = cfg.get("segmenter")
    if not ckpt or seg is None or not str(seg.get("_target_", "")).endswith("LearnedSegmenter") \
            or seg.get("checkpoint") not in (None, ""):
        return None
    beside = Path(str(ckpt)).parent / SEGMENTER_CHECKPOINT
    if not beside.is_file():
        return None
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.segmenter.checkpoint = str(beside)
    log.info("segmenter.checkpoint: %s (written by train.py beside ckpt_path; set segmenter.checkpoint to choose "
             "another)", beside)
    return str(beside)


class Pipeline:
    """Runs the configured stages on clips with caching. Components are built on first use.

    cfg: the composed Hydra config (groups detector, tracker, features, scorer, threshold, prompt_filter,
    segmenter, metrics, paths).
    """

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.cache_dir = cfg.paths.get("cache_dir")
        self.show_progress = bool(cfg.get("progress", True))
        self.timings: dict[str, float] = defaultdict(float)
        self.frames_processed: dict[str, int] = defaultdict(int)
        self.scorer = None
        self.threshold = None
        self._scorer_key: Optional[str] = None
        # the fit clips' indices in the scorer's fit, by clip source: a clip the scorer was fitted on (unsupervised
        # mode) is scored with its own objects held out of the memory banks (ObjectScorer.score_clip's held_out)
        self._fit_clip_index: dict[str, int] = {}
        # camera backgrounds for the stages with background.scope=camera (tao_lab.detector.camera); None = no
        # training clips given (those stages then use per-clip backgrounds)
        self.camera_backgrounds = None
        use_segmenter_beside_scorer(cfg)
        frame_memo.configure(cfg)  # the process's memo bounds (frame_memo_mb, foreground_memo_mb)

    # ----- camera background ---------------------------------------------------------------------------------
    def set_camera_clips(self, clips: Iterable[Clip] = (), cameras: Optional[list[list[Clip]]] = None) -> None:
        """The training clips of the cameras the run's clips come from (same frame size = same camera; or
        ``cameras``: one list of clips per camera): the stages with ``background.scope: camera`` fit their camera
        backgrounds on them (tao_lab.detector.camera). Set it before processing clips: the detector and segmenter
        cache keys name these clips."""
        from tao_lab.detector.camera import CameraBackgrounds

        self._adopt_camera(CameraBackgrounds(list(clips), cameras))

    def _adopt_camera(self, backgrounds) -> None:
        self.camera_backgrounds = backgrounds
        for name in ("detector", "segmenter"):  # stages already built get it now, later ones when built
            stage = self.__dict__.get(name)
            if stage is not None and hasattr(stage, "use_camera"):
                stage.use_camera(backgrounds)
        self.__dict__.pop("caches", None)  # the keys are rebuilt with the camera clips

    def _with_camera(self, stage):
        """``stage`` after handing it the camera backgrounds, when it opts in (a ``use_camera`` method)."""
        if hasattr(stage, "use_camera"):
            from tao_lab.detector.camera import CameraBackgrounds

            stage.use_camera(self.camera_backgrounds if self.camera_backgrounds is not None else CameraBackgrounds())
        return stage

    # ----- components ---------------------------------------------------------------------------------------
    @cached_property
    def detector(self):
        detector = self._with_camera(instantiate(self.cfg.detector))
        if _uses_litert_features(self.cfg.features):
            # a LiteRT deep feature on the detector's own .tflite reads the maps of the detector's pass (in this
            # process) instead of running the network a second time
            from tao_lab.features.yolo_litert import share_detector_pass

            if share_detector_pass(detector, self.feature_set.extractors.values()):
                log.info("deep features (litert) share the detector's pass: one network run per frame")
        return detector

    @cached_property
    def tracker(self):
        return instantiate(self.cfg.tracker)

    @cached_property
    def feature_set(self):
        """A :class:`tao_lab.features.FeatureSet`: the extractors plus the shared optical-flow settings."""
        return instantiate(self.cfg.features)

    @property
    def extractors(self) -> dict:
        """{name: FeatureExtractor} of the feature set (for frame-by-frame use, e.g. the online pipeline)."""
        return self.feature_set.extractors

    @cached_property
    def prompt_filter(self):
        return instantiate(self.cfg.prompt_filter)

    @cached_property
    def segmenter(self):
        segmenter = self._with_camera(instantiate(self.cfg.segmenter))
        if hasattr(segmenter, "use_cache_dir"):  # segmenter=learned keeps its trained networks there
            segmenter.use_cache_dir(self.cache_dir)
        return segmenter

    # ----- cache specs --------------------------------------------------------------------------------------
    @cached_property
    def caches(self) -> dict[str, StageCache]:
        c = self.cfg
        detect = _versioned("detect", {"detector": self._stage_spec(c.detector)})
        track = _versioned("track", {"up": detect, "tracker": to_plain(c.tracker)})
        features = _versioned("features", {"up": track, "features": to_plain(c.features)})
        return {
            "detect": StageCache(self.cache_dir, "detect", detect),
            "track": StageCache(self.cache_dir, "track", track),
            "features": StageCache(self.cache_dir, "features", features),
        }

    def _stage_spec(self, node) -> dict:
        """A detector's or segmenter's config for its cache key: ``background.scope: clip`` leaves the key as it
        was before the option existed; ``scope: camera`` adds the camera clips (tao_lab.detector.camera.cache_spec)."""
        from tao_lab.detector.camera import cache_spec

        plain = to_plain(node)
        return cache_spec(plain, self.camera_backgrounds) if isinstance(plain, dict) else plain

    def _downstream_caches(self) -> None:
        if "score" in self.caches:
            return
        if self._scorer_key is None:
            raise RuntimeError("fit or load the scorer before scoring clips")
        score = {"up": self.caches["features"].spec, "scorer": self._scorer_key}
        if self._fit_clip_index:
            score["fit_clips_held_out"] = True  # scores of the fit clips differ from a plain score_clip's
        prompts = _versioned("prompts", {"up": score, "tau": float(self.threshold.tau),
                                         "prompt_filter": to_plain(self.cfg.prompt_filter),
                                         "gt_gating": bool(self.cfg.metrics.get("gt_gating", False))})
        segment = _versioned("segment", {"up": prompts, "segmenter": self._stage_spec(self.cfg.segmenter)})
        self.caches["score"] = StageCache(self.cache_dir, "score", score)
        self.caches["prompts"] = StageCache(self.cache_dir, "prompts", prompts)
        self.caches["segment"] = StageCache(self.cache_dir, "segment", segment)

    def _run(self, stage: str, clip: Clip, compute, *inputs) -> Any:
        """The stage's cached artifact for ``clip``, else ``compute(*upstream)``.

        ``inputs`` are callables returning the upstream artifacts; they run only on a cache miss, so a cached
        stage never loads (or recomputes) what lies above it, and the stage's time excludes its inputs' time.
        """
        def produce():
            upstream = [get() for get in inputs]
            start = time.perf_counter()
            out = compute(*upstream)
            self.timings[stage] += time.perf_counter() - start
            self.frames_processed[stage] += clip.num_frames
            return out

        return self.caches[stage].get_or_compute(clip.clip_id, self.source(stage, clip), produce)

    def source(self, stage: str, clip: Clip) -> str:
        """The per-clip part of a stage's cache key: the clip's frames, plus its frame labels for the stages the
        ``gt_gating`` oracle feeds them into (prompts, segment), so edited labels never give stale gated prompts."""
        if stage in ("prompts", "segment") and self.cfg.metrics.get("gt_gating", False):
            labels = None if clip.gt is None else clip.gt.frame_labels
            digest = "none" if labels is None else stable_hash(np.flatnonzero(np.asarray(labels, bool)).tolist())
            return f"{clip.source}|labels={digest}"
        return clip.source

    # ----- per-clip stages ----------------------------------------------------------------------------------
    def detections(self, clip: Clip) -> ObjectTable:
        parts = getattr(self.detector, "part_names", ())
        if parts and self.cache_dir is not None:
            # a detector made of detectors (detector=hybrid): each part is cached as a detector of its own, so a
            # hybrid run re-uses the detections of an earlier detector=yolo run with the same settings
            return self._run("detect", clip, lambda *tables: self.detector.merge(*tables),
                             *[lambda name=name: self._part_detections(name, clip) for name in parts])
        return self._run("detect", clip, lambda: self.detector.detect(clip))

    def _part_detections(self, name: str, clip: Clip) -> ObjectTable:
        cache = StageCache(self.cache_dir, "detect", {"detector": self._stage_spec(self.cfg.detector[name])})

        def compute():
            start = time.perf_counter()
            out = getattr(self.detector, name).detect(clip)
            self.timings["detect"] += time.perf_counter() - start
            return out

        return cache.get_or_compute(clip.clip_id, clip.source, compute)

    def tracks(self, clip: Clip) -> ObjectTable:
        return self._run("track", clip, lambda dets: self.tracker.track(dets, clip), lambda: self.detections(clip))

    def features(self, clip: Clip, leave_flows: bool = False) -> dict[str, np.ndarray]:
        """``leave_flows``: the clip's segmentation follows, so features computed here leave their optical flows
        to the segmenter (:meth:`FeatureSet.extract`; only when :func:`shares_flows` says the segmenter reads them)."""
        leave = leave_flows and self._shared_flow_signature is not None
        return self._run("features", clip,
                         lambda tracks: self.feature_set.extract(clip, tracks, progress=False, leave_flows=leave),
                         lambda: self.tracks(clip))

    def scores(self, clip: Clip, segment_next: bool = False) -> ObjectScores:
        """The clip's object and frame scores. ``segment_next``: the caller asks for the clip's segmentation right
        after, so features computed on the way hand their flows on to the segmenter (exact, just not computed
        twice: tao_lab.features.flow_memo)."""
        self._downstream_caches()
        held_out = self._fit_clip_index.get(clip.source)
        def score(tracks, feats):
            return self.scorer.score_clip(tracks, feats, clip.num_frames, held_out=held_out)

        return self._run("score", clip, score, lambda: self.tracks(clip),
                         lambda: self.features(clip, leave_flows=segment_next))

    def anomalous(self, clip: Clip, scores: ObjectScores) -> ObjectTable:
        """The objects whose anomaly score passes the threshold (optionally gated by GT frame labels)."""
        frame_labels = None
        if self.cfg.metrics.get("gt_gating", False):
            # ORACLE (TAO protocol reproduction only): keep boxes only on frames the GT calls anomalous.
            if clip.gt is None or clip.gt.frame_labels is None:
                raise ValueError(f"gt_gating needs frame labels, clip {clip.clip_id} has none")
            frame_labels = clip.gt.frame_labels
        return self.above_threshold(scores, frame_labels)

    def above_threshold(self, scores: ObjectScores, frame_labels: Optional[np.ndarray] = None) -> ObjectTable:
        """The scored objects above the object threshold (and on a frame ``frame_labels`` calls anomalous)."""
        if not len(scores.objects):
            return ObjectTable.empty()
        flagged = np.asarray(self.threshold(scores.objects.score), bool)
        if frame_labels is not None:
            flagged &= np.asarray(frame_labels, bool)[scores.objects.frame]
        return scores.objects.take(flagged)

    def select_prompts(self, anomalous: ObjectTable, num_frames: int) -> Prompts:
        """The segmenter prompts of a clip's (or, online, a window's) anomalous objects."""
        return self.prompt_filter(anomalous, num_frames) if len(anomalous) else Prompts.empty()

    def prompts(self, clip: Clip, scores: Optional[ObjectScores] = None) -> Prompts:
        """The clip's prompts; ``scores`` may be passed when the caller already holds them."""
        return self._run("prompts", clip,
                         lambda sc: self.prompt_filter(self.anomalous(clip, sc), clip.num_frames),
                         lambda: scores if scores is not None else self.scores(clip))

    def segmentation(self, clip: Clip, scores: Optional[ObjectScores] = None) -> Segmentation:
        """The clip's masks and pixel scores; ``scores`` may be passed when the caller already holds them."""
        self._downstream_caches()  # the segment cache's key needs the fitted scorer (a clear error when unfitted)
        held = [scores]

        def upstream_scores():  # loaded at most once, shared by the segmenter and the prompts
            if held[0] is None:
                held[0] = self.scores(clip)
            return held[0]

        try:
            return self._run("segment", clip, lambda sc, pr: self.segmenter.segment(clip, pr, sc),
                             upstream_scores, lambda: self.prompts(clip, upstream_scores()))
        finally:  # flows the features left for a segmentation read from the cache (the segmenter drops its own)
            if self._shared_flow_signature is not None:
                from tao_lab.features.flow_memo import SHARED_FLOWS, clip_key

                SHARED_FLOWS.drop(clip_key(clip, self._shared_flow_signature))

    @cached_property
    def _shared_flow_signature(self) -> Optional[tuple]:
        return shared_flow_signature(self.cfg)

    def segment_objects(self, clip: Clip, scores: Optional[ObjectScores] = None) -> ObjectTable:
        """The objects of the clip's segmentation (the RBDC/TBDC detections). A cached segmentation is read array
        by array, so its score maps are never decompressed (the validation's object figure needs only these)."""
        from dataclasses import fields

        self._downstream_caches()
        cache = self.caches["segment"]
        path = cache.path(clip.clip_id, clip.source)
        if path is not None and path.is_file():
            try:
                with np.load(path) as arrays:
                    table = ObjectTable(*(arrays[f"objects.{f.name}"] for f in fields(ObjectTable)))
                cache.hits += 1
                return table
            except Exception as exc:  # noqa: BLE001 - unreadable: the full path below recomputes it
                log.warning("cache file %s unreadable (%s); recomputing", path, exc)
        return self.segmentation(clip, scores).objects

    # ----- scorer and threshold -----------------------------------------------------------------------------
    def extract(self, clips: list[Clip], desc: str) -> None:
        """Runs detect -> track -> features on every clip (fills the cache).

        With ``workers`` > 1 (config key ``workers``; null = one per CPU core) and a cache directory, the clips are
        spread over that many worker processes (or threads: ``worker_kind``; tao_lab/clip_workers.py); results are
        identical to a sequential run.
        """
        if self.cache_dir is not None:  # clips whose features are cached already need nothing (not even a load)
            clips = [c for c in clips if not self.caches["features"].path(c.clip_id, c.source).is_file()]
        self._in_workers(clips, f"extract {desc}", lambda pipe, clip: pipe.features(clip), ("detector",))

    def _in_workers(self, clips: list[Clip], desc: str, job: Callable[["Pipeline", Clip], Any],
                    stages: tuple[str, ...]) -> None:
        """``job(pipeline, clip)`` for every clip, for its stage caches: on the configured workers when there are
        several and a cache to keep the results in, else one clip after the other here. Each worker has a pipeline
        of its own (a forked copy of this one, or a clone per thread); their timings, frame counts and cache counts
        are added to this pipeline's. ``stages``: the stages (attribute names) the job runs that may read camera
        backgrounds, whose training-clip statistics forked workers get fitted beforehand."""
        workers = self.workers(len(clips))
        if workers <= 1 or self.cache_dir is None:  # without a cache, parallel results would be thrown away
            for clip in progress(clips, desc, self.show_progress):
                job(self, clip)
            return
        import threading

        from tao_lab.clip_workers import run_jobs

        kind = self.worker_kind()
        # heavy imports (torch, ultralytics) here, before the workers: one thread importing torch while another runs
        # OpenCV has crashed the process with SIGFPE; and a forked worker would import them once per process
        self.detector.prepare()
        self.tracker.prepare()
        library_threads = self.cfg.get("worker_library_threads", 1)
        fit_camera_statistics(self.camera_backgrounds, [getattr(self, s) for s in stages], clips, workers, kind,
                              library_threads)
        local = threading.local()

        def run(clip: Clip) -> dict:
            pipe = self if kind == "process" else getattr(local, "pipe", None)  # a forked copy is the worker's own
            if pipe is None:
                pipe = local.pipe = Pipeline(self.cfg)
                pipe._adopt_state(self)
            before = pipe._bookkeeping()
            job(pipe, clip)
            return _bookkeeping_since(before, pipe._bookkeeping())

        with progress_bar(f"{desc} ({workers} {'processes' if kind == 'process' else 'threads'})", len(clips),
                          self.show_progress) as bar:
            done = run_jobs(run, clips, workers, kind, costs=[c.num_frames for c in clips],
                            library_threads=library_threads, on_done=bar.update)
        for counts in done:  # fold the workers' bookkeeping into this pipeline's
            self._add_bookkeeping(counts)

    def _bookkeeping(self) -> dict:
        """This pipeline's counters: seconds and frames per stage, cache hits and misses per stage."""
        return {"timings": dict(self.timings), "frames": dict(self.frames_processed),
                "hits": {k: c.hits for k, c in self.caches.items()},
                "misses": {k: c.misses for k, c in self.caches.items()}}

    def _add_bookkeeping(self, counts: dict) -> None:
        for stage, seconds in counts["timings"].items():
            self.timings[stage] += seconds
        for stage, frames in counts["frames"].items():
            self.frames_processed[stage] += frames
        for stage, n in counts["hits"].items():
            if stage in self.caches:  # (a stage a worker opened that this pipeline has not: nothing to count it in)
                self.caches[stage].hits += n
        for stage, n in counts["misses"].items():
            if stage in self.caches:
                self.caches[stage].misses += n

    def _adopt_state(self, other: "Pipeline") -> None:
        """A worker thread's clone takes what ``other`` fitted for the per-clip stages: its camera statistics (one
        shared, thread-safe set)."""
        if other.camera_backgrounds is not None:
            self._adopt_camera(other.camera_backgrounds)

    def prefetch(self, clips: list[Clip], desc: str) -> None:
        """Fills, in parallel, the stage caches that the per-clip loop after it reads (no-op with one worker or
        without a cache). On worker processes, each clip's whole chain: features -> scores -> prompts -> segmentation
        (its features hand their optical flows to its segmenter, as in the loop); on threads, the features only (the
        scorer and the segmenter are not shared between threads)."""
        if self.cache_dir is None or self.workers(len(clips)) <= 1:
            return
        self._downstream_caches()
        if self.worker_kind() == "process":
            todo = [c for c in clips if not self.caches["segment"].path(c.clip_id, self.source("segment", c)).is_file()]
            if todo:
                self.segmenter.prepare()  # a network is loaded or trained once, here, not once per worker
            self._in_workers(todo, f"{desc}: frames -> masks",
                             lambda pipe, clip: pipe.segmentation(clip, pipe.scores(clip, segment_next=True)),
                             ("detector", "segmenter"))
            return
        self.extract([c for c in clips if not self.caches["score"].path(c.clip_id, c.source).is_file()], desc)

    def worker_kind(self) -> str:
        """``process`` or ``thread``: :func:`worker_kind` of the config."""
        return worker_kind(self.cfg)

    def workers(self, num_clips: int) -> int:
        """Workers of the parallel passes (:meth:`extract`, :meth:`prefetch`): config ``workers`` (null = CPU
        cores), at most one per clip."""
        wanted = self.cfg.get("workers")
        wanted = (os.cpu_count() or 1) if wanted is None else int(wanted)
        if wanted < 1:
            raise ConfigError(f"workers must be >= 1 (or null = one per CPU core), got {wanted}")
        return max(1, min(wanted, num_clips))

    def fit_scorer(self, train_clips: list[Clip], ckpt_path: Optional[str] = None) -> Path | None:
        """Loads the scorer from ``ckpt_path`` or fits it on the training clips (cached by config and clips).

        Returns the checkpoint path used. Then fits the threshold on the scorer's training object scores.
        """
        from tao_lab.dataset.object_scale import fit_resolution
        from tao_lab.scorer.base import scorer_class
        from tao_lab.scorer.class_rarity import check_detector_has_classes

        check_detector_has_classes(self.cfg.scorer, self.cfg.detector)  # a class attribute needs classes
        scorer_cls = scorer_class(self.cfg.scorer._target_)
        if ckpt_path:
            path = Path(ckpt_path)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint not found: {path}; train one with `python train.py` "
                                        f"(its run dir holds scorer.ckpt) or drop ckpt_path to fit here")
            self.scorer = scorer_cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
            self._scorer_key = "ckpt:" + stable_hash([str(path.resolve()), path.stat().st_mtime, path.stat().st_size])
            self._fit_clip_index = {}
        else:
            spec = self.scorer_spec(train_clips)
            processes = self._data_parallel_processes(scorer_cls)
            if processes > 1:  # a DDP fit is not the single-process fit: never take one for the other
                spec["trainer_processes"] = processes
            self._scorer_key = stable_hash(spec)
            self._fit_clip_index = {}
            if training_mode(self.cfg) == "unsupervised":  # the clips it scores are the clips it is fitted on
                self._fit_clip_index = {c.source: i for i, c in enumerate(train_clips)}  # the fit items' order
                log.info("training.mode=unsupervised: each clip is scored with its own objects held out of the "
                         "scorer's k-NN memory banks (it was fitted on the clips it scores)")
            path = Path(self.cache_dir) / "scorer" / self._scorer_key / "scorer.ckpt" if self.cache_dir else None
            cached = None
            if path is not None:
                remove_orphan_temps(path.parent)  # temporary files of checkpoint writes that were killed
            if path is not None and path.is_file():
                log.info("scorer: loading cached fit %s", path)
                try:
                    cached = scorer_cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
                except Exception as exc:  # noqa: BLE001 - a cache entry is never trusted over a refit
                    log.warning("cached scorer %s unreadable (%s); refitting", path, exc)
            # how the fit clips were processed, kept in the checkpoint: a run from it processes the camera alike
            resolution = fit_resolution(train_clips)
            if cached is not None:
                self.scorer = cached
                if cached.fit_resolution != resolution and is_rank_zero():  # a fit cached before the record
                    cached.fit_resolution = resolution
                    cached.save_checkpoint(str(path))
            else:
                if processes > 1 and not is_rank_zero():
                    # rank 0 extracted these before the processes started (or is extracting them now, when a
                    # cluster starts every rank at once): read its cache, compute nothing
                    wait_for_files([self.caches["features"].path(c.clip_id, c.source) for c in train_clips],
                                   f"training features into {self.cache_dir}")
                elif self.workers(len(train_clips)) > 1 or processes > 1:
                    self.extract(train_clips, "train")  # in parallel, into the cache; read back below
                items = [(self.tracks(c), self.features(c), c.num_frames)
                         for c in progress(train_clips, "train features", self.show_progress)]
                if sum(len(it[0]) for it in items) == 0:
                    names = ", ".join(c.clip_id for c in train_clips[:5]) + (", ..." if len(train_clips) > 5 else "")
                    raise NoTrainingObjectsError(
                        f"the {len(train_clips)} clip(s) the scorer is fitted on ({names}) hold no detected object: "
                        f"nothing to fit it on. Fit on clips where people or vehicles move normally (check the "
                        f"detector settings), or load a fitted scorer with ckpt_path=<train run dir>/scorer.ckpt")
                self.scorer = self.new_fitted_scorer(items)
                self.scorer.fit_resolution = resolution
                if path is not None and is_rank_zero():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.scorer.save_checkpoint(str(path))
        self.scorer.eval()
        self.fit_threshold()
        return path

    def scorer_spec(self, train_clips: list[Clip]) -> dict:
        """What a fitted scorer is made from (its cache key): the features' spec, the scorer config, the training
        clips, the seed; in unsupervised mode the training settings, and for scorers trained by a Lightning Trainer
        the Trainer settings that change the fit (epochs, precision, devices, ...). Parts that are absent keep the
        keys of earlier fits."""
        from tao_lab.scorer.base import scorer_class

        scorer_cls = scorer_class(self.cfg.scorer._target_)
        spec = {"up": self.caches["features"].spec, "scorer": to_plain(self.cfg.scorer),
                "train_clips": sorted(c.source for c in train_clips), "seed": self.cfg.get("seed")}
        if training_mode(self.cfg) == "unsupervised":
            spec["training"] = to_plain(self.cfg.training)
        if scorer_cls.cache_version != 1:
            spec["code"] = int(scorer_cls.cache_version)
        if scorer_cls.needs_trainer and self.cfg.get("trainer"):
            trainer = self.cfg.trainer  # key by key: the left-out ones (e.g. the run dir) are never resolved
            spec["trainer"] = {str(k): to_plain(trainer[k]) for k in trainer if k not in _TRAINER_KEYS_WITHOUT_EFFECT}
        return spec

    def _data_parallel_processes(self, scorer_cls) -> int:
        """Processes the scorer's fit runs in under ``cfg.trainer`` (1 unless a DDP-like strategy on > 1 device).

        A scorer fitted in closed form has no gradient steps to share out: it is fitted here, in one process, and
        says so. A trained scorer under DDP needs the stage cache: rank 0 fills it, the other ranks read it.
        """
        processes = planned_world_size(self.cfg.get("trainer"))
        if processes <= 1:
            return 1
        if not scorer_cls.needs_trainer:
            log.warning("trainer: DDP does not apply to %s (fitted in closed form, no gradient steps to split over "
                        "%d processes): fitting it in this single process", scorer_cls.__name__, processes)
            return 1
        if self.cache_dir is None:
            raise ConfigError(f"trainer strategy {self.cfg.trainer.get('strategy')!r} runs {processes} processes, "
                              f"which share the stage outputs through the stage cache (rank 0 computes, the others "
                              f"read), but paths.cache_dir is null: set paths.cache_dir (on a cluster, a folder on a "
                              f"filesystem every node sees)")
        return processes

    def set_scorer(self, scorer, key: str) -> None:
        """Uses an already fitted ``scorer`` (``key``: its identity for the downstream cache keys) and fits the
        object threshold on its training scores."""
        self.scorer, self._scorer_key = scorer, key
        self._fit_clip_index = {}
        self.caches.pop("score", None)  # downstream keys are rebuilt with the new scorer
        self.caches.pop("prompts", None)
        self.caches.pop("segment", None)
        self.scorer.eval()
        self.fit_threshold()

    def new_fitted_scorer(self, items: list, single_process: bool = False) -> Any:
        """A fresh scorer of the configured kind fitted on ``items`` [(tracks, features, num_frames)] (also used
        by :mod:`tao_lab.alarm` to fit the cross-fitting scorers, which must not see the frames they score).

        ``single_process``: a trained scorer gets ``cfg.trainer`` on one device, without its multi-process strategy.
        The alarm's fold fits run in rank 0 alone, after the other DDP ranks have finished their share of the main
        fit and left: a DDP Trainer there would wait for (or broadcast to) processes that are gone."""
        if sum(len(it[0]) for it in items) == 0:
            raise NoTrainingObjectsError("the clips the scorer is fitted on hold no detected object: nothing to fit "
                                         "it on; fit on a stretch with normal activity or give ckpt_path")
        scorer = instantiate(self.cfg.scorer)
        start = time.perf_counter()
        kwargs = {}
        if scorer.needs_trainer:
            # a factory for scorers that fit more than once (self-paced rounds), else one Trainer
            alone = {"strategy": "auto", "devices": 1, "num_nodes": 1} if single_process else {}
            kwargs["trainer"] = instantiate(self.cfg.trainer, _partial_=bool(scorer.trainer_factory), **alone)
        if training_mode(self.cfg) == "unsupervised":
            if scorer.supports_unlabeled:
                kwargs["unlabeled"] = True
            else:
                log.warning("training.mode=unsupervised: %s has no self-paced refinement; it is fitted on "
                            "the unlabeled clips as if they were normal", type(scorer).__name__)
        scorer.fit_clips(items, **kwargs)
        self.timings["fit_scorer"] += time.perf_counter() - start
        scorer.eval()
        return scorer

    def fit_threshold(self) -> None:
        """Fits the threshold on the scorer's training (normal) object scores, never on test scores."""
        train_scores = np.asarray(self.scorer.train_object_scores(), dtype=np.float64)
        self.threshold = instantiate(self.cfg.threshold).fit(train_scores)
        log.info("threshold %s: tau = %.4f (fitted on %d training object scores)",
                 type(self.threshold).__name__, self.threshold.tau, len(train_scores))

    def cache_summary(self) -> list[str]:
        return [c.summary() for c in self.caches.values()]


def shared_flow_signature(cfg: DictConfig) -> Optional[tuple]:
    """The features' flow settings (:attr:`FlowEstimator.signature`, the memo's key) when features computed right
    before a clip's segmentation leave their optical flows to the segmenter (tao_lab.features.flow_memo), else None:
    ``share_flows`` is on and the segmenter weighs its masks by a flow of the same settings (``coherence`` on).
    Exact either way: a flow is taken only if computed from the same two frames, and flows nobody reads are never
    held."""
    seg = cfg.get("segmenter")
    if not cfg.get("share_flows", True) or seg is None or seg.get("coherence", "none") == "none":
        return None
    from tao_lab.features.base import FlowEstimator

    features = FlowEstimator(**to_plain(cfg.get("features", {}).get("flow") or {})).signature
    return features if FlowEstimator(**to_plain(seg.get("flow") or {})).signature == features else None


def shares_flows(cfg: DictConfig) -> bool:
    """Whether the features hand their flows to the segmenter (:func:`shared_flow_signature`)."""
    return shared_flow_signature(cfg) is not None


def training_mode(cfg: DictConfig) -> str:
    """``cfg.training.mode``: "supervised" (default: fit on the normal training split) or "unsupervised"."""
    mode = str(OmegaConf.select(cfg, "training.mode", default="supervised"))
    if mode not in ("supervised", "unsupervised"):
        from tao_lab.user_errors import ConfigError

        raise ConfigError(f"training.mode must be 'supervised' or 'unsupervised', got {mode!r}")
    return mode


def training_clips(cfg: DictConfig, dataset: Dataset) -> list[Clip]:
    """The clips the scorer is fitted on: the training split, or in ``training.mode=unsupervised`` unlabeled video:
    the test clips (``training.unsupervised_source=test``) or train + test (``merged``). Labels are never read."""
    if training_mode(cfg) == "supervised":
        return list(dataset.train)
    source = str(OmegaConf.select(cfg, "training.unsupervised_source", default="test"))
    if source == "test":
        return list(dataset.test)
    if source == "merged":
        return list(dataset.train) + list(dataset.test)
    from tao_lab.user_errors import ConfigError

    raise ConfigError(f"training.unsupervised_source must be 'test' or 'merged', got {source!r}")


def uses_camera_background(cfg: DictConfig) -> bool:
    """Whether the detector or the segmenter config sets ``background.scope: camera`` (at any depth)."""
    from tao_lab.detector.camera import uses_camera

    return any(uses_camera(to_plain(cfg.get(group))) for group in ("detector", "segmenter"))


def dataset_pipeline(cfg: DictConfig, dataset: Dataset) -> Pipeline:
    """A :class:`Pipeline` for ``dataset`` built as the entry points build it: its camera-background stages know the
    dataset's training clips (:func:`camera_clips`). ``Pipeline(cfg)`` alone knows no camera and its detector and
    segmenter fall back to per-clip backgrounds whatever ``background.scope`` says: a benchmark or a look that reads
    a dataset builds its pipeline here, so it measures the configured default."""
    pipe = Pipeline(cfg)
    pipe.set_camera_clips(camera_clips(cfg, dataset))
    return pipe


def camera_clips(cfg: DictConfig, dataset: Dataset) -> list[Clip]:
    """The clips the camera backgrounds are fitted on (``background.scope: camera``): the training split in
    supervised mode; none in ``training.mode=unsupervised`` (its clips are unlabeled and may hold the anomalies a
    camera background would have to show), where the stages fall back to per-clip backgrounds. A run that did not
    read the training split (an evaluation from ``ckpt_path``) reads it now when some stage needs it; a copy without
    training videos (e.g. ../shared/datasets/avenue_partial) then uses per-clip backgrounds."""
    if not uses_camera_background(cfg):
        return []
    if training_mode(cfg) != "supervised":
        log.info("background.scope=camera with training.mode=unsupervised: no normal training clips to fit a camera "
                 "background on; per-clip backgrounds are used")
        return []
    clips = training_split(cfg, dataset)
    if not clips:
        log.info("background.scope=camera: no training clips to fit a camera background on; per-clip backgrounds "
                 "are used")
    return clips


def training_split(cfg: DictConfig, dataset: Dataset) -> list[Clip]:
    """The dataset's training clips, read now when the run did not read that split (an evaluation from
    ``ckpt_path`` reads only the test split, but its camera background and frame alarm are fitted on the training
    clips); [] when the copy has none (e.g. ../shared/datasets/avenue_partial; logged)."""
    if dataset.train:
        return list(dataset.train)
    from tao_lab.dataset.errors import DataError
    from tao_lab.user_errors import unwrap

    try:
        return list(load_dataset(cfg, splits=["train"]).train)
    except Exception as err:  # noqa: BLE001 - only a missing split is expected, the rest is raised again
        cause = unwrap(err)  # Hydra wraps the reader's error while building the dataset
        if not isinstance(cause, (DataError, FileNotFoundError)):
            raise
        log.info("%s: no training clips (%s)", dataset.name, str(cause).splitlines()[0])
        return []


def splits_needed(cfg: DictConfig, evaluate: bool = True) -> tuple[str, ...]:
    """The dataset splits a run reads: 'test' when it evaluates, plus what fitting the scorer needs (nothing when
    an evaluation loads ``ckpt_path``; the training split in supervised mode; see :func:`training_clips`)."""
    need = {"test"} if evaluate else set()
    if not (evaluate and cfg.get("ckpt_path")):
        if training_mode(cfg) == "supervised":
            need.add("train")
        else:
            source = str(OmegaConf.select(cfg, "training.unsupervised_source", default="test"))
            if source not in ("test", "merged"):
                from tao_lab.user_errors import ConfigError

                raise ConfigError(f"training.unsupervised_source must be 'test' or 'merged', got {source!r}")
            need.update(("train", "test") if source == "merged" else ("test",))
    return tuple(s for s in ("train", "test") if s in need)


def load_dataset(cfg: DictConfig, splits: Optional[Iterable[str]] = None) -> Dataset:
    """Builds ``cfg.dataset``, its clips at the working resolution (``cfg.working_object_height``: enlarged when the
    camera's objects are small, :mod:`tao_lab.dataset.object_scale`; then ``working_height``, ``working_min_height``:
    :mod:`tao_lab.dataset.resize`). ``splits``: read only these (for readers with a ``splits`` argument), so a copy
    without training videos (e.g. ../shared/datasets/avenue_partial) serves an unsupervised or checkpoint run; an
    explicit ``dataset.splits`` in the config wins."""
    kwargs = {}
    if splits is not None and "splits" not in cfg.dataset and _accepts(cfg.dataset.get("_target_"), "splits"):
        kwargs["splits"] = list(splits)
    dataset = instantiate(cfg.dataset, **kwargs)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset config built a {type(dataset).__name__}, expected tao_lab.types.Dataset")
    from tao_lab.dataset.object_scale import dataset_at_object_scale
    from tao_lab.dataset.resize import dataset_at_working_resolution

    dataset = dataset_at_object_scale(dataset, cfg)
    return dataset_at_working_resolution(dataset, cfg.get("working_height"), cfg.get("working_min_height"))


def _uses_litert_features(features_cfg) -> bool:
    """Whether some extractor of the features config is a LiteRT deep feature (decided on the config: the feature
    set is built early only then)."""
    extractors = features_cfg.get("extractors") or {}
    return any(hasattr(e, "get") and e.get("backend") == "litert" for e in extractors.values())


def _accepts(target: Optional[str], arg: str) -> bool:
    """True when the callable named by a Hydra ``_target_`` has a parameter ``arg``."""
    if not target:
        return False
    import inspect

    from hydra.utils import get_method

    try:
        return arg in inspect.signature(get_method(target)).parameters
    except (ValueError, TypeError, ImportError):
        return False
