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
              "hog" -> a histogram of oriented gradients of the thumbnail (4 x 4 cells of size/4 px, 9 unsigned
            orientation bins weighted by gradient magnitude, each 2x2-cell block L2-normalised, 3 x 3 blocks),
            then L2-normalised, D = 324 for any size divisible by 4.
        pad: fraction of the box size added on every side before cropping (context around the object).
    """

    name = "appearance"

    def __init__(self, size: int = 16, kind: str = "grey", pad: float = 0.0):
        if kind not in ("grey", "hog"):
            raise ValueError(f"unknown appearance kind {kind!r}: expected 'grey' or 'hog'")
        if kind == "hog" and size % 4:
            raise ValueError(f"hog needs a size divisible by 4, got {size}")
        self.size = int(size)
        self.kind = kind
        self.pad = float(pad)

    @property
    def dim(self) -> int:
        return self.size * self.size if self.kind == "grey" else 3 * 3 * 4 * 9

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
                v = _hog(thumb)
            out[r] = v / max(float(np.linalg.norm(v)), 1e-6)
        return out


def _hog(thumb: np.ndarray, bins: int = 9) -> np.ndarray:
    """HOG of a square uint8 thumbnail: 4x4 cells, unsigned orientations, 3x3 overlapping 2x2-cell blocks."""
    g = thumb.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1)
    mag = cv2.magnitude(gx, gy)
    ang = np.arctan2(gy, gx) % np.pi
    idx = np.minimum((ang * (bins / np.pi)).astype(np.int64), bins - 1)
    cell = thumb.shape[0] // 4
    cy, cx = np.divmod(np.arange(thumb.size), thumb.shape[1])
    cell_id = (cy // cell).clip(max=3) * 4 + (cx // cell).clip(max=3)
    hist = np.bincount(cell_id * bins + idx.ravel(), weights=mag.ravel(), minlength=16 * bins).reshape(4, 4, bins)
    blocks = []
    for by in range(3):
        for bx in range(3):
            b = hist[by:by + 2, bx:bx + 2].ravel()
            blocks.append(b / (np.linalg.norm(b) + 1e-6))
    return np.concatenate(blocks).astype(np.float32)
