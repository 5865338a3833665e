"""Weight-free detector for fixed cameras: foreground blobs of a per-clip (or per-camera) background model."""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Optional

import cv2
import numpy as np

from tao_lab.detector.background import BackgroundModel
from tao_lab.detector.base import Detector, DetectorStream
from tao_lab.detector.camera import CameraBackgrounds, fit_background, split_background_options
from tao_lab.detector.motion_split import COLUMN_FLOWS, motion_cuts
from tao_lab.features.base import FlowEstimator
from tao_lab.features.flow_memo import SHARED_FLOWS, clip_key
from tao_lab.types import Clip, ObjectTable

log = logging.getLogger(__name__)
#: (foot_x, foot_y) px -> an expected blob height (px) there; elementwise on arrays of footprints
HeightMap = Callable[[float, float], float]


class BackgroundSubtractionDetector(Detector):
    """Connected foreground components of a :class:`BackgroundModel` fitted on each clip, as boxes.

    Groups of walkers often merge into one blob as wide as a bike or a cart. A blob wider than
    ``split_aspect`` times its height is split at the valleys of its column profile (the number of foreground
    pixels per column): places where the blob is much thinner than its peaks (below ``split_valley`` times the
    smaller neighbouring peak) separate two objects. Pieces narrower than ``min_width`` are not split off. With
    ``split_rows_valley`` > 0 each piece is cut the same way at the valleys of its row profile (walkers one behind
    the other, stacked in the image), each part holding at least ``split_rows_share`` of its pixels.
    With ``split_motion`` > 0 every piece is also cut where its left and right sides move apart in the optical flow
    to the previous frame (:mod:`tao_lab.detector.motion_split`: a biker beside walkers, walkers passing the other
    way); the flow is computed only on frames that have a piece wide enough to cut. With ``split_motion_rows`` each
    part is also cut once along a row where its upper and lower parts move apart (people one behind the other in
    depth, stacked in the image).

    Args:
        background: keyword arguments of :class:`BackgroundModel` (num_samples, blur, k, min_threshold, ...), plus
            ``scope``: "clip" (the clip's own median background, the default) or "camera" (fitted on the camera's
            training clips, which the pipeline hands over through :meth:`use_camera`; see
            :mod:`tao_lab.detector.camera`, with its options ``max_disagreement`` and ``max_clips``).
        min_area: smallest blob kept (foreground pixels).
        min_area_height: None (off) or a fraction: the smallest blob kept at a place is at most this x the square of
            the clip's expected blob height there (and at least ``min_area_floor``), so a camera's far people, a few
            pixels wide, stay objects while near ones still need ``min_area``. The expected height is the row cut's
            robust plane of blob height over footprint (:meth:`height_planes`; a clip with too few blobs to fit it
            keeps ``min_area`` everywhere).
            Online the plane is fitted the same way on the warm-up frames, against the stream's background.
        min_area_floor: with ``min_area_height``, the smallest blob kept anywhere (foreground pixels; at most
            ``min_area``, which a smaller ``min_area`` lowers it to).
        dilate: px of dilation before labelling, so a body split by the threshold (e.g. legs vs torso) stays one
            component; the box is taken from the undilated pixels of the component.
        dilate_height: None (off) or a fraction: the dilation at a pixel is this x the clip's expected blob height
            there tall (odd px, at least ``dilate``) and ``dilate`` px across, as without it, so on a camera whose
            near people are two or three times Ped2's the gaps the threshold leaves in one body (dark trousers on
            dark ground between a white top and the shoes) are bridged near the camera as they are far from it,
            where ``dilate`` alone is a hand's width. Only up and down: the pieces of one standing body lie
            above one another, while people side by side stay as far apart as with ``dilate``. The expected height
            is the upper-quartile plane of :meth:`height_planes` (fitted with ``dilate``), read for a pixel at the
            footprint of a body whose middle it is (:meth:`dilation_map`); a clip with too few blobs to fit it keeps
            ``dilate`` everywhere. Online, the same plane fitted on the warm-up frames.
        split_aspect: blobs with width > split_aspect * height are candidates for splitting (0 = never split).
        split_valley: a column-profile valley splits when it is below this fraction of both neighbouring peaks.
        min_width: minimum width (px) of a piece produced by splitting.
        score_scale: the box score is min(1, mean background difference inside the blob / score_scale); grey levels.
        split_motion: a piece is cut where the mean flows of its two sides differ by more than this (px/frame) and
            by more than ``split_motion_ratio`` times the faster side's speed (0 = never).
        split_motion_ratio: see ``split_motion``.
        split_motion_aspect: each part of a motion cut must be at least this many times its height wide (its box
            around its pixels; 0 = no bound).
        split_motion_rows: also cut each part once along a row, with the same settings (the aspect bound then keeps
            each part at least ``split_motion_rows_aspect`` times as tall as wide).
        split_motion_rows_aspect: each part of a row cut at least this many times its width tall (its box around its
            pixels; None = ``split_motion_aspect``, motion split round 3). 1.0 asks each part to be shaped like a
            standing person: the feet of one walker or half of a cart cut off along a row are flatter than that.
        split_motion_rows_flow: how each row's foreground pixels give its flow for the row cut: "median" (as the
            columns', round 3) or "mean" (a row through a walker's legs is all legs: their mean follows the body,
            their median falls to the still or the swinging leg).
        split_rows_valley: each column piece is also cut along the rows where its row profile (foreground pixels per
            row) falls below this fraction of its peaks above and below (0 = never): people one behind the other in
            depth, stacked in the image and joined by a thin bridge of foreground.
        split_rows_share: each part of a row cut holds at least this share of the piece's foreground pixels (a head
            above the neck, a foot below the ankle stay on their body).
        split_rows_length: each part of a row cut is at least this share of the blob's height tall (the legs below
            a gap the threshold left at the knees are shorter than that; the walker behind another is not).
        split_rows_height: only a blob at least this many times as tall as the clip's expected blob height at its
            footprint is cut along rows (one walker's legs and waist make valleys too; a stack of two does not fit
            one body's height). The expected height is a robust plane over the footprint
            (:func:`tao_lab.scorer.scene.fit_expected_height`) fitted on the unsplit blobs of
            ``split_rows_fit_frames`` frames spread over the clip (fewer than 20 blobs: no row cut in that clip).
            Online there is no row cut (no clip to fit on).
        flow: keyword arguments of :class:`tao_lab.features.FlowEstimator` for that flow (None = its defaults).
    Output: ``cls`` = 0, ``score`` in (0, 1], ``track_id`` = -1.
    """

    def __init__(self, background: Optional[dict] = None, min_area: int = 40, min_area_height: Optional[float] = None,
                 min_area_floor: int = 10, dilate: int = 5, dilate_height: Optional[float] = None,
                 split_aspect: float = 0.9, split_valley: float = 0.5, min_width: int = 6,
                 score_scale: float = 40.0, split_motion: float = 1.0, split_motion_ratio: float = 0.5,
                 split_motion_aspect: float = 0.25, split_motion_rows: bool = False,
                 split_motion_rows_aspect: Optional[float] = None, split_motion_rows_flow: str = "median",
                 split_rows_valley: float = 0.0, split_rows_share: float = 0.25,
                 split_rows_length: float = 0.4, split_rows_height: float = 1.35, split_rows_fit_frames: int = 30,
                 flow: Optional[dict] = None):
        if split_motion_rows_aspect is None:
            split_motion_rows_aspect = split_motion_aspect
        if min(split_motion, split_motion_ratio, split_motion_aspect, split_motion_rows_aspect) < 0:
            raise ValueError(f"detector.split_motion, split_motion_ratio, split_motion_aspect and "
                             f"split_motion_rows_aspect must be >= 0, got {split_motion!r}, {split_motion_ratio!r}, "
                             f"{split_motion_aspect!r} and {split_motion_rows_aspect!r}")
        self.background_kwargs, self.scope, self.camera_options = split_background_options(
            background, "detector.background")
        self.camera: Optional[CameraBackgrounds] = None
        self.min_area = int(min_area)
        if min_area_height is not None and not float(min_area_height) > 0:
            raise ValueError(f"detector.min_area_height must be a fraction > 0 or null (off), got {min_area_height!r}")
        self.min_area_height = None if min_area_height is None else float(min_area_height)
        if int(min_area_floor) < 1:
            raise ValueError(f"detector.min_area_floor must be >= 1 foreground pixel, got {min_area_floor!r}")
        self.min_area_floor = min(int(min_area_floor), self.min_area)  # never above min_area: the option only lowers it
        self.dilate = int(dilate)
        if dilate_height is not None and not float(dilate_height) > 0:
            raise ValueError(f"detector.dilate_height must be a fraction > 0 or null (off), got {dilate_height!r}")
        self.dilate_height = None if dilate_height is None else float(dilate_height)
        self.split_aspect = float(split_aspect)
        self.split_valley = float(split_valley)
        self.min_width = int(min_width)
        self.score_scale = float(score_scale)
        self.split_motion = float(split_motion)
        self.split_motion_ratio = float(split_motion_ratio)
        self.split_motion_aspect = float(split_motion_aspect)
        self.split_motion_rows = bool(split_motion_rows)
        self.split_motion_rows_aspect = float(split_motion_rows_aspect)
        if split_motion_rows_flow not in COLUMN_FLOWS:
            raise ValueError(f"detector.split_motion_rows_flow must be one of {COLUMN_FLOWS}, got "
                             f"{split_motion_rows_flow!r}")
        self.split_motion_rows_flow = split_motion_rows_flow
        if not (0 <= split_rows_valley < 1 and 0 <= split_rows_share < 0.5 and 0 <= split_rows_length < 0.5):
            raise ValueError(f"detector.split_rows_valley must be in [0, 1), split_rows_share and split_rows_length in "
                             f"[0, 0.5), got {split_rows_valley!r}, {split_rows_share!r} and {split_rows_length!r}")
        self.split_rows_valley = float(split_rows_valley)
        self.split_rows_share = float(split_rows_share)
        self.split_rows_length = float(split_rows_length)
        if split_rows_height <= 0 or split_rows_fit_frames < 1:
            raise ValueError(f"detector.split_rows_height must be > 0 and split_rows_fit_frames >= 1, got "
                             f"{split_rows_height!r} and {split_rows_fit_frames!r}")
        self.split_rows_height = float(split_rows_height)
        self.split_rows_fit_frames = int(split_rows_fit_frames)
        self.flow_estimator = FlowEstimator(**dict(flow or {}))

    def _motion(self, frame: np.ndarray, previous: Optional[np.ndarray], keep: Optional[Callable] = None
                ) -> Optional["_LazyFlow"]:
        """The on-demand motion of ``frame``'s pixels against ``previous`` (None: no motion split); ``keep(flow,
        grey, previous_grey)`` receives the flow once computed (for the features, which need the same flow of the
        same frame: tao_lab.features.flow_memo)."""
        if self.split_motion <= 0 or previous is None:
            return None
        return _LazyFlow(self.flow_estimator, frame, previous, keep)

    def use_camera(self, backgrounds: CameraBackgrounds) -> None:
        """The camera backgrounds of the run's training clips (given by the pipeline; used with scope=camera)."""
        self.camera = backgrounds

    def camera_settings(self) -> list[tuple[dict, int]]:
        """The background settings it asks the camera backgrounds for (tao_lab.detector.camera.camera_settings)."""
        return [(dict(self.background_kwargs), self.camera_options["max_clips"])] if self.scope == "camera" else []

    def background_model(self, clip: Clip) -> BackgroundModel:
        """The fitted background of ``clip``: its own median, or with scope=camera the camera's (with the
        per-clip fallbacks of :meth:`CameraBackgrounds.model`; no camera backgrounds given = none to use)."""
        return fit_background(clip, self.background_kwargs, self.scope, self.camera_options, self.camera)

    def detect(self, clip: Clip) -> ObjectTable:
        model = self.background_model(clip)
        plane, upper = self.height_planes(clip, model)
        height = plane if self.split_rows_valley > 0 else None  # the row cut's
        area_height = plane if self.min_area_height is not None else None  # min_area_height's
        dilation = self.dilation_map(upper, (clip.height, clip.width))
        rows_f, rows_b, rows_s = [], [], []
        previous = None
        key = clip_key(clip, self.flow_estimator.signature)
        for i, frame in enumerate(clip.frames()):
            diff, fg = model.frame_foreground(frame, i)  # kept for the segmenter when it uses the same model
            keep = partial(SHARED_FLOWS.put, key, i)
            boxes, scores = self.boxes_from_mask(fg, diff, self._motion(frame, previous, keep), height, area_height,
                                                 dilation)
            previous = frame
            rows_f.append(np.full(len(boxes), i))
            rows_b.append(boxes)
            rows_s.append(scores)
        if not rows_f:
            return ObjectTable.empty()
        frame = np.concatenate(rows_f)
        return ObjectTable.build(frame, np.concatenate(rows_b).reshape(-1, 4), np.concatenate(rows_s))

    def height_planes(self, clip: Clip, model: BackgroundModel,
                        foreground: Optional[Callable[[np.ndarray, int], np.ndarray]] = None
                        ) -> tuple[Optional[HeightMap], Optional[HeightMap]]:
        """Two maps (foot_x, foot_y) px -> the clip's expected blob height (px) there, fitted on the blobs of
        ``split_rows_fit_frames`` frames spread over the clip: the median plane, for the row cut and
        ``min_area_height``, and the upper-quartile plane, for ``dilate_height`` (:data:`DILATION_QUANTILE`). Each is
        None when no option reads it or the clip shows too few blobs to fit it on. ``foreground`` (frame, index) ->
        mask: how a frame's foreground is had (default: the model's, kept for the clip's stages)."""
        median_needed = self.split_rows_valley > 0 or self.min_area_height is not None
        if not median_needed and self.dilate_height is None:
            return None, None
        if foreground is None:
            foreground = lambda frame, i: model.frame_foreground(frame, i)[1]  # noqa: E731
        feet, heights = [], []
        for i in np.unique(np.linspace(0, len(clip) - 1, self.split_rows_fit_frames).round().astype(int)):
            frame = clip.frame(int(i))
            boxes, _ = self.boxes_from_mask(foreground(frame, int(i)))
            feet.append(np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]]))
            heights.append(boxes[:, 3] - boxes[:, 1])
        median = _height_plane(feet, heights) if median_needed else None
        upper = _height_plane(feet, heights, DILATION_QUANTILE) if self.dilate_height is not None else None
        return median, upper

    def stream(self, ctx) -> DetectorStream:
        """Online: the blobs of each frame against the stream's background model (fitted once on the warm-up
        frames, shared with the segmenter; ``ctx``: :class:`tao_lab.streaming.StreamContext`)."""
        if self.scope == "camera":
            log.info("detector.background.scope=camera is not available online: the stream's background is fitted "
                     "on its warm-up frames")
        background = ctx.background(self.background_kwargs)
        previous: list[Optional[np.ndarray]] = [None]
        plane: list[Optional[HeightMap]] = [None]
        dilation: list[Optional[DilationMap]] = [None]

        def fit_plane(warmup: Clip) -> None:
            """min_area_height and dilate_height online: the planes fitted on the warm-up frames against the stream's
            background, as offline on the clip's frames against the clip's (the masks are not kept under the model: a
            stream's frame indices are not the warm-up clip's)."""
            plane[0], upper = self.height_planes(warmup, background.model,
                                                 lambda frame, i: background.foreground(frame)[1])
            dilation[0] = self.dilation_map(upper, (warmup.height, warmup.width))

        if self.min_area_height is not None or self.dilate_height is not None:
            ctx.after_fit(fit_plane)

        def step(frame: np.ndarray) -> ObjectTable:
            diff, fg = background.foreground(frame)
            keep = partial(ctx.flows.put, self.flow_estimator.signature, 0)  # the stream's current frame
            boxes, scores = self.boxes_from_mask(fg, diff, self._motion(frame, previous[0], keep),
                                                 area_height=plane[0] if self.min_area_height is not None else None,
                                                 dilation=dilation[0])
            previous[0] = frame
            return ObjectTable.build(np.zeros(len(boxes)), boxes, scores)

        return DetectorStream(step)

    def boxes_from_mask(self, mask: np.ndarray, diff: Optional[np.ndarray] = None,
                        motion: Optional[Callable[..., np.ndarray]] = None,
                        height: Optional[HeightMap] = None, area_height: Optional[HeightMap] = None,
                        dilation: Optional[DilationMap] = None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K,4) xyxy float32 and scores (K,) of one frame's foreground mask (H,W) bool; ``motion`` (y1, y2,
        x1, x2) -> (y2-y1, x2-x1, 2) px/frame flow of the frame's pixels there, called only for a piece that may be
        cut by motion (None = no motion split); ``height`` (foot_x, foot_y) -> expected blob height px there
        (:meth:`height_planes`; None = no row cut); ``area_height`` the same for ``min_area_height`` (None: every
        blob needs ``min_area``); ``dilation`` ``dilate_height``'s map (:meth:`dilation_map`; None: ``dilate``
        everywhere)."""
        fg = mask.astype(np.uint8)
        grouped = dilation.apply(fg) if dilation is not None else _dilate(fg, self.dilate)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
        boxes, scores = [], []
        for lab in range(1, n):
            x, y, w, h, _ = stats[lab]
            comp = (labels[y:y + h, x:x + w] == lab) & (fg[y:y + h, x:x + w] > 0)
            if comp.sum() < self._min_area_at(x + w / 2, y + h, area_height):
                continue
            for x1, y1, x2, y2 in self._pieces(comp, (x, y), motion, height):
                piece = comp[y1:y2, x1:x2]
                area = int(piece.sum())
                if area < self.min_area_floor:
                    continue
                ys, xs = np.nonzero(piece)
                bx1, by1, bx2, by2 = x + x1 + xs.min(), y + y1 + ys.min(), x + x1 + xs.max() + 1, y + y1 + ys.max() + 1
                if area < self._min_area_at((bx1 + bx2) / 2, by2, area_height):
                    continue
                boxes.append((bx1, by1, bx2, by2))
                if diff is None:
                    scores.append(1.0)
                else:
                    d = diff[y + y1:y + y2, x + x1:x + x2][piece]
                    scores.append(min(1.0, float(d.mean()) / self.score_scale))
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)

    def dilation_map(self, plane: Optional[HeightMap], shape: tuple[int, int]) -> Optional[DilationMap]:
        """``dilate_height``'s dilation (odd px tall, ``dilate`` px wide) at every pixel of a (H, W) frame (None: the
        option is off or there is no plane). A pixel is taken as the middle of a body: the plane is read at the
        footprint half an expected height below it (one fixed-point step: h0 at the pixel's own row, then h at the row
        h0 / 2 below)."""
        if self.dilate_height is None or plane is None:
            return None
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        h0 = np.maximum(plane(xs, ys), 0.0)  # a plane extrapolated past the horizon goes below 0
        expected = np.maximum(plane(xs, ys + h0 / 2), 0.0)
        sizes = np.maximum(self.dilate, 2 * np.floor(self.dilate_height * expected / 2) + 1)
        return DilationMap(np.minimum(sizes, MAX_DILATION).astype(np.int32), self.dilate)

    def _min_area_at(self, foot_x: float, foot_y: float,
                     area_height: Optional[HeightMap]) -> float:
        """The smallest blob kept with its footprint at (foot_x, foot_y): ``min_area``, or with ``area_height``
        ``min_area_height`` x the expected height there squared, between ``min_area_floor`` and ``min_area``."""
        if area_height is None:
            return self.min_area
        expected = max(area_height(foot_x, foot_y), 0.0)  # a plane extrapolated past the horizon goes below 0
        return float(np.clip(self.min_area_height * expected * expected, self.min_area_floor, self.min_area))

    def _pieces(self, comp: np.ndarray, origin: tuple[int, int], motion: Optional[Callable[..., np.ndarray]],
                height: Optional[HeightMap] = None) -> list[tuple[int, int, int, int]]:
        """The profile pieces of a component (:meth:`_split`), each cut again where its sides move apart (with
        ``motion``)."""
        pieces = self._split(comp, origin, height)
        if motion is None:
            return pieces
        x, y = origin
        out = []
        for piece in pieces:
            parts = self._motion_cut(comp, piece, origin, motion)
            if self.split_motion_rows:
                parts = [row for part in parts for row in self._motion_cut(comp, part, origin, motion, rows=True)]
            out.extend(parts)
        return out

    def _motion_cut(self, comp: np.ndarray, part: tuple[int, int, int, int], origin: tuple[int, int],
                    motion: Callable[..., np.ndarray], rows: bool = False) -> list[tuple[int, int, int, int]]:
        """``part`` (x1, y1, x2, y2 in the component's box) cut once where its two sides move apart: its left and
        right sides, or with ``rows`` its upper and lower parts (objects stacked in the image at different depths:
        the same cut on the transposed part, with the aspect bound ``split_motion_rows_aspect``: each part at least
        that many times as tall as wide). A part too small to hold two parts is returned whole, and
        its frame's flow is not computed for it."""
        x1, y1, x2, y2 = part
        piece = comp[y1:y2, x1:x2]
        if (y2 - y1 if rows else x2 - x1) < 2 * self.min_width or piece.sum() < 2 * self.min_area:
            return [part]
        x, y = origin
        flow = motion(y + y1, y + y2, x + x1, x + x2)
        if rows:
            piece, flow = piece.T, flow.transpose(1, 0, 2)
        cuts = motion_cuts(piece, flow, self.min_width, self.min_area, self.split_motion, self.split_motion_ratio,
                           min_aspect=self.split_motion_rows_aspect if rows else self.split_motion_aspect,
                           column_flow=self.split_motion_rows_flow if rows else "median")
        if rows:
            return [(x1, y1 + a, x2, y1 + b) for a, b in cuts]
        return [(x1 + a, y1, x1 + b, y2) for a, b in cuts]

    def _split(self, comp: np.ndarray, origin: tuple[int, int] = (0, 0),
               height: Optional[HeightMap] = None) -> list[tuple[int, int, int, int]]:
        """Sub-boxes (x1,y1,x2,y2 relative to the component box at ``origin`` in the frame) of one component; the
        whole box if unsplit: its column-profile pieces, each taller than ``split_rows_height`` times ``height`` at
        its footprint cut again at the valleys of its row profile."""
        h, w = comp.shape
        columns = [(0, w)]
        if self.split_aspect > 0 and w > self.split_aspect * h and w >= 2 * self.min_width:
            columns = valley_cuts(comp.sum(axis=0), self.min_width, self.split_valley)
        if height is None:
            return [(a, 0, b, h) for a, b in columns]
        pieces = []
        for a, b in columns:
            rows = comp[:, a:b].sum(axis=1)
            filled = np.nonzero(rows)[0]
            cols = np.nonzero(comp[:, a:b].any(axis=0))[0]
            if len(filled) == 0:
                pieces.append((a, 0, b, h))
                continue
            top, bottom = int(filled[0]), int(filled[-1]) + 1
            foot_x = origin[0] + a + (cols[0] + cols[-1] + 1) / 2
            if bottom - top < self.split_rows_height * height(foot_x, origin[1] + bottom):
                pieces.append((a, 0, b, h))
                continue
            min_height = max(self.min_width, int(np.ceil(self.split_rows_length * (bottom - top))))
            cuts = valley_cuts(rows, min_height, self.split_rows_valley, self.split_rows_share)
            pieces.extend((a, y1, b, y2) for y1, y2 in cuts)
        return pieces


#: dilate_height: the largest dilation (px)
MAX_DILATION = 63
#: dilate_height reads the upper-quartile plane of blob height, not the median: on real colour video most blobs are
#: pieces of people (a head, a bag, the legs), and the median plane follows them (the partial Avenue copy's video 17
#: against a camera background of its other videos, label-free: blob heights p25 / 50 / 75 = 12 / 29 / 66 px where
#: its people are about 100-170 px tall; Ped2's training clips 27 / 32 / 39 for walkers of about 40).
DILATION_QUANTILE = 0.75


def _dilate(mask: np.ndarray, size: int, height: Optional[int] = None) -> np.ndarray:
    """``mask`` (uint8) dilated by an ellipse ``size`` px across and ``height`` px tall (None: ``size``; the mask
    itself for a 1x1 ellipse or smaller)."""
    height = size if height is None else height
    if max(size, height) <= 1:
        return mask
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(size, 1), max(height, 1))))


