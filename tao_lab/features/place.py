"""Where an object stands in the image, in frame-relative units (what the scene-context attributes read)."""
from __future__ import annotations

import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext


class PlaceFeature(FeatureExtractor):
    """Footprint and size of each box relative to the frame, plus the frame size.

    Columns (D = 6): footprint x / W and footprint y / H (the bottom centre of the box, where the object touches the
    ground: the point that fixes its depth in a fixed camera), width / W, height / H (all in [0, 1]), W (px), H (px).
    The frame size rides along so that scene models fitted in relative units can convert back to pixels.
    """

    name = "place"
    columns = ("foot_x", "foot_y", "width", "height", "frame_width", "frame_height")

    @property
    def dim(self) -> int:
        return 6

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        h, w = ctx.frame.shape[:2]
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.empty((len(b), 6), np.float32)
        out[:, 0] = np.clip((b[:, 0] + b[:, 2]) / (2 * w), 0.0, 1.0)
        out[:, 1] = np.clip(b[:, 3] / h, 0.0, 1.0)
        out[:, 2] = np.maximum(b[:, 2] - b[:, 0], 1.0) / w
        out[:, 3] = np.maximum(b[:, 3] - b[:, 1], 1.0) / h
        out[:, 4] = w
        out[:, 5] = h
        return out
