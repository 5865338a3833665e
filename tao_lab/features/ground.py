"""What the ground looks like just below an object's feet: how bright and how textured (weight-free, per frame)."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from tao_lab.detector.background import median_over_frames
from tao_lab.features.base import FeatureExtractor, FrameContext, grey_uint8
from tao_lab.types import Clip


def _median(frames: list[np.ndarray]) -> np.ndarray:
    """(H, W) uint8 per-pixel median of grey frames; as float32, where the detector's sort-based median is 3x faster
    than np.median on uint8 (40 Ped2 frames: 12 against 34 ms)."""
    return median_over_frames(np.stack(frames).astype(np.float32)).astype(np.uint8)


#: where GroundFeature reads the strip: the frame itself, or the clip's background (the ground without its objects)
GROUND_SOURCES = ("frame", "background")


def strip_cover(strips: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K,) share of each strip's pixels inside the union of the OTHER boxes. strips: (K, 4) int pixel rectangles
    [left, top, right, bottom) (box i's strip); boxes: (K, 4) xyxy floats, pixel (x, y) inside when x1 <= x + 0.5
    < x2 and likewise for y. An empty strip reads 0.

    Vectorised over every (strip, other box) pair whose rectangles overlap, with no Python loop over boxes: the
    feature stage runs on several threads, and Python-level work holds the interpreter lock the others wait for."""
    strips = np.asarray(strips, np.int64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros(len(strips))
    width, height = strips[:, 2] - strips[:, 0], strips[:, 3] - strips[:, 1]
    near = ((boxes[None, :, 0] < strips[:, None, 2]) & (boxes[None, :, 2] > strips[:, None, 0])
            & (boxes[None, :, 1] < strips[:, None, 3]) & (boxes[None, :, 3] > strips[:, None, 1]))
    np.fill_diagonal(near, False)
    near &= ((width > 0) & (height > 0))[:, None]
    strip, other = np.nonzero(near)  # row-major: the pairs of one strip are consecutive
    if not len(strip):
        return out
    cols, rows = np.arange(width[strip].max()), np.arange(height[strip].max())
    xs = strips[strip, 0, None] + cols[None] + 0.5  # (P, w) pixel centres, padded to the widest strip
    ys = strips[strip, 1, None] + rows[None] + 0.5  # (P, h)
    in_x = (xs >= boxes[other, 0, None]) & (xs < boxes[other, 2, None]) & (cols[None] < width[strip, None])
    in_y = (ys >= boxes[other, 1, None]) & (ys < boxes[other, 3, None]) & (rows[None] < height[strip, None])
    first = np.flatnonzero(np.r_[True, strip[1:] != strip[:-1]])
    covered = np.logical_or.reduceat(in_y[:, :, None] & in_x[:, None, :], first, axis=0)  # (S, h, w) per strip
    mine = strip[first]
    out[mine] = covered.sum(axis=(1, 2)) / (width[mine] * height[mine])
    return out


class GroundFeature(FeatureExtractor):
    """The strip of the frame just below each box: the ground the object stands on, in this very frame.

    Columns (D = 2): the strip's mean grey level and its texture (mean absolute difference between neighbouring
    pixels, along x and y). The strip is as wide as the box and ``depth`` x the box height deep (at least 2 rows),
    starting at the box's bottom edge; NaN when fewer than 2 of its rows or columns are in the frame (feet cut off
    by the bottom edge). A walkway and a lawn differ in both, wherever on them an object stands: a place model over these
    columns (the ``ground`` attribute) reads an unvisited spot of the walkway as normal and the lawn as not, where
    a density over footprint positions flags both. The object itself does not cover the strip; its shadow may,
    as it does on the training clips the model is fitted on.

    ``cover`` (None: off) leaves out a strip that other boxes of the same frame cover: when at least that share of its
    pixels lies inside another object's box, the feature is NaN (no value, as for a strip out of the frame). In a
    crowd the strip below a person is often the next person's legs or body, nearer the camera, not the ground.
    The object's own box never counts, so the bottom and shadow of a cart still read as its own ground.

    ``source="background"`` reads the strip in the clip's background instead of the frame: the per-pixel median of
    ``samples`` frames spread over the clip (offline), or of the frames seen so far, one every ``stride`` (a
    stream, whose later frames are not known yet). A box that is only a piece of a person (a head, a torso: its
    bottom is not at the feet), a box above a merged group or someone below it has the person's own body or other
    people in the frame's strip, not the ground; the background shows the ground there.
    """

    name = "ground"
    columns = ("ground_grey", "ground_texture")

    def __init__(self, depth: float = 0.15, source: str = "frame", samples: int = 40, stride: int = 5,
                 cover: Optional[float] = None):
        if not 0.0 < float(depth) <= 1.0:
            raise ValueError(f"depth must be a fraction of the box height in (0, 1], got {depth!r}")
        if cover is not None and not 0.0 < float(cover) <= 1.0:
            raise ValueError(f"cover must be a share of the strip in (0, 1] (or null = off), got {cover!r}")
        self.cover = None if cover is None else float(cover)
        if source not in GROUND_SOURCES:
            raise ValueError(f"source must be one of {GROUND_SOURCES}, got {source!r}")
        if int(samples) < 1 or int(stride) < 1:
            raise ValueError(f"samples and stride must be >= 1, got {samples!r} and {stride!r}")
        self.depth = float(depth)
        self.source, self.samples, self.stride = source, int(samples), int(stride)
        self._background: Optional[np.ndarray] = None
        self._seen: list[np.ndarray] = []  # a stream's sampled frames (source="background", no clip to read)
        self._stream_background: Optional[np.ndarray] = None  # their median
        self._last_index = -1

    def begin(self, clip: Clip) -> None:
        self._background, self._seen, self._stream_background, self._last_index = None, [], None, -1
        if self.source != "background":
            return
        from tao_lab.streaming import StreamInfo

        if isinstance(clip, StreamInfo) or clip.num_frames < 1:  # a stream's size and fps, no frames to read: its
            return  # background is sampled as the frames come (_strip_image)
        idx = np.unique(np.linspace(0, clip.num_frames - 1, min(self.samples, clip.num_frames)).round())
        frames = [grey_uint8(clip.frame(int(i))) for i in idx]
        self._background = _median(frames)

    def _strip_image(self, ctx: FrameContext) -> np.ndarray:
        if self.source == "frame":
            return ctx.grey
        if self._background is not None:
            return self._background
        if not self._seen or ctx.index - self._last_index >= self.stride:  # a stream: the frames so far
            self._seen = [*self._seen[-(self.samples - 1):], ctx.grey] if self.samples > 1 else [ctx.grey]
            self._last_index = ctx.index
            self._stream_background = _median(self._seen)
        return self._stream_background

    @property
    def dim(self) -> int:
        return 2

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        grey = self._strip_image(ctx)
        h, w = grey.shape
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.full((len(b), 2), np.nan, np.float32)
        top = np.clip(np.floor(b[:, 3]), 0, h).astype(np.int64)
        bottom = np.minimum(h, top + np.maximum(2, np.round(self.depth * (b[:, 3] - b[:, 1]))).astype(np.int64))
        left = np.clip(np.floor(b[:, 0]), 0, w).astype(np.int64)
        right = np.clip(np.ceil(b[:, 2]), 0, w).astype(np.int64)
        valid = (bottom - top >= 2) & (right - left >= 2)
        if self.cover is not None and len(b) > 1:
            strips = np.column_stack([left, top, right, bottom])
            valid &= strip_cover(strips, b) < self.cover
        # OpenCV's sums and absolute differences on uint8 views: five times faster than numpy's per-box calls
        for i in np.flatnonzero(valid):
            strip = grey[top[i]:bottom[i], left[i]:right[i]]
            dy, dx = cv2.absdiff(strip[1:], strip[:-1]), cv2.absdiff(strip[:, 1:], strip[:, :-1])
            out[i, 0] = cv2.sumElems(strip)[0] / strip.size
            out[i, 1] = 0.5 * (cv2.sumElems(dy)[0] / dy.size + cv2.sumElems(dx)[0] / dx.size)
        return out
