"""The segmenter interface, the builder that turns per-object masks into a ``Segmentation``, and masks_to_boxes.

Interface (docs/CONTRACTS.md): ``Segmenter.segment(clip, prompts: Prompts, scores: ObjectScores) -> Segmentation``.

What every segmenter here returns (the ``Segmentation`` record, tao_lab.types):
- ``instance_maps`` (T, H, W) int32: 0 = background, k = prompt object id k; where objects overlap, the object with
  the higher anomaly score on that frame wins;
- ``score_maps`` (T, H, W) float16: per pixel, the max over the objects of that object's pixel score (each
  segmenter documents its pixel score); always > 0 on mask pixels; a segmenter may also give a lower positive
  score to pixels next to a mask (a soft mask: e.g. the rest of the object's box); 0 everywhere else;
- ``objects``: one row per (frame, object) whose own mask is non-empty: the box around that mask (computed before
  overlap resolution, x2/y2 exclusive), ``track_id`` = prompt object id, ``score`` = the object's anomaly score on
  that frame. These rows are the detections for RBDC/TBDC.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Optional, Union

import cv2
import numpy as np

from tao_lab.types import Clip, ObjectScores, ObjectTable, Prompts, Segmentation

# pixel scores of mask pixels are raised to at least this, so a mask pixel always ranks above the background (0)
# even for an object whose anomaly score is <= 0 (representable in float16)
MIN_PIXEL_SCORE = 1e-3


class Segmenter(ABC):
    """Prompts + frames -> per-object masks, per-pixel anomaly scores and per-object boxes of one clip."""

    @abstractmethod
    def segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores] = None) -> Segmentation:
        """clip: the frames; prompts: output of the prompt filter (object ids >= 1); scores: every scored object of
        the clip (with tracker ids), used to carry objects between prompt frames. Returns the clip's
        Segmentation (see the module docstring)."""

    def prepare(self) -> None:
        """Loads (or trains) what :meth:`segment` will need, in the calling process: before clips spread over
        worker processes, which would otherwise each load or train a copy of their own. The default needs nothing."""

    def stream(self, ctx) -> "SegmenterStream":
        """The per-frame form (online; ``ctx``: :class:`tao_lab.streaming.StreamContext`). The default segments
        the ring buffer of the last ``ctx.window`` frames as a clip and keeps its last frame (exact, but it redoes
        the window every frame); segmenters that can cut one frame's masks override it."""
        return ClipSegmenterStream(self, ctx)


