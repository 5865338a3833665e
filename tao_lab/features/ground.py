"""What the ground looks like just below an object's feet: how bright and how textured (weight-free, per frame)."""
from __future__ import annotations

import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext


class GroundFeature(FeatureExtractor):
    """The strip of the frame just below each box: the ground the object stands on, in this very frame.

    Columns (D = 2): the strip's mean grey level and its texture (mean absolute difference between neighbouring
    pixels, along x and y). The strip is as wide as the box and ``depth`` x the box height deep (at least 2 rows),
    starting at the box's bottom edge; NaN when fewer than 2 of its rows are in the frame (feet cut off by the
    bottom edge). A walkway and a lawn differ in both, wherever on them an object stands: a place model over these
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
        for i, (x1, y1, x2, y2) in enumerate(b):
            top = int(np.clip(np.floor(y2), 0, h))
            rows = max(2, int(round(self.depth * (y2 - y1))))
            bottom = min(h, top + rows)
            left, right = int(np.clip(np.floor(x1), 0, w)), int(np.clip(np.ceil(x2), 0, w))
            if bottom - top < 2 or right - left < 2:
                continue
            strip = grey[top:bottom, left:right].astype(np.float32)
            out[i, 0] = strip.mean()
            out[i, 1] = 0.5 * (np.abs(np.diff(strip, axis=0)).mean() + np.abs(np.diff(strip, axis=1)).mean())
        return out
