"""What the ground looks like just below an object's feet: how bright and how textured (weight-free, per frame)."""
from __future__ import annotations

import cv2
import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext


class GroundFeature(FeatureExtractor):
    """The strip of the frame just below each box: the ground the object stands on, in this very frame.

    Columns (D = 2): the strip's mean grey level and its texture (mean absolute difference between neighbouring
    pixels, along x and y). The strip is as wide as the box and ``depth`` x the box height deep (at least 2 rows),
    starting at the box's bottom edge; NaN when fewer than 2 of its rows or columns are in the frame (feet cut off
    by the bottom edge). A walkway and a lawn differ in both, wherever on them an object stands: a place model over these
    columns (the ``ground`` attribute) reads an unvisited spot of the walkway as normal and the lawn as not, where
    a density over footprint positions flags both. The object itself does not cover the strip; its shadow may,
    as it does on the training clips the model is fitted on.
    """

    name = "ground"
    columns = ("ground_grey", "ground_texture")

    def __init__(self, depth: float = 0.15):
        if not 0.0 < float(depth) <= 1.0:
            raise ValueError(f"depth must be a fraction of the box height in (0, 1], got {depth!r}")
        self.depth = float(depth)

    @property
    def dim(self) -> int:
        return 2

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        grey = ctx.grey
        h, w = grey.shape
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.full((len(b), 2), np.nan, np.float32)
        top = np.clip(np.floor(b[:, 3]), 0, h).astype(np.int64)
        bottom = np.minimum(h, top + np.maximum(2, np.round(self.depth * (b[:, 3] - b[:, 1]))).astype(np.int64))
        left = np.clip(np.floor(b[:, 0]), 0, w).astype(np.int64)
        right = np.clip(np.ceil(b[:, 2]), 0, w).astype(np.int64)
        # OpenCV's sums and absolute differences on uint8 views: five times faster than numpy's per-box calls
        for i in np.flatnonzero((bottom - top >= 2) & (right - left >= 2)):
            strip = grey[top[i]:bottom[i], left[i]:right[i]]
            dy, dx = cv2.absdiff(strip[1:], strip[:-1]), cv2.absdiff(strip[:, 1:], strip[:, :-1])
            out[i, 0] = cv2.sumElems(strip)[0] / strip.size
            out[i, 1] = 0.5 * (cv2.sumElems(dy)[0] / dy.size + cv2.sumElems(dx)[0] / dx.size)
        return out
