"""How an object's motion is spread over its body: rigid or articulated, from the dense optical flow in its box."""
from __future__ import annotations

import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes


class MotionPatternFeature(FeatureExtractor):
    """The pattern of an object's motion relative to its own mean motion, free of its speed and direction.

    A bike, a board, a cart or a car moves as one piece: every moving pixel has about the object's mean flow. A walker
    or a runner is articulated: the legs and arms swing forward and back around the body's motion, the feet stand
    still in turn. Speed measures cannot tell a slow cyclist from a walker; this pattern can. With m the mean flow
    vector of the box's moving pixels (|flow| >= ``moving_threshold``) and s = |m|:

      0. ``articulation``: mean |flow - m| / s over the moving pixels (0 for a rigid translation);
      1..bands. ``band_k``: the mean forward flow (flow . m / s) of the moving pixels in horizontal band k of the box
         (top to bottom), divided by s (1 everywhere for a rigid translation; a walker's leg band differs from its
         head band); a band without moving pixels reads 0.

    A row is NaN (no value: the scorer leaves it out of its model and scores it 0) when s < ``min_speed`` px/frame or
    fewer than ``min_pixels`` pixels move: a standing object's flow is noise, and its direction is undefined.
    """

    name = "motion_pattern"

    def __init__(self, bands: int = 4, moving_threshold: float = 0.5, min_speed: float = 0.5, min_pixels: int = 12):
        if bands < 1:
            raise ValueError(f"bands must be >= 1, got {bands}")
        if not min_speed > 0:
            raise ValueError(f"min_speed must be > 0 px/frame, got {min_speed}")
        self.bands = int(bands)
        self.moving_threshold = float(moving_threshold)
        self.min_speed = float(min_speed)
        self.min_pixels = int(min_pixels)

    @property
    def dim(self) -> int:
        return 1 + self.bands

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        flow = ctx.flow
        h, w = flow.shape[:2]
        out = np.full((len(boxes), self.dim), np.nan, np.float32)
        for r, (x1, y1, x2, y2) in enumerate(clip_boxes(boxes, h, w)):
            f = flow[y1:y2, x1:x2].reshape(-1, 2).astype(np.float64)
            mag = np.hypot(f[:, 0], f[:, 1])
            moving = mag >= self.moving_threshold
            if int(moving.sum()) < self.min_pixels:
                continue
            fm = f[moving]
            mean = fm.mean(axis=0)
            speed = float(np.hypot(*mean))
            if speed < self.min_speed:
                continue
            out[r, 0] = np.hypot(*(fm - mean).T).mean() / speed
            forward = fm @ (mean / speed) / speed
            rows = np.repeat(np.arange(y2 - y1), x2 - x1)[moving]
            band = np.minimum(rows * self.bands // max(y2 - y1, 1), self.bands - 1)
            sums = np.bincount(band, weights=forward, minlength=self.bands)
            counts = np.bincount(band, minlength=self.bands)
            out[r, 1:] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        return out
