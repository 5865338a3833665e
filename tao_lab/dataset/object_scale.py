"""Working resolution chosen by the camera's objects: a camera whose people are small is processed enlarged.

Why not by frame height (``working_min_height``): a 160-row frame can show 31-px walkers (the main job's synthetic
camera, where enlarging lost: docs/DETECTOR_ROUNDS.md, "Working resolution and the resized scenes") or 12-21-px
walkers (UCSD Ped1's 158-row frames; the cross-scene validation's ``ped2_small``, where enlarging gained). The
detector's pixel sizes (blur, opening, smallest blob, flow cell) and the px/frame thresholds downstream were chosen on
cameras whose objects are 39-40 px tall by the measure below (Ped2, the synthetic scenes), so what matters is the
size of the camera's objects, not of its frames.

``working_object_height: T`` (configs/pipeline.yaml): the camera's object height ``h`` is measured label-free on its
training clips (the test clips when it has none): the weight-free background-subtraction detector (the run's, or the
configured one when the run detects with YOLO: :func:`measuring_detector`), each clip's own background, no splits, on
:data:`FRAMES_PER_CLIP` frames spread over each of at most :data:`MAX_CLIPS` clips; ``h`` is the box-area-weighted
median of the blobs' heights (half of the blobs' box area is in blobs shorter than ``h``). Why weighted: on real
colour video people fall apart into many small pieces (leaves, shadows, limbs), which a plain median counts as
often as whole people. On the 640x360 Avenue copy (label-free) the plain median blob is 27 px tall, the weighted one
112 px; on Ped2's training clips 31 and 39, on the main job's 31 and 40, on ped2_small 19 and 24 (session 36 notes,
look_dist.py). When ``T / h`` is at least
:data:`MIN_FACTOR`, every clip of the camera is processed enlarged by ``T / h`` (:class:`ResizedClip`); otherwise at
its own size (a few percent buys nothing and costs a resampling of every frame). Cameras with larger objects are left
as they are: shrinking to a frame height lost on ``ped2_large`` (round 1). ASSUMPTION: one camera per dataset (a
dataset mixing cameras, e.g. ShanghaiTech, gets one factor, measured over all its clips).

A run from a scorer checkpoint (``ckpt_path``) does not measure: the checkpoint records the camera size and factor
its training clips were processed at (:func:`fit_resolution`), and a camera of that size is processed at that factor
(:func:`checkpoint_object_scale`). Measured again, an evaluation that reads only the test split would measure the
test clips, whose anomalies (bikes, carts) are larger (Ped2: 45 px on the training clips, 55 on the test clips), and
could process them at another scale than the scorer and the camera background were fitted at.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tao_lab.dataset.resize import ResizedClip
from tao_lab.types import Clip, Dataset

log = logging.getLogger(__name__)

#: Enlarge only when the camera's objects are at least this much smaller than the target.
MIN_FACTOR = 1.15
#: The measurement's sample: frames per clip (spread evenly) and clips (spread evenly over the camera's).
FRAMES_PER_CLIP = 40
MAX_CLIPS = 8
#: Fewer blobs than this over the sample: no measurement, no resizing (logged).
MIN_BLOBS = 30
# the detector class the object height is defined on (measuring_detector)
_BACKGROUND_DETECTOR = "tao_lab.detector.BackgroundSubtractionDetector"


class _SampledClip(Clip):
    """Frames ``indices`` of ``parent``, re-indexed from 0: a short clip the detector fits its background on."""

    memoize_frames = False  # the parent's frames are memoized

    def __init__(self, parent: Clip, indices: np.ndarray):
        self.parent, self.indices = parent, [int(i) for i in indices]
        super().__init__(f"{parent.clip_id}@sample", len(self.indices), parent.height, parent.width, parent.fps,
                         source=f"{parent.source}+sample:{len(self.indices)}")

    def _read(self, i: int) -> np.ndarray:
        return self.parent.frame(self.indices[i])


def measuring_detector(detector_cfg) -> object:
    """The weight-free background-subtraction detector the object height is defined on: the run's when it is one
    (with its settings), the hybrid detector's background part, else configs/detector/background.yaml (a YOLO run
    measures as a weight-free one would, so one target means one thing); each clip's own background and no splits,
    as the planted validation cuts walkers (:func:`tao_lab.validation.protocol.planting_pipeline`)."""
    from hydra.utils import instantiate

    from tao_lab.config import CONFIG_DIR
    from tao_lab.detector.camera import scoped_backgrounds

    plain = OmegaConf.to_container(detector_cfg, resolve=True) if isinstance(detector_cfg, DictConfig) \
        else dict(detector_cfg)
    if plain.get("_target_") != _BACKGROUND_DETECTOR:
        part = plain.get("background")
        if isinstance(part, dict) and part.get("_target_") == _BACKGROUND_DETECTOR:
            plain = part
        else:
            plain = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "detector" / "background.yaml"), resolve=True)
    for owner in scoped_backgrounds(plain):
        owner["background"]["scope"] = "clip"
    for key in ("split_motion", "split_rows_valley"):
        if key in plain:
            plain[key] = 0.0
    return instantiate(OmegaConf.create(plain))


def object_height(clips: Sequence[Clip], detector_cfg, frames_per_clip: int = FRAMES_PER_CLIP,
                  max_clips: int = MAX_CLIPS) -> Optional[float]:
    """The camera's object height (px): the box-area-weighted median height of the detector's blobs on a sample of
    ``clips`` (:func:`area_weighted_median`, see the module docstring); None when the sample shows fewer than
    :data:`MIN_BLOBS` blobs."""
    clips = list(clips)
    if not clips:
        return None
    picks = np.unique(np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int))
    detector = measuring_detector(detector_cfg)
    heights, areas = [], []
    for k in picks:
        clip = clips[int(k)]
        n = min(int(frames_per_clip), clip.num_frames)
        if n < 2:
            continue
        sample = _SampledClip(clip, np.unique(np.linspace(0, clip.num_frames - 1, n).round().astype(int)))
        table = detector.detect(sample)
        heights.append(table.xyxy[:, 3] - table.xyxy[:, 1])
        areas.append(heights[-1] * (table.xyxy[:, 2] - table.xyxy[:, 0]))
    if sum(len(h) for h in heights) < MIN_BLOBS:
        return None
    return area_weighted_median(np.concatenate(heights), np.concatenate(areas))


def area_weighted_median(heights: np.ndarray, areas: np.ndarray) -> float:
    """The smallest height at which the blobs this tall or shorter hold at least half of the total ``areas``."""
    heights, areas = np.asarray(heights, np.float64), np.asarray(areas, np.float64)
    order = np.argsort(heights, kind="stable")
    cumulative = np.cumsum(areas[order])
    return float(heights[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def object_scale(height: Optional[float], target: Optional[float]) -> float:
    """The enlargement factor for a camera whose objects are ``height`` px tall (:func:`object_height`):
    ``target / height`` when that is at least :data:`MIN_FACTOR`, else 1 (also when either is None)."""
    if target is None or height is None or not np.isfinite(height) or height <= 0:
        return 1.0
    if float(target) <= 0:
        raise ValueError(f"working_object_height must be > 0 px (or null = off), got {target!r}")
    factor = float(target) / float(height)
    return factor if factor >= MIN_FACTOR else 1.0


def scaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(height, width) of a ``height`` x ``width`` frame enlarged by ``factor`` (offline clips and online frames)."""
    return int(round(height * factor)), int(round(width * factor))


