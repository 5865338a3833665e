"""Weight-free appearance descriptors of object crops."""
from __future__ import annotations

import cv2
import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes


class CropAppearanceFeature(FeatureExtractor):
    """A small grey thumbnail or a HOG descriptor of each box crop (no weights).

    Args:
        size: crops are resized to size x size px (INTER_AREA).
        kind: "grey" -> the thumbnail's pixels, standardised per crop (zero mean, unit L2 norm: insensitive to
            brightness and contrast), D = size^2;
              "hog" -> OpenCV HOG on the thumbnail (cells of size/4 px, 2x2-cell blocks, 9 orientations),
            L2-normalised, D = 9 * 4 * (3 * 3) for any size divisible by 8.
        pad: fraction of the box size added on every side before cropping (context around the object).
    """

    name = "appearance"

    def __init__(self, size: int = 16, kind: str = "grey", pad: float = 0.0):
        if kind not in ("grey", "hog"):
            raise ValueError(f"unknown appearance kind {kind!r}: expected 'grey' or 'hog'")
        if kind == "hog" and size % 8:
            raise ValueError(f"hog needs a size divisible by 8, got {size}")
        self.size = int(size)
        self.kind = kind
        self.pad = float(pad)
        self._hog = None
        if kind == "hog":
            cell = self.size // 4
            self._hog = cv2.HOGDescriptor((self.size, self.size), (2 * cell, 2 * cell), (cell, cell), (cell, cell), 9)

    @property
    def dim(self) -> int:
        if self.kind == "grey":
            return self.size * self.size
        return int(self._hog.getDescriptorSize())

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        grey = ctx.grey
        h, w = grey.shape
        b = np.asarray(boxes, np.float32).copy()
        if self.pad:
            bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            b += np.stack([-bw, -bh, bw, bh], axis=1) * self.pad
        out = np.zeros((len(b), self.dim), np.float32)
        for r, (x1, y1, x2, y2) in enumerate(clip_boxes(b, h, w)):
            thumb = cv2.resize(grey[y1:y2, x1:x2], (self.size, self.size), interpolation=cv2.INTER_AREA)
            if self.kind == "grey":
                v = thumb.astype(np.float32).ravel()
                v -= v.mean()
            else:
                v = self._hog.compute(thumb).ravel().astype(np.float32)
            out[r] = v / max(float(np.linalg.norm(v)), 1e-6)
        return out
