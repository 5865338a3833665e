"""``segmenter=pose_person``: BlazePose's person mask for each planned box, the classical mask for the rest.

For every planned box (the same box plan as ``segmenter=classical``: prompt boxes, carried along tracks) that may be
a person, BlazePose (tao_lab.features.blazepose; the square ROI of MediaPipe's pose graph around the box) gives a
person probability per tensor pixel (``Identity_2`` through a sigmoid, MediaPipe's TensorsToSegmentationCalculator);
it is warped back to the frame (the inverse of the ROI's letterbox transform), thresholded at ``mask_threshold``
(0.5) and clipped to the object's enlarged box (``box_margin``, as the classical masks), and becomes the object's
mask. Pixel score on the mask: ``score x (floor + (1 - floor) x person probability)``, plus the classical soft
margin in the rest of the enlarged box.

Falls back to the classical foreground mask (tao_lab.segmenter.classical.ForegroundSegmenter, all its options) when
- the box's object is not a possible person: its detector class (the scored object of that frame overlapping the
  box most, IoU >= ``min_class_iou``) is not in ``person_classes`` (0 = COCO person and every box of a
  class-agnostic detector, -1 = the hybrid detector's unexplained blobs); a box without a matching scored object
  is treated as a possible person;
- the pose presence is below ``presence_threshold`` (MediaPipe's graph gates its mask on presence >= 0.5 too);
- the thresholded mask has no pixel inside the enlarged box.

Person masks leave out what a person model does not see: bicycles, carts, skateboards, bags. Ground truth that
covers a biker with the bicycle or a cart with its pusher is only partly covered (a cart/vehicle class falls back
to the classical mask when the detector has classes; with the class-agnostic background detector every box is
tried as a person).

Cost: one BlazePose pass per planned box that may be a person (about 11 ms idle, 30 ms on a busy CPU). Online it
segments the ring buffer like the default segmenter stream (the class lookup needs the window's scored objects).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import cv2
import numpy as np

from tao_lab.segmenter.base import Segmenter
from tao_lab.segmenter.classical import ForegroundSegmenter
from tao_lab.types import Clip, ObjectScores, Prompts, Segmentation

log = logging.getLogger(__name__)


class PosePersonSegmenter(ForegroundSegmenter):
    """Person masks from BlazePose, classical masks otherwise (module docstring).

    Args:
        weights: ``pose_landmark_full.tflite`` (missing -> FileNotFoundError naming it and where to get it).
        presence_threshold: below this pose presence the classical mask is used.
        mask_threshold: person probability above which a pixel is on the mask.
        roi_scale: ROI side / the box's longer side (MediaPipe: 1.25).
        num_threads: LiteRT interpreter threads.
        person_classes: detector classes that may be persons.
        min_class_iou: a box takes the class of the frame's scored object overlapping it most, if IoU >= this.
        **classical: every ForegroundSegmenter option (the fallback masks, soft margin, box plan).
    """

    def __init__(self, weights: str, presence_threshold: float = 0.5, mask_threshold: float = 0.5,
                 roi_scale: float = 1.25, num_threads: int = 1, person_classes: Sequence[int] = (0, -1),
                 min_class_iou: float = 0.3, **classical):
        super().__init__(**classical)
        from tao_lab.features.blazepose import BlazePose

        self.blazepose = BlazePose(weights, roi_scale=roi_scale, num_threads=num_threads)
        self.presence_threshold = float(presence_threshold)
        self.mask_threshold = float(mask_threshold)
        self.person_classes = tuple(int(c) for c in person_classes)
        self.min_class_iou = float(min_class_iou)
        #: since construction: how many planned boxes got a person mask / the classical mask (for the log)
        self.counts = {"person": 0, "classical": 0}

    def classes_of(self, t: int, items: list, scores: Optional[ObjectScores]) -> list[Optional[int]]:
        """Detector class of each planned box on frame t (None when no scored object matches it)."""
        if scores is None or not len(scores.objects):
            return [None] * len(items)
        from tao_lab.prompt_filter.geometry import box_iou

        obj = scores.objects
        rows = np.flatnonzero(obj.frame == t)
        if not len(rows):
            return [None] * len(items)
        iou = box_iou(np.stack([np.asarray(it.box, np.float32) for it in items]), obj.xyxy[rows])
        out: list[Optional[int]] = []
        for r in range(len(items)):
            j = int(np.argmax(iou[r]))
            out.append(int(obj.cls[rows[j]]) if iou[r, j] >= self.min_class_iou else None)
        return out

    def person_mask(self, frame: np.ndarray, box: np.ndarray,
                    rgb: Optional[np.ndarray] = None) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(mask (H,W) bool, person probability (H,W) float32) of one box, clipped to its enlarged box; None when
        the pose presence is low or the mask is empty there. ``rgb``: the frame already converted (once per
        frame, not per box)."""
        H, W = frame.shape[:2]
        res = self.blazepose(_rgb(frame) if rgb is None else rgb, box, mask=True)
        if not res.presence >= self.presence_threshold:
            return None
        prob = res.transform.mask_to_image(res.mask_prob, H, W)
        inside = np.zeros((H, W), bool)
        inside[self._region(np.asarray(box, np.float64), H, W)] = True
        prob = np.where(inside, prob, 0.0).astype(np.float32)
        mask = prob > self.mask_threshold
        return (mask, prob) if mask.any() else None

    def frame_masks(self, frame: np.ndarray, items: list, diff: np.ndarray, fg: np.ndarray,
                    classes: Optional[list] = None, flow: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        masks, pix = super().frame_masks(frame, items, diff, fg, flow=flow)  # the classical masks: the fallback
        classes = classes or [None] * len(items)
        rgb = None
        for k, it in enumerate(items):
            if classes[k] is not None and classes[k] not in self.person_classes:
                self.counts["classical"] += 1
                continue
            rgb = _rgb(frame) if rgb is None else rgb
            got = self.person_mask(frame, it.box, rgb)
            if got is None:
                self.counts["classical"] += 1
                continue
            self.counts["person"] += 1
            masks[k], prob = got
            factor = self.strength_floor + (1.0 - self.strength_floor) * prob
            pix[k] = it.score * np.where(masks[k], factor, self.soft_margin(it.box, masks[k]))
        return masks, pix

    def masks_at(self, t, frame, items, diff, fg, scores, flow=None):
        masks, pix = self.frame_masks(frame, items, diff, fg, self.classes_of(t, items, scores), flow=flow)
        whole = (slice(0, frame.shape[0]), slice(0, frame.shape[1]))  # a person mask may reach the whole frame
        return [(whole, m, p) for m, p in zip(masks, pix)]

    def segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores] = None) -> Segmentation:
        out = super().segment(clip, prompts, scores)
        log.info("pose_person %s: %d planned boxes so far with a person mask, %d with the classical mask",
                 clip.clip_id, self.counts["person"], self.counts["classical"])
        return out

    def stream(self, ctx):
        """Online: the ring buffer is segmented as a clip (the default segmenter stream), so the class of each box
        comes from the window's scored objects."""
        return Segmenter.stream(self, ctx)


def _rgb(frame: np.ndarray) -> np.ndarray:
    """The RGB frame BlazePose reads (frames are BGR, or grey)."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if frame.ndim == 3 else cv2.COLOR_GRAY2RGB)