class SegmenterStream:
    """Per-frame segmentation: ``step(frame, prompts, scores, num_frames) -> (instance_map, score_map)``.

    Called once per frame, prompts or not. ``prompts`` and ``scores`` are the scorer window's (window-relative
    frames 0..num_frames-1, the current frame is the last one); the maps are the current frame's, (H, W) int32
    (0 = background, k = prompt object id k) and (H, W) float16, as one frame of :meth:`Segmenter.segment`.
    """

    def __init__(self, ctx):
        self.height, self.width = ctx.height, ctx.width

    def empty(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((self.height, self.width), np.int32), np.zeros((self.height, self.width), np.float16)

    def step(self, frame: np.ndarray, prompts: Prompts, scores: ObjectScores,
             num_frames: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


class ClipSegmenterStream(SegmenterStream):
    """The default: :meth:`Segmenter.segment` on the ring buffer of the last ``ctx.window`` frames."""

    def __init__(self, segmenter: Segmenter, ctx):
        from collections import deque

        super().__init__(ctx)
        self.segmenter, self.fps = segmenter, ctx.fps
        self.frames: deque = deque(maxlen=ctx.window)

    def step(self, frame, prompts, scores, num_frames):
        from tao_lab.streaming import BufferClip

        self.frames.append(frame)
        if not len(prompts):
            return self.empty()
        out = self.segmenter.segment(BufferClip(list(self.frames)[-num_frames:], "buffer", self.fps), prompts,
                                     scores)
        return out.instance_maps[num_frames - 1], out.score_maps[num_frames - 1]


class FrameSegmenterStream(SegmenterStream):
    """Masks cut on the current frame only: ``masks_of(frame, items) -> (masks (K,H,W) bool, pixel scores (K,H,W)
    or None)`` for the objects a box-planning segmenter plans on the window's last frame (``segmenter.plan``).
    ``previous_frame`` is the frame of the step before (None on the first), for masks that need motion."""

    def __init__(self, segmenter, ctx, masks_of):
        super().__init__(ctx)
        self.segmenter, self.masks_of = segmenter, masks_of
        self.previous_frame: Optional[np.ndarray] = None

    def step(self, frame, prompts, scores, num_frames):
        try:
            return self._step(frame, prompts, scores, num_frames)
        finally:
            self.previous_frame = frame

    def _step(self, frame, prompts, scores, num_frames):
        if not len(prompts):
            return self.empty()
        items = self.segmenter.plan(prompts, scores, num_frames)[num_frames - 1]
        if not items:
            return self.empty()
        masks, pix = self.masks_of(frame, items)
        builder = SegmentationBuilder(1, self.height, self.width)
        builder.set_frame(0, [it.obj_id for it in items], masks, [it.score for it in items], pix)
        out = builder.build()
        return out.instance_maps[0], out.score_maps[0]


def label_by_track(instance_map: np.ndarray, objects: ObjectTable, min_iou: float = 0.1) -> np.ndarray:
    """A frame's instance map with each mask labelled by the track id of the object it overlaps most (IoU of the
    boxes > ``min_iou``, each object used once); other masks get fresh ids from ``max track id + 1e6`` on.
    Online, prompt ids are per window; track ids are the stream's."""
    from tao_lab.prompt_filter.geometry import box_iou

    labels = [int(k) for k in np.unique(instance_map) if k > 0]
    if not labels:
        return instance_map
    out = np.zeros_like(instance_map)
    boxes = np.stack([mask_box(instance_map == k) for k in labels])
    iou = box_iou(boxes, objects.xyxy)
    used = set()
    next_free = int(objects.track_id.max(initial=0)) + 1_000_000  # never collides with a live track id
    for r, k in enumerate(labels):
        j = int(np.argmax(iou[r])) if iou.shape[1] else -1
        if j >= 0 and iou[r, j] > min_iou and j not in used:
            used.add(j)
            out[instance_map == k] = int(objects.track_id[j])
        else:
            out[instance_map == k] = next_free + r
    return out


def mask_box(mask: np.ndarray) -> Optional[np.ndarray]:
    """(4,) float32 xyxy box around the True pixels of a (H, W) mask (x2/y2 exclusive), or None if empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(cols):
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


ScoreSpec = Union[None, float, Mapping[int, float], Callable[[int, int], float]]


def _score_of(scores: ScoreSpec, frame: int, obj_id: int) -> float:
    if scores is None:
        return 1.0
    if callable(scores):
        return float(scores(frame, obj_id))
    if isinstance(scores, Mapping):
        return float(scores.get(obj_id, 1.0))
    return float(scores)


def masks_to_boxes(masks, scores: ScoreSpec = None, obj_ids=None) -> ObjectTable:
    """One box per (frame, object) from the extent of the object's mask pixels.

    masks: one of
        - an instance label map (T, H, W) of integers: 0 = background, k = object id k;
        - per-object masks as a mapping {obj_id: (T, H, W) bool};
        - per-object masks as a (T, K, H, W) bool array (ids ``obj_ids`` or 1..K);
        - one object's masks as a (T, H, W) bool array (id ``obj_ids`` or 1).
    scores: the row score: None (1.0), a constant, {obj_id: score}, or a callable (frame, obj_id) -> score.
    Returns an ObjectTable sorted by (frame, obj_id): frame 0-based, xyxy px (x2/y2 exclusive), track_id = object id,
    cls = 0. An object with no pixel on a frame has no row there.
    """
    per_object: dict[int, np.ndarray] = {}
    label_map = None
    if isinstance(masks, Mapping):
        per_object = {int(k): np.asarray(v, dtype=bool) for k, v in masks.items()}
    else:
        arr = np.asarray(masks)
        if arr.dtype == bool and arr.ndim == 4:
            ids = list(range(1, arr.shape[1] + 1)) if obj_ids is None else [int(i) for i in obj_ids]
            per_object = {oid: arr[:, k] for k, oid in enumerate(ids)}
        elif arr.dtype == bool and arr.ndim == 3:
            per_object = {1 if obj_ids is None else int(np.ravel(obj_ids)[0]): arr}
        elif arr.ndim == 3 and np.issubdtype(arr.dtype, np.integer):
            label_map = arr
        else:
            raise ValueError(f"masks_to_boxes: expected a (T,H,W) int label map or bool masks, got "
                             f"{arr.dtype} {arr.shape}")
    frames, boxes, ids_out = [], [], []
    if label_map is not None:
        from scipy import ndimage

        for t, labels in enumerate(label_map):
            present = np.unique(labels)
            present = present[present > 0]
            if not len(present):
                continue
            if present.max() <= 65535:
                slices = ndimage.find_objects(labels, max_label=int(present.max()))
                for k in present:
                    sy, sx = slices[k - 1]
                    frames.append(t)
                    ids_out.append(int(k))
                    boxes.append([sx.start, sy.start, sx.stop, sy.stop])
            else:
                for k in present:
                    frames.append(t)
                    ids_out.append(int(k))
                    boxes.append(mask_box(labels == k))
    else:
        for oid, m in per_object.items():
            if m.ndim != 3:
                raise ValueError(f"masks of object {oid} must be (T,H,W), got {m.shape}")
            for t in np.flatnonzero(m.any(axis=(1, 2))):
                frames.append(int(t))
                ids_out.append(oid)
                boxes.append(mask_box(m[t]))
    if not frames:
        return ObjectTable.empty()
    frames_a, ids_a = np.array(frames), np.array(ids_out)
    order = np.lexsort((ids_a, frames_a))
    sc = [_score_of(scores, int(frames_a[i]), int(ids_a[i])) for i in order]
    return ObjectTable.build(frames_a[order], np.array(boxes, dtype=np.float32)[order], sc, ids_a[order])


class SegmentationBuilder:
    """Accumulates one clip's per-frame object masks into the Segmentation record.

    Holds (T, H, W) float16 score maps and (T, H, W) int32 instance maps (the contract's output); a frame may be
    written again (the later write replaces it), which lets chunked segmenters redo their overlap frames.
    """

    def __init__(self, num_frames: int, height: int, width: int):
        self.shape = (int(num_frames), int(height), int(width))
        self.score_maps = np.zeros(self.shape, dtype=np.float16)
        self.instance_maps = np.zeros(self.shape, dtype=np.int32)
        self._rows: dict[int, list[tuple[int, np.ndarray, float]]] = {}

    def set_frame(self, t: int, obj_ids, masks: np.ndarray, obj_scores, pixel_scores: Optional[np.ndarray] = None
                  ) -> None:
        """Writes frame t. obj_ids (K,) ints >= 1; masks (K, H, W) bool; obj_scores (K,) anomaly score of each object
        on this frame; pixel_scores (K, H, W) float per-pixel score of each object (None = its obj_score on every
        mask pixel; mask pixels are raised to at least MIN_PIXEL_SCORE, positive values outside the mask are kept
        as a soft margin, values <= 0 outside the mask are ignored). Replaces anything written to frame t."""
        K = len(np.asarray(obj_ids).reshape(-1))
        masks = np.asarray(masks, dtype=bool).reshape(K, *self.shape[1:])
        whole = (slice(0, self.shape[1]), slice(0, self.shape[2]))
        self.set_frame_regions(t, obj_ids, [whole] * K, list(masks),
                               obj_scores, None if pixel_scores is None else list(pixel_scores))

    def set_frame_regions(self, t: int, obj_ids, regions: list, masks: list, obj_scores,
                          pixel_scores: Optional[list] = None) -> None:
        """:meth:`set_frame` with each object given on a region of the frame only: ``regions[k]`` (rows, cols)
        slices, ``masks[k]`` and ``pixel_scores[k]`` arrays of that region's shape; outside its region an object
        has no mask pixel and a pixel score of 0. The same result as the whole-frame masks, at the cost of the
        regions' pixels (an object covers a few percent of a frame)."""
        obj_ids = np.asarray(obj_ids, dtype=np.int64).reshape(-1)
        obj_scores = np.asarray(obj_scores, dtype=np.float64).reshape(-1)
        if not len(obj_ids) == len(regions) == len(masks) == len(obj_scores) or \
                (pixel_scores is not None and len(pixel_scores) != len(obj_ids)):
            raise ValueError(f"set_frame_regions: {len(obj_ids)} ids, {len(regions)} regions, {len(masks)} masks, "
                             f"{len(obj_scores)} scores"
                             + ("" if pixel_scores is None else f", {len(pixel_scores)} pixel score maps"))
        if len(obj_ids) and obj_ids.min() < 1:
            raise ValueError(f"object ids must be >= 1 (0 is the background label), got {obj_ids.min()}")
        # what each object writes: the box around its mask and its positive (or NaN) pixel scores, within its region
        parts = []
        for k in np.argsort(obj_scores, kind="stable"):  # ascending: the higher-scored object is painted last
            (ys, xs), m = regions[k], np.asarray(masks[k], dtype=bool)
            p = None if pixel_scores is None else np.asarray(pixel_scores[k])
            if m.shape != (ys.stop - ys.start, xs.stop - xs.start) or (p is not None and p.shape != m.shape):
                raise ValueError(f"object {obj_ids[k]}: mask {m.shape} and pixel scores "
                                 f"{None if p is None else p.shape} must have its region's shape "
                                 f"({ys.stop - ys.start}, {xs.stop - xs.start})")
            support = m if p is None else m | ~(p <= 0)
            x, y, w, h = cv2.boundingRect(np.ascontiguousarray(support).view(np.uint8))
            if w == 0 or h == 0:
                continue  # writes nothing: no mask pixel, no positive pixel score
            inner = (slice(y, y + h), slice(x, x + w))
            parts.append((k, ys.start + y, xs.start + x, m[inner], None if p is None else p[inner]))
        # painted on the rectangle around all the parts only: the rest of the frame's maps is 0 (converting a whole
        # frame to float16 costs more than the objects)
        y0 = min((y for _, y, _, _, _ in parts), default=0)
        x0 = min((x for _, _, x, _, _ in parts), default=0)
        y1 = max((y + m.shape[0] for _, y, _, m, _ in parts), default=0)
        x1 = max((x + m.shape[1] for _, _, x, m, _ in parts), default=0)
        score_map = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        inst = np.zeros(score_map.shape, dtype=np.int32)
        rows = []
        for k, y, x, m, p in parts:
            part = (slice(y - y0, y - y0 + m.shape[0]), slice(x - x0, x - x0 + m.shape[1]))
            scores_part = score_map[part]
            if p is not None:
                # soft support: pixels outside the mask may carry a (lower) positive score too
                np.maximum(scores_part, np.where(m, np.maximum(p, MIN_PIXEL_SCORE), np.maximum(p, 0.0)),
                           out=scores_part)
            box = mask_box(m)
            if box is None:
                continue
            box += np.array([x, y, x, y], np.float32)
            inst[part][m] = obj_ids[k]
            if p is None:
                scores_part[m] = np.maximum(scores_part[m], max(obj_scores[k], MIN_PIXEL_SCORE))
            rows.append((int(obj_ids[k]), box, float(obj_scores[k])))
        if int(t) in self._rows:  # written before: cleared (a frame never written is still all 0, and its memory
            self.score_maps[t].fill(0)  # pages untouched: np.zeros gives pages that cost nothing until written)
            self.instance_maps[t].fill(0)
        self.score_maps[t, y0:y1, x0:x1] = score_map
        self.instance_maps[t, y0:y1, x0:x1] = inst
        self._rows[int(t)] = sorted(rows, key=lambda r: r[0])

    def build(self) -> Segmentation:
        frames, boxes, scores, ids = [], [], [], []
        for t in sorted(self._rows):
            for oid, box, score in self._rows[t]:
                frames.append(t)
                boxes.append(box)
                scores.append(score)
                ids.append(oid)
        objects = ObjectTable.build(frames, np.array(boxes, np.float32).reshape(-1, 4), scores, ids) if frames \
            else ObjectTable.empty()
        return Segmentation(score_maps=self.score_maps, objects=objects, instance_maps=self.instance_maps)