def scaled_clips(clips: Sequence[Clip], factor: float) -> list[Clip]:
    """``clips`` enlarged by ``factor`` (the same clips when it is 1); each enlarged clip knows its factor
    (:func:`applied_object_scale`)."""
    if factor == 1.0:
        return list(clips)
    out = []
    for c in clips:
        resized = ResizedClip(c, scaled_size(c.height, c.width, factor))
        resized.object_scale = float(factor)
        out.append(resized)
    return out


def applied_object_scale(clip: Clip) -> float:
    """The object-scale factor ``clip`` is processed at (:func:`scaled_clips`; 1.0 when it was not enlarged)."""
    while clip is not None:
        if getattr(clip, "object_scale", None) is not None:
            return float(clip.object_scale)
        clip = getattr(clip, "base", None)
    return 1.0


def fit_resolution(clips: Sequence[Clip]) -> Optional[dict]:
    """What a scorer fitted on ``clips`` records in its checkpoint: {"camera_size": [h, w] of the camera's own
    frames, "object_scale": the factor they were processed at}; None without clips."""
    from tao_lab.dataset.resize import original_clip

    if not clips:
        return None
    camera = original_clip(clips[0])
    return {"camera_size": [int(camera.height), int(camera.width)], "object_scale": applied_object_scale(clips[0])}


