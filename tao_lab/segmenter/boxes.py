"""``segmenter=boxes``: the baseline -- each object's mask is its filled box (weight-free, no image evidence)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_lab.segmenter.base import FrameSegmenterStream, Segmenter, SegmentationBuilder
from tao_lab.segmenter.carry import PlannedBox, plan_boxes
from tao_lab.types import Clip, ObjectScores, Prompts, Segmentation


def box_slices(box: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    """(rows, cols) slices of the pixels covered by an xyxy box (outward rounding, clipped to the image)."""
    x1 = int(np.clip(np.floor(box[0]), 0, width))
    y1 = int(np.clip(np.floor(box[1]), 0, height))
    x2 = int(np.clip(np.ceil(box[2]), 0, width))
    y2 = int(np.clip(np.ceil(box[3]), 0, height))
    return slice(y1, y2), slice(x1, x2)


class CarryingSegmenter(Segmenter):
    """Shared part of the weight-free segmenters: the per-frame box plan (tao_lab.segmenter.carry).

    Args:
        max_carry: carry an object along its track for at most this many frames after a prompt (0 = prompt
            frames only).
        max_gap: stop carrying after the track has been missing for more than this many consecutive frames.
        carry_backward: also carry backwards this many frames before the object's first prompt.
        min_track_iou: a prompt is tied to the scored object of its frame with the highest IoU if >= this.
        carry_score: anomaly score on carried frames: "prompt", "track" (the scored object's own) or "max".
    """

    def __init__(self, max_carry: int = 25, max_gap: int = 3, carry_backward: int = 5, min_track_iou: float = 0.3,
                 carry_score: str = "prompt"):
        self.max_carry = int(max_carry)
        self.max_gap = int(max_gap)
        self.carry_backward = int(carry_backward)
        self.min_track_iou = float(min_track_iou)
        self.carry_score = carry_score

    #: whether the planned boxes carry their tracks' velocities (plan_boxes' track_velocities)
    track_velocities = False

    def plan(self, prompts: Prompts, scores: Optional[ObjectScores], num_frames: int) -> list[list[PlannedBox]]:
        return plan_boxes(prompts, scores, num_frames, max_carry=self.max_carry, max_gap=self.max_gap,
                          carry_backward=self.carry_backward, min_track_iou=self.min_track_iou,
                          carry_score=self.carry_score, track_velocities=self.track_velocities)


class FilledBoxSegmenter(CarryingSegmenter):
    """Masks = the planned boxes, filled; pixel score = the object's anomaly score on every pixel of its box.

    Same box plan (carrying) as the weight-free foreground segmenter, so comparing the two isolates the value of
    the mask shape and of the graded pixel scores.
    """

    def segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores] = None) -> Segmentation:
        H, W = clip.height, clip.width
        builder = SegmentationBuilder(clip.num_frames, H, W)
        for t, items in enumerate(self.plan(prompts, scores, clip.num_frames)):
            if not items:
                continue
            masks, _ = self.box_masks(H, W, items)
            builder.set_frame(t, [it.obj_id for it in items], masks, [it.score for it in items])
        return builder.build()

    @staticmethod
    def box_masks(height: int, width: int, items: list[PlannedBox]) -> tuple[np.ndarray, None]:
        """(K, H, W) filled-box masks of one frame's planned objects (pixel score: the object's, so None)."""
        masks = np.zeros((len(items), height, width), dtype=bool)
        for k, it in enumerate(items):
            masks[k][box_slices(it.box, height, width)] = True
        return masks, None

    def stream(self, ctx) -> FrameSegmenterStream:
        """Online: the filled boxes planned on the current frame."""
        return FrameSegmenterStream(self, ctx, lambda frame, items: self.box_masks(ctx.height, ctx.width, items))
