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
        shape: "box" -> the (padded) box is resized to the square thumbnail, whatever its aspect (a wide cart and a
            tall walker fill it alike); "square" -> a square around the box's centre, as wide as the box's longer
            side, is resized, so the thumbnail keeps the object's shape (a wide object is wide in it, with context
            above and below; the part of the square outside the frame repeats the frame's border).
    """

    name = "appearance"

    def __init__(self, size: int = 16, kind: str = "grey", pad: float = 0.0, shape: str = "box"):
        if kind not in ("grey", "hog"):
            raise ValueError(f"unknown appearance kind {kind!r}: expected 'grey' or 'hog'")
        if shape not in ("box", "square"):
            raise ValueError(f"unknown appearance crop shape {shape!r}: expected 'box' or 'square'")
        if kind == "hog" and size % 4:
            raise ValueError(f"hog needs a size divisible by 4, got {size}")
        self.size = int(size)
        self.kind = kind
        self.pad = float(pad)
        self.shape = shape

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
        crops = _square_crops(grey, b) if self.shape == "square" else \
            (grey[y1:y2, x1:x2] for x1, y1, x2, y2 in clip_boxes(b, h, w))
        for r, crop in enumerate(crops):
            thumb = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)
            if self.kind == "grey":
                v = thumb.astype(np.float32).ravel()
                v -= v.mean()
            else:
                v = _hog(thumb)
            out[r] = v / max(float(np.linalg.norm(v)), 1e-6)
        return out


def _square_crops(grey: np.ndarray, boxes: np.ndarray):
    """Per box (K,4 xyxy), the square crop around its centre with the side of its longer edge (at least 1 px); the
    part outside the frame repeats the border pixels."""
    h, w = grey.shape

    def span(lo: int, side: int, size: int) -> tuple[int, int, int, int]:
        a = min(max(lo, 0), size - 1)  # the part inside the frame: [a, b)
        b = max(min(lo + side, size), a + 1)
        before = min(max(a - lo, 0), side - (b - a))
        return a, b, before, side - (b - a) - before

    for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
        side = max(int(round(max(x2 - x1, y2 - y1))), 1)
        ax, bx, left, right = span(int(round((x1 + x2 - side) / 2)), side, w)
        ay, by, top, bottom = span(int(round((y1 + y2 - side) / 2)), side, h)
        crop = grey[ay:by, ax:bx]
        if top or bottom or left or right:
            crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_REPLICATE)
        yield crop


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
