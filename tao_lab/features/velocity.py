"""Velocity of an object from the dense optical flow inside its box."""
from __future__ import annotations

import cv2
import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes


class VelocityFeature(FeatureExtractor):
    """Speed and motion direction of each object, in original pixels per frame.

    Columns (D = 3 + bins):
      0. ``speed``: mean flow magnitude (px/frame) over the box's *moving* pixels (magnitude >= moving_threshold);
         0 when no pixel moves. Averaging only moving pixels keeps a loose box (background in the box) from
         diluting the speed of what moves in it.
      1. ``speed_p90``: 90th percentile of the flow magnitude over all pixels of the box (px/frame).
      2. ``speed_cell_max``: the largest mean flow magnitude of any ``cell`` x ``cell`` px window inside the box
         (px/frame; the whole box when it is smaller than a cell). When several objects merge into one box (a
         cyclist inside a group of walkers) this still reads the fastest part, like a dense grid score does.
      3..3+bins-1. orientation histogram: bin j holds the summed magnitude of the moving pixels whose direction
         angle atan2(dy, dx) (0 = moving right, pi/2 = moving down in the image) falls in sector j of ``bins``
         equal sectors, divided by the number of moving pixels; the bins sum to column 0 (AIVAD's "orientation
         histogram of mean flow magnitude"; bins=1 gives the speed again).
    Args:
        bins: orientation bins (>= 1).
        moving_threshold: px/frame; slower pixels count as static background (JPEG noise and jitter give flow of
            about 0.1-0.3 px/frame; a slow walker moves about 0.5-1 px/frame).
        cell: window size (px) of ``speed_cell_max``.
        edge_band: pixels closer than this (px) to any frame edge are left out of every column. The optical flow is
            least reliable there (DIS's patches are clipped by the border, and an object entering or leaving shows
            pixels that have no match in the other frame): on Ped2's training clips a track's speed at the side edges
            reads 1.4x its speed inside at the 90th percentile (1.2x between its own inside frames). A box with no
            pixel outside the band gets zeros (no reliable motion); a box left narrower than a cell reads
            speed_cell_max from the cell around its centre, as any small box does, which may reach into the band.
            0 = every pixel counts.
        edge_fallback: what a box with too little left inside the band reads. "zeros": a box with no pixel outside
            the band reads zeros (edge band round 1: on small frames a fast object wholly in the band was then
            missed); "whole": a box left narrower or shorter than one ``cell`` inside the band is read over its
            whole box, as without the band (an inflated reading beats none).
    """

    name = "velocity"
    columns = ("speed", "speed_p90", "speed_cell_max")

    #: ``edge_fallback`` values (see the class docstring).
    EDGE_FALLBACKS = ("zeros", "whole")

    def __init__(self, bins: int = 8, moving_threshold: float = 0.5, cell: int = 8, edge_band: int = 0,
                 edge_fallback: str = "zeros"):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if cell < 1:
            raise ValueError(f"cell must be >= 1, got {cell}")
        if edge_band < 0:
            raise ValueError(f"edge_band must be >= 0 px, got {edge_band}")
        if edge_fallback not in self.EDGE_FALLBACKS:
            raise ValueError(f"edge_fallback must be one of {self.EDGE_FALLBACKS}, got {edge_fallback!r}")
        self.edge_band = int(edge_band)
        self.edge_fallback = edge_fallback
        self.bins = int(bins)
        self.moving_threshold = float(moving_threshold)
        self.cell = int(cell)

    @property
    def dim(self) -> int:
        return 3 + self.bins

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        flow = ctx.flow
        h, w = flow.shape[:2]
        mag_full = cv2.magnitude(flow[..., 0], flow[..., 1])
        cell_mean = cv2.blur(mag_full, (self.cell, self.cell), borderType=cv2.BORDER_REFLECT)
        half = self.cell // 2
        out = np.zeros((len(boxes), self.dim), np.float32)
        band = self.edge_band
        for r, (x1, y1, x2, y2) in enumerate(clip_boxes(boxes, h, w)):
            if band:  # only the box's pixels at least `band` px inside the frame, when enough of them are left
                ix1, iy1, ix2, iy2 = max(x1, band), max(y1, band), min(x2, w - band), min(y2, h - band)
                least = self.cell if self.edge_fallback == "whole" else 1
                if ix2 - ix1 >= least and iy2 - iy1 >= least:
                    x1, y1, x2, y2 = ix1, iy1, ix2, iy2
                elif self.edge_fallback == "zeros":
                    continue  # nothing reliable: zeros
                # "whole": too little inside the band, the whole box is read
            mag = mag_full[y1:y2, x1:x2].ravel()
            k = int(0.9 * (len(mag) - 1))  # the 90th percentile as an order statistic (lower neighbour)
            out[r, 1] = np.partition(mag, k)[k]
            # centres of cell windows lying inside the box (the box centre when the box is smaller than a cell)
            cx1, cx2 = x1 + half, x2 - (self.cell - half) + 1
            cy1, cy2 = y1 + half, y2 - (self.cell - half) + 1
            if cx2 <= cx1:
                cx1 = cx2 = (x1 + x2) // 2
                cx2 += 1
            if cy2 <= cy1:
                cy1 = cy2 = (y1 + y2) // 2
                cy2 += 1
            out[r, 2] = cell_mean[cy1:cy2, cx1:cx2].max()
            moving = mag >= self.moving_threshold
            m = int(moving.sum())
            if m == 0:
                continue
            f = flow[y1:y2, x1:x2].reshape(-1, 2)[moving]
            mm = mag[moving]
            out[r, 0] = mm.mean()
            ang = np.arctan2(f[:, 1], f[:, 0]) % (2 * np.pi)
            idx = np.minimum((ang * (self.bins / (2 * np.pi))).astype(np.int64), self.bins - 1)
            out[r, 3:] = np.bincount(idx, weights=mm, minlength=self.bins) / m
        return out
