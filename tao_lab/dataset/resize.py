"""Working resolution: clips taller than ``working_height`` rows are processed shrunk to that height, clips shorter
than ``working_min_height`` enlarged to it.

Every pixel size of the weight-free default (the detector's blur, opening, dilation, smallest blob and piece, the
flow's cell, the speeds in px/frame its thresholds read) was chosen on 240-row Ped2 frames and 160-row synthetic ones.
On a camera with more pixels per person the same numbers fragment people and misread their motion (the cross-scene
validation's ``ped2_large`` scene: Ped2's training clips enlarged 1.6x), and every stage costs more; on a camera
with fewer (``ped2_small``, 0.6x) small people fall under them. A :class:`ResizedClip` is the clip seen at the
working resolution: frames area-averaged when shrunk (as a camera with fewer pixels), bilinear when enlarged;
ground-truth masks resampled the same way and thresholded at half a pixel, ground-truth boxes scaled. Everything
downstream, metrics included, is then in working-resolution pixels; the run says so in its log and metrics.json
(``working_resolution``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from tao_lab.types import Clip, ClipGT, Dataset, ObjectTable

log = logging.getLogger(__name__)


def working_bounds(cfg) -> tuple[Optional[int], Optional[int], Optional[float]]:
    """(working_height, working_min_height, working_object_height) of a run's config (None = no bound; the third:
    :mod:`tao_lab.dataset.object_scale`)."""
    return cfg.get("working_height"), cfg.get("working_min_height"), cfg.get("working_object_height")


def working_size(height: int, width: int, working_height: Optional[int],
                 min_height: Optional[int] = None) -> tuple[int, int]:
    """(height, width) a clip of ``height`` x ``width`` is processed at: ``working_height`` rows when taller than
    that, ``min_height`` rows when shorter than that, else unchanged (None = no bound); the width in proportion
    (rounded, at least 1)."""
    for name, value in (("working_height", working_height), ("working_min_height", min_height)):
        if value is not None and int(value) < 16:
            raise ValueError(f"{name} must be >= 16 rows (or null = the clips' own), got {value!r}")
    if working_height is not None and min_height is not None and int(min_height) > int(working_height):
        raise ValueError(f"working_min_height ({min_height}) must not exceed working_height ({working_height})")
    target = int(height)
    if working_height is not None and int(height) > int(working_height):
        target = int(working_height)
    elif min_height is not None and int(height) < int(min_height):
        target = int(min_height)
    if target == int(height):
        return int(height), int(width)
    return target, max(1, int(round(width * target / int(height))))


def resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` at ``height`` x ``width``: area-averaged when it shrinks (as a camera with fewer pixels integrates a
    larger patch), bilinear when it grows."""
    shrink = height * width <= image.shape[0] * image.shape[1]
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class ResizedClip(Clip):
    """``base`` at ``size`` = (height, width) (:func:`resample`: frames and ground-truth masks), ground-truth boxes
    scaled. Its source names the size (stage caches keep resolutions apart); its id stays unless ``clip_id`` is
    given."""

    def __init__(self, base: Clip, size: tuple[int, int], clip_id: Optional[str] = None):
        height, width = int(size[0]), int(size[1])
        if (height - base.height) * (width - base.width) < 0:
            raise ValueError(f"ResizedClip scales both sides alike: {base.height}x{base.width} -> {height}x{width}")
        gt = None
        if base.gt is not None:
            gt = ClipGT(frame_labels=base.gt.frame_labels,
                        mask=None if base.gt.mask is None else self._mask,
                        tracks=None if base.gt.tracks is None else self._scaled(base.gt.tracks, base, width, height))
        super().__init__(clip_id or base.clip_id, base.num_frames, height, width, base.fps, gt=gt,
                         source=f"{base.source}+resize:{width}x{height}")
        self.base = base
        if hasattr(base, "labels"):  # a planted clip's frame labels (the validation's) do not change with the size
            self.labels = base.labels

    @staticmethod
    def _scaled(tracks: ObjectTable, base: Clip, width: int, height: int) -> ObjectTable:
        factor = np.array([width / base.width, height / base.height] * 2, np.float32)
        return ObjectTable(tracks.frame, tracks.xyxy * factor, tracks.score, tracks.track_id, tracks.cls)

    def _mask(self, i: int) -> np.ndarray:
        """The base clip's mask of frame i, resampled: a pixel is anomalous when at least half of it was."""
        mask = np.asarray(self.base.gt.mask(i), bool)
        return resample(mask.astype(np.float32), self.height, self.width) >= 0.5

    def _read(self, i: int) -> np.ndarray:
        return resample(self.base.frame(i), self.height, self.width)

    def _sequential(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for frame in self.base.frames(start, stop):
            yield resample(frame, self.height, self.width)


def at_working_resolution(clips: Sequence[Clip], working_height: Optional[int],
                          min_height: Optional[int] = None) -> list[Clip]:
    """``clips`` with every clip taller than ``working_height`` or shorter than ``min_height`` rows replaced by its
    :class:`ResizedClip`."""
    out = []
    for clip in clips:
        size = working_size(clip.height, clip.width, working_height, min_height)
        out.append(clip if size == (clip.height, clip.width) else ResizedClip(clip, size))
    return out


def dataset_at_working_resolution(dataset: Dataset, working_height: Optional[int],
                                  min_height: Optional[int] = None) -> Dataset:
    """``dataset`` with its clips at the working resolution (the same object when no clip is resized); logs it."""
    train = at_working_resolution(dataset.train, working_height, min_height)
    test = at_working_resolution(dataset.test, working_height, min_height)
    resized = [c for c in (*train, *test) if isinstance(c, ResizedClip)]
    if not resized:
        return dataset
    first = resized[0]
    log.info("working_height=%s, working_min_height=%s: %d clip(s) processed resized (e.g. %s: %dx%d -> %dx%d); "
             "boxes, masks and pixel metrics are in working-resolution pixels", working_height, min_height,
             len(resized), first.clip_id, first.base.width, first.base.height, first.width, first.height)
    return dataclasses.replace(dataset, train=train, test=test)


def original_clip(clip: Clip) -> Clip:
    """The clip a (possibly twice: object scale, then a height bound) :class:`ResizedClip` was made from."""
    while isinstance(clip, ResizedClip):
        clip = clip.base
    return clip


def resize_factor(clip: Clip) -> float:
    """How many times taller ``clip`` is processed than its original (1.0 for a clip at its own size)."""
    return clip.height / original_clip(clip).height


def working_resolution_note(clips: Sequence[Clip]) -> Optional[str]:
    """"WxH from W0xH0" for the first resized clip among ``clips`` (None when none is resized): for metrics.json."""
    for clip in clips:
        if isinstance(clip, ResizedClip):
            base = original_clip(clip)
            return f"{clip.width}x{clip.height} from {base.width}x{base.height}"
    return None
