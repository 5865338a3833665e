"""Box geometry."""
from __future__ import annotations

import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext


class BoxGeometryFeature(FeatureExtractor):
    """Position and shape of each box.

    Columns (D = 6): centre x / frame width, centre y / frame height (both in [0, 1]), width (px), height (px),
    log(width / height), sqrt(area) (px).
    """

    name = "geometry"

    @property
    def dim(self) -> int:
        return 6

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        h, w = ctx.frame.shape[:2]
        b = np.asarray(boxes, np.float32)
        bw = np.maximum(b[:, 2] - b[:, 0], 1.0)
        bh = np.maximum(b[:, 3] - b[:, 1], 1.0)
        return np.stack([(b[:, 0] + b[:, 2]) / (2 * w), (b[:, 1] + b[:, 3]) / (2 * h), bw, bh, np.log(bw / bh),
                         np.sqrt(bw * bh)], axis=1).astype(np.float32)