class DilationMap:
    """A dilation that varies over the frame: an ellipse ``width`` px across and ``heights`` (H, W) px tall at each
    pixel. :meth:`apply` dilates the whole mask once per distinct height and keeps each result where that height
    holds (a pixel is foreground when a foreground pixel lies within its own ellipse), so a frame costs one dilation
    per height band."""

    def __init__(self, heights: np.ndarray, width: int):
        self.heights, self.width = np.asarray(heights, np.int32), int(width)
        self.bands = [(int(h), self.heights == h) for h in np.unique(self.heights)]

    def apply(self, mask: np.ndarray) -> np.ndarray:
        if mask.shape != self.heights.shape:
            raise ValueError(f"dilation map of {self.heights.shape} applied to a mask of {mask.shape}")
        if len(self.bands) == 1:
            return _dilate(mask, self.width, self.bands[0][0])
        out = np.zeros_like(mask)
        for height, where in self.bands:
            out[where] = _dilate(mask, self.width, height)[where]
        return out


def _height_plane(feet: list[np.ndarray], heights: list[np.ndarray], quantile: float = 0.5) -> Optional[HeightMap]:
    """(foot_x, foot_y) px -> the expected blob height (px) there (a float, or an array of them for arrays of
    footprints): the scorer's robust plane of height over footprint (:func:`tao_lab.scorer.scene.fit_expected_height`,
    at ``quantile``) fitted on the blobs' feet (K, 2) and heights (K,) of some frames; None with fewer than 20
    blobs."""
    from tao_lab.scorer import scene

    heights_all = np.concatenate(heights) if heights else np.zeros(0)
    if len(heights_all) < 20:
        return None
    plane = scene.fit_expected_height(np.concatenate(feet), heights_all, quantile=quantile)  # px (a linear plane)

    def height_at(x, y):
        if np.ndim(x) == 0:
            return float(scene.expected_height(plane, np.array([[x, y]]))[0])
        return scene.expected_height(plane, np.column_stack([np.ravel(x), np.ravel(y)])).reshape(np.shape(x))

    return height_at