def checkpoint_object_scale(clips: Sequence[Clip], cfg: DictConfig, name: str = "camera") -> Optional[float]:
    """The factor recorded by the scorer checkpoint ``cfg.ckpt_path`` (:func:`fit_resolution`) for the camera of
    ``clips`` (at their own size), or None when it does not decide: no checkpoint, one that records nothing (written
    before the record existed) or a camera of another size (the object scale is then measured as without a
    checkpoint; logged). With ``working_object_height`` null the clips stay at their own size (a warning when the
    checkpoint was fitted enlarged)."""
    from tao_lab.scorer.base import checkpoint_fit_resolution

    path = cfg.get("ckpt_path")
    if not path or not clips:
        return None
    try:
        record = checkpoint_fit_resolution(path)
    except (OSError, ValueError) as err:  # the pipeline refuses an unreadable checkpoint itself, naming it
        log.debug("object scale: checkpoint %s not read (%s)", path, err)
        return None
    if record is None:
        log.info("object scale: the checkpoint %s does not record the scale its training clips were processed at "
                 "(written before that record existed); %s is measured", path, name)
        return None
    factor = float(record["object_scale"])
    if cfg.get("working_object_height") is None:
        if factor != 1.0:
            log.warning("working_object_height=null: %s is processed at its own size, but the checkpoint's scorer was "
                        "fitted on clips enlarged %.2fx: its speeds and sizes in pixels will not match", name, factor)
        return 1.0
    size = [int(clips[0].height), int(clips[0].width)]
    if size != record["camera_size"]:
        log.warning("object scale: the checkpoint's training camera was %dx%d, %s is %dx%d; its object scale is "
                    "measured here", record["camera_size"][1], record["camera_size"][0], name, size[1], size[0])
        return None
    log.info("object scale: %s is processed %s, as the checkpoint's training clips (%s)", name,
             "at its own size" if factor == 1.0 else f"enlarged {factor:.2f}x", path)
    return factor


def camera_object_scale(clips: Sequence[Clip], cfg: DictConfig, name: str = "camera",
                        measured: Optional[dict] = None) -> float:
    """The factor ``cfg.working_object_height`` asks for the camera of ``clips`` (1.0 when it is null); logs the
    measurement and the decision. ``measured``: heights already measured, by (``name``, detector config), read and
    filled here (variants that differ only in the target measure a camera once)."""
    target = cfg.get("working_object_height")
    if target is None:
        return 1.0
    key = (name, repr(OmegaConf.to_container(cfg.detector, resolve=True)))
    if measured is not None and key in measured:
        height = measured[key]
    else:
        height = object_height(clips, cfg.detector)
        if measured is not None:
            measured[key] = height
    factor = object_scale(height, target)
    if height is None:
        log.warning("working_object_height=%s: %s shows fewer than %d blobs in its sample; processed at its own size",
                    target, name, MIN_BLOBS)
    elif factor == 1.0:
        log.info("working_object_height=%s: %s's objects are %.1f px tall; processed at its own size", target,
                 name, height)
    else:
        log.info("working_object_height=%s: %s's objects are %.1f px tall; processed enlarged %.2fx", target,
                 name, height, factor)
    return factor


def dataset_at_object_scale(dataset: Dataset, cfg: DictConfig) -> Dataset:
    """``dataset`` with every clip enlarged by the factor recorded by the run's scorer checkpoint
    (:func:`checkpoint_object_scale`), else measured on its training clips (its test clips when it has none); the
    same object when nothing is resized."""
    clips = dataset.train or dataset.test
    factor = checkpoint_object_scale(clips, cfg, dataset.name)
    if factor is None:
        factor = camera_object_scale(clips, cfg, dataset.name)
    if factor == 1.0:
        return dataset
    return dataclasses.replace(dataset, train=scaled_clips(dataset.train, factor),
                               test=scaled_clips(dataset.test, factor))