def valley_cuts(profile: np.ndarray, min_length: int, valley: float, min_share: float = 0.0
                ) -> list[tuple[int, int]]:
    """Consecutive [start, stop) parts of a blob's profile (foreground pixels per column or row), cut at the valleys:
    local minima of the profile (smoothed over 3 bins) below ``valley`` times the highest profile on either side.
    Each part is at least ``min_length`` bins long and, with ``min_share`` > 0, holds at least that share of the
    profile's pixels on each side of a cut (so a head above a neck or a foot below an ankle is not cut off a
    person). One part [0, len) when no valley qualifies."""
    raw = np.asarray(profile, np.float32)
    n = len(raw)
    smooth = np.convolve(raw, np.ones(3, np.float32) / 3, mode="same")
    cumulative = np.concatenate([[0.0], np.cumsum(raw, dtype=np.float64)])
    total = cumulative[-1]
    cuts: list[int] = []
    start = 0
    for c in range(min_length, n - min_length):
        if c - start < min_length:
            continue
        v = smooth[c]
        if v > smooth[c - 1] or v > smooth[c + 1]:
            continue  # not a local minimum
        before, after = smooth[start:c].max(), smooth[c + 1:].max()
        if v >= valley * min(before, after):
            continue
        if min_share > 0 and min(cumulative[c] - cumulative[start], total - cumulative[c]) < min_share * total:
            continue
        cuts.append(c)
        start = c
    edges = [0] + cuts + [n]
    return list(zip(edges[:-1], edges[1:]))


class _LazyFlow:
    """The motion (px/frame, the negated DIS flow to ``previous``, as tao_lab.features.FrameContext's) of
    ``frame``'s pixels in a region; the whole frame's flow is computed on the first call only, so a frame without a
    blob wide enough to cut pays for none (one flow of the frame is cheaper than one per blob: DIS's cost per call).
    ``keep(flow, grey, previous_grey)``, if given, receives the flow once computed (for the features, which need the
    same flow of the same frame: tao_lab.features.flow_memo)."""

    def __init__(self, estimator, frame: np.ndarray, previous: np.ndarray, keep: Optional[Callable] = None):
        self.estimator, self.frame, self.previous, self.keep = estimator, frame, previous, keep
        self.flow: Optional[np.ndarray] = None

    def __call__(self, y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
        """(y2-y1, x2-x1, 2) motion of the frame's pixels [y1:y2, x1:x2]."""
        if self.flow is None:
            from tao_lab.features.base import grey_uint8

            grey, previous = grey_uint8(self.frame), grey_uint8(self.previous)
            self.flow = -self.estimator(grey, previous)
            if self.keep is not None:
                self.keep(self.flow, grey, previous)
        return self.flow[y1:y2, x1:x2]
