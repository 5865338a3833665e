"""``segmenter=classical``: weight-free masks = foreground pixels inside each object's box (the default until masks
round 3; ``segmenter=learned``, the default now, replaces one step of it, tao_lab.segmenter.learned).

Per frame, every planned box (the prompt's box on prompt frames, the object's tracked box on carried frames; see
tao_lab.segmenter.carry) is cut out of the frame's foreground: from the clip's background model
(tao_lab.detector.background.BackgroundModel, fitted on the clip itself, or with ``background.scope: camera`` on the
camera's training clips, tao_lab.detector.camera) or from frame differencing (against the
median of a few neighbouring frames).
Holes are filled; optionally only the largest blob is kept, GrabCut refines the mask, and the mask becomes convex
hulls (``hull``: of each blob, or of the whole mask), the way annotators outline an object (rider and bike in one
polygon, the gap between the legs included) where the foreground has only its parts. When the box holds too
little foreground (a stopped object, a missed detection) the mask falls back to the filled box or its inscribed
ellipse, so an object is never dropped by the segmenter.

Pixel score (``pixel_score="object_x_strength"``, the default): a soft mask scaled by the object's anomaly score
``score`` on that frame:
- mask pixels: ``score x (floor + (1 - floor) x strength)``, where ``strength`` in [0, 1] is the pixel's foreground
  evidence (its background difference divided by the 90th percentile of the difference over the mask, lightly
  blurred);
- the rest of the object's (enlarged) box: ``score x box_score x (1 - d / reach)``, d = distance (px) to the
  mask, reach = half the box's larger side (box_score <= floor): a soft margin that fades away from the mask;
- with ``coherence`` on, mask pixels are also weighted by how well their optical flow agrees with the velocity of the
  object's track (``w = exp(-d^2 / 2 s^2)``, d = |flow - track velocity| in px/frame, s = max(``coherence_tolerance``
  x track speed, ``coherence_min_speed``)): when a box holds more than its object (a biker's box that took in the
  walkers beside it, a loiterer passed by walkers), the pixels moving differently from the object rank lower
  (``"score"``), or, beyond ``coherence_cut`` x s, leave the mask (``"mask"``, which also tightens the object's box
  for RBDC). Objects without a track velocity (untracked prompts) are not weighted. ``coherence_reference="fastest"``
  takes as the reference, instead of the track's velocity, the mean flow of the box's fastest cell (``coherence_cell``
  px square, over the mask's pixels): a biker tracked together with the walkers beside it moves the merged box's
  centre slowly, but its own pixels are the box's fastest (coherence rounds 1-2 measured the track reference failing
  there);
- everything else: 0.
Why: pooled pixel AUROC/AP/AUPRO rank every pixel of the test set. A constant per object ties all of an object's
pixels, so the mask border (least certain) ranks with its core; ranking by foreground evidence within an object
puts the most certain pixels first (precision, AP). Pixels of the box that the foreground missed (low-contrast
clothing, shadow-suppressed parts) are less likely object but far more likely than the background, so they come
after the object's mask and before the background: AUROC/AUPRO, which reward covering every GT region, keep the
coverage of the filled box. The object score stays the dominant (cross-object) factor. Chosen by this principle
and checked on the synthetic dataset, never tuned on test labels. The configured default turns the soft margin off
(``box_score: 0``, configs/segmenter/classical.yaml): on the runs' planted training-clip objects (val/pixel_*) the
margins of high-scoring objects outranked the masks of lower-scoring true ones, costing AP and F1 more than the
coverage they bought.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Optional

import cv2
import numpy as np
from scipy import ndimage

from tao_lab.features.flow_memo import SHARED_FLOWS, clip_key
from tao_lab.segmenter.base import SegmentationBuilder
from tao_lab.segmenter.boxes import CarryingSegmenter, box_slices
from tao_lab.types import Clip, ObjectScores, Prompts, Segmentation

log = logging.getLogger(__name__)

FOREGROUNDS = ("background_model", "frame_diff")
FALLBACKS = ("box", "ellipse", "none")
PIXEL_SCORES = ("object_x_strength", "object")
COHERENCE = ("none", "score", "mask")
COHERENCE_REFERENCES = ("track", "fastest")
HULLS = ("none", "component", "object")


def convex_hulls(mask: np.ndarray, per_component: bool) -> np.ndarray:
    """(h, w) bool: the convex hull of each 8-connected blob of ``mask`` (``per_component``) or of all its pixels,
    filled (pixel centres; the hull of pixels inside the array stays inside it)."""
    out = np.zeros(mask.shape, np.uint8)
    if per_component:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            cv2.fillConvexPoly(out, cv2.convexHull(contour), 1)
    else:
        points = cv2.findNonZero(mask.astype(np.uint8))
        if points is not None:
            cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool) | mask


class _FrameDifference:
    """Frame differencing without a clip-wide model: |g_t - median of the neighbours g_{t +- k gap}, k = 1..n| in
    grey levels. Against a single neighbour, a uniformly coloured mover only shows its leading and trailing edges;
    against the median of several neighbours far enough apart, every neighbour sees background where the object is
    now, so the object's interior shows too (objects that move less than about their own size over ``gap``
    frames stay partly hidden: the clip-wide background model does not have this limit)."""

    def __init__(self, clip: Clip, gap: int, neighbours: int, threshold: float, blur: int = 5, morph: int = 3):
        self.clip, self.gap, self.n = clip, max(int(gap), 1), max(int(neighbours), 1)
        self.threshold, self.blur, self.morph = float(threshold), int(blur), int(morph)
        self._cache: dict[int, np.ndarray] = {}

    def _grey(self, i: int, frame: Optional[np.ndarray] = None) -> np.ndarray:
        g = self._cache.get(i)
        if g is None:
            g = cv2.cvtColor(self.clip.frame(i) if frame is None else frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
            if self.blur > 1:
                g = cv2.GaussianBlur(g, (self.blur | 1, self.blur | 1), 0)
            if len(self._cache) > 8 * self.n:  # frames are visited in order: drop the oldest
                self._cache.pop(min(self._cache))
            self._cache[i] = g
        return g

    def __call__(self, t: int, frame: np.ndarray, as_decoded: bool = False) -> tuple[np.ndarray, np.ndarray]:
        g = self._grey(t, frame)
        idx = [t + s * k * self.gap for k in range(1, self.n + 1) for s in (-1, 1)]
        idx = [i for i in idx if 0 <= i < self.clip.num_frames]
        if not idx:
            diff = np.zeros_like(g)
        else:
            diff = np.abs(g - np.median(np.stack([self._grey(i) for i in idx]), axis=0))
        fg = diff > self.threshold
        if self.morph > 1:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.morph, self.morph))
            fg = cv2.morphologyEx(cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
        return diff.astype(np.float32), fg.astype(bool)


class _Background:
    def __init__(self, model):
        self.model = model

    def __call__(self, t: int, frame: np.ndarray, as_decoded: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(difference, foreground) of ``frame``; ``as_decoded``: it is frame ``t`` of the clip as read, not edited
        (the learned segmenter's training pastes objects into frames), so the detector's result for that frame may be
        taken (the same camera model: tao_lab.frame_memo.FOREGROUNDS)."""
        if as_decoded:
            return self.model.frame_foreground(frame, t)
        diff = self.model.difference(frame)
        return diff, self.model.clean(diff > self.model.threshold)


class ForegroundSegmenter(CarryingSegmenter):
    """Weight-free segmenter: foreground inside the (prompted or carried) box; see the module docstring.

    Args:
        foreground: "background_model" (per-clip median background, tao_lab.detector.background) or "frame_diff".
        background: keyword arguments of BackgroundModel (None = its defaults), plus ``scope``: "clip" (the clip's
            own median background, the default) or "camera" (fitted on the camera's training clips, handed over by
            the pipeline through :meth:`use_camera`; tao_lab.detector.camera, options ``max_disagreement`` and
            ``max_clips``). "camera" needs ``foreground="background_model"``.
        diff_gap: frame_diff: the neighbours are the frames t +- k * diff_gap, k = 1..diff_neighbours.
        diff_neighbours: frame_diff: neighbours on each side.
        diff_threshold: frame_diff: foreground when the difference exceeds this many grey levels.
        box_margin: the box is enlarged by this fraction of its width/height on each side before cutting the
            foreground (tracker boxes are often a few pixels short of the object).
        min_fg_fraction: below this fraction of foreground pixels in the box, use ``fallback``.
        fallback: mask when the box holds too little foreground: "box" (filled box), "ellipse", "none" (no mask).
        fill_holes: fill holes inside the mask (people in uniform clothes have low-contrast cores).
        largest_component: keep only the largest connected blob inside the box.
        hull: "none"; "component" (each connected blob of the mask becomes its convex hull: the gaps and concave
            parts of one blob are filled, separate blobs stay separate) or "object" (the mask becomes the convex hull
            of all its pixels: parts of one object that the foreground left apart join, and so do neighbours caught
            in the box). Hull pixels the foreground missed have strength 0 and score at the floor.
        grabcut: refine the mask with GrabCut (slow: it runs per object and frame; docs/MEASUREMENTS.md).
        grabcut_iters: GrabCut iterations.
        pixel_score: "object_x_strength" (the default, see the module docstring) or "object" (constant per object).
        strength_floor: the floor of the pixel score factor, in (0, 1].
        strength_blur: Gaussian sigma (px) applied to the strength map (0 = none).
        box_score: the pixels of the object's enlarged box outside its mask get up to ``box_score x score``,
            fading with the distance to the mask (a soft margin, see the module docstring; 0 = mask pixels only).
            At most ``strength_floor``.
        coherence: "none", "score" or "mask": weight mask pixels by the agreement of their optical flow with the
            object's track velocity (module docstring); "mask" also removes the pixels beyond ``coherence_cut``.
        coherence_tolerance: s = this fraction of the track's speed (px/frame) ...
        coherence_min_speed: ... but at least this (px/frame): flow noise, and a standing object.
        coherence_cut: "mask": pixels whose flow differs from the track's velocity by more than this many s leave
            the mask (a mask that would lose all its pixels is kept whole).
        coherence_reference: "track" (the object's track velocity) or "fastest" (the mean flow of the box's fastest
            cell of mask pixels; module docstring).
        coherence_cell: "fastest": the cell side (px).
        coherence_cell_height: "fastest": None, or the cell side as a fraction of the box's height when that is larger
            than ``coherence_cell`` (a tall object's fastest 8 px cell is a hand or a foot, not the object).
        flow: keyword arguments of tao_lab.features.FlowEstimator for the coherence flow (None = its defaults).
        max_carry, max_gap, carry_backward, min_track_iou, carry_score: the box plan (CarryingSegmenter).
    """

    def __init__(self, foreground: str = "background_model", background: Optional[dict] = None, diff_gap: int = 8,
                 diff_neighbours: int = 2, diff_threshold: float = 15.0, box_margin: float = 0.1,
                 min_fg_fraction: float = 0.05, fallback: str = "box", fill_holes: bool = True,
                 largest_component: bool = False, hull: str = "none", grabcut: bool = False, grabcut_iters: int = 3,
                 pixel_score: str = "object_x_strength", strength_floor: float = 0.25, strength_blur: float = 1.0,
                 box_score: float = 0.1, max_carry: int = 25, max_gap: int = 3,
                 carry_backward: int = 5, min_track_iou: float = 0.3, carry_score: str = "prompt",
                 coherence: str = "none", coherence_tolerance: float = 0.5, coherence_min_speed: float = 1.0,
                 coherence_cut: float = 2.0, coherence_reference: str = "track", coherence_cell: int = 8,
                 coherence_cell_height: Optional[float] = None, flow: Optional[dict] = None):
        super().__init__(max_carry, max_gap, carry_backward, min_track_iou, carry_score)
        for name, value, choices in (("foreground", foreground, FOREGROUNDS), ("fallback", fallback, FALLBACKS),
                                     ("pixel_score", pixel_score, PIXEL_SCORES), ("coherence", coherence, COHERENCE),
                                     ("coherence_reference", coherence_reference, COHERENCE_REFERENCES),
                                     ("hull", hull, HULLS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if not 0 < strength_floor <= 1:
            raise ValueError(f"strength_floor must be in (0, 1], got {strength_floor}")
        self.foreground = foreground
        from tao_lab.detector.camera import split_background_options

        self.background, self.scope, self.camera_options = split_background_options(background, "segmenter.background")
        if self.scope == "camera" and foreground != "background_model":
            # the configured default is scope camera; frame differencing has no background to take from the camera
            log.info("segmenter.background.scope=camera does not apply to foreground=%r (no background model): "
                     "ignored", foreground)
            self.scope = "clip"
        self.camera = None
        self.diff_gap = int(diff_gap)
        self.diff_neighbours = int(diff_neighbours)
        self.diff_threshold = float(diff_threshold)
        self.box_margin = float(box_margin)
        self.min_fg_fraction = float(min_fg_fraction)
        self.fallback = fallback
        self.fill_holes = bool(fill_holes)
        self.largest_component = bool(largest_component)
        self.hull = hull
        self.grabcut = bool(grabcut)
        self.grabcut_iters = int(grabcut_iters)
        self.pixel_score = pixel_score
        self.strength_floor = float(strength_floor)
        self.strength_blur = float(strength_blur)
        if not 0 <= box_score <= strength_floor:
            raise ValueError(f"box_score must be in [0, strength_floor], got {box_score}")
        self.box_score = float(box_score)
        for name, value in (("coherence_tolerance", coherence_tolerance), ("coherence_min_speed", coherence_min_speed),
                            ("coherence_cut", coherence_cut)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if int(coherence_cell) < 1:
            raise ValueError(f"coherence_cell must be >= 1 px, got {coherence_cell!r}")
        if coherence_cell_height is not None and not 0 < float(coherence_cell_height) <= 1:
            raise ValueError(f"coherence_cell_height must be a fraction of the box height in (0, 1] or null, got "
                             f"{coherence_cell_height!r}")
        self.coherence_cell_height = None if coherence_cell_height is None else float(coherence_cell_height)
        self.coherence = coherence
        self.coherence_reference = coherence_reference
        self.coherence_cell = int(coherence_cell)
        # the plan's boxes carry their tracks' velocities (only the track reference reads them)
        self.track_velocities = coherence != "none" and coherence_reference == "track"
        self.coherence_tolerance = float(coherence_tolerance)
        self.coherence_min_speed = float(coherence_min_speed)
        self.coherence_cut = float(coherence_cut)
        from tao_lab.features.base import FlowEstimator

        self.flow_estimator = FlowEstimator(**dict(flow or {}))  # pickles (rebuilt in a worker process)

    def pixel_flow(self, frame: np.ndarray, other: Optional[np.ndarray], other_is_previous: bool = True,
                   known: Optional[Callable[[np.ndarray, np.ndarray], Optional[np.ndarray]]] = None
                   ) -> Optional[np.ndarray]:
        """(H, W, 2) float32 motion of ``frame``'s pixels in px/frame (as tao_lab.features.FrameContext.flow: the
        negated flow to the previous frame, or the flow to the next one), or None without another frame.
        ``known(grey, previous_grey)``: that motion if another stage computed it already (else None)."""
        from tao_lab.features.base import grey_uint8

        if other is None:
            return None
        grey, other_grey = grey_uint8(frame), grey_uint8(other)
        if other_is_previous and known is not None:
            flow = known(grey, other_grey)
            if flow is not None:
                return flow
        flow = self.flow_estimator(grey, other_grey)
        return -flow if other_is_previous else flow

    def fastest_motion(self, flow: np.ndarray, box: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(2,) px/frame: the mean flow of the fastest square cell of the box (side ``coherence_cell`` px, or
        ``coherence_cell_height`` x the box's height when larger), over the cells where at least a quarter of the
        pixels are on ``mask`` (H, W) bool (every cell with a mask pixel if none is; the whole box if the mask has
        none there). Cells are laid from the box's top-left corner; the last ones may be smaller."""
        H, W = mask.shape
        x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x2, y2 = min(int(np.ceil(box[2])), W), min(int(np.ceil(box[3])), H)
        if x2 <= x1 or y2 <= y1:
            return np.zeros(2)
        h, w = y2 - y1, x2 - x1
        m = mask[y1:y2, x1:x2]
        if not m.any():
            m = np.ones_like(m)
        c = self.coherence_cell
        if self.coherence_cell_height is not None:
            c = max(c, int(round(self.coherence_cell_height * h)))
        rows, cols = -(-h // c), -(-w // c)
        pad = ((0, rows * c - h), (0, cols * c - w))
        mp = np.pad(m, pad).reshape(rows, c, cols, c).astype(np.float64)
        fp = np.pad(flow[y1:y2, x1:x2].astype(np.float64), (*pad, (0, 0))).reshape(rows, c, cols, c, 2)
        count = mp.sum(axis=(1, 3))
        # pixels of the box in each cell (the last row and column of cells may be cut by the box's edge)
        total = np.outer(np.minimum(c, h - c * np.arange(rows)), np.minimum(c, w - c * np.arange(cols)))
        mean = (fp * mp[..., None]).sum(axis=(1, 3)) / np.maximum(count, 1)[..., None]
        usable = count >= 0.25 * total
        if not usable.any():
            usable = count > 0
        speed = np.where(usable, np.hypot(mean[..., 0], mean[..., 1]), -1.0)
        r, q = np.unravel_index(int(np.argmax(speed)), speed.shape)
        return mean[r, q]

    def coherence_weight(self, flow: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """(h, w) float32 in (0, 1] over ``flow`` (h, w, 2): exp(-d^2 / 2 s^2), d = |flow - velocity| (module
        docstring)."""
        v = np.asarray(velocity, np.float64)
        s = max(self.coherence_tolerance * float(np.hypot(v[0], v[1])), self.coherence_min_speed)
        d2 = ((flow - v[None, None, :].astype(np.float32)) ** 2).sum(axis=-1)
        return np.exp(-0.5 * d2 / (s * s)).astype(np.float32)

    def _apply_coherence(self, mask: np.ndarray, factor: np.ndarray, flow: np.ndarray, item,
                         region: tuple[slice, slice]) -> np.ndarray:
        """The object's ``mask`` over its ``region`` (the enlarged box) after the coherence weight, whose values
        multiply ``factor`` (same shape) in place; with "mask", the pixels beyond ``coherence_cut`` x s leave the mask
        unless that would empty it. ``flow``: the whole frame's."""
        flow = flow[region]
        if self.coherence_reference == "fastest":
            x0, y0 = region[1].start or 0, region[0].start or 0
            reference = self.fastest_motion(flow, np.asarray(item.box, np.float64) - [x0, y0, x0, y0], mask)
        else:
            reference = item.velocity
        weight = self.coherence_weight(flow, reference)
        factor *= weight
        if self.coherence == "mask":
            kept = mask & (weight >= np.exp(-0.5 * self.coherence_cut ** 2))
            if kept.any():
                return kept
        return mask

    def use_camera(self, backgrounds) -> None:
        """The camera backgrounds of the run's training clips (given by the pipeline; used with scope=camera)."""
        self.camera = backgrounds

    def camera_settings(self) -> list[tuple[dict, int]]:
        """The background settings it asks the camera backgrounds for (tao_lab.detector.camera.camera_settings)."""
        return [(dict(self.background), self.camera_options["max_clips"])] if self.scope == "camera" else []

    def _foreground_model(self, clip: Clip):
        if self.foreground == "background_model":
            from tao_lab.detector.camera import fit_background

            return _Background(fit_background(clip, self.background, self.scope, self.camera_options, self.camera))
        return _FrameDifference(clip, self.diff_gap, self.diff_neighbours, self.diff_threshold)

    def _region(self, box: np.ndarray, H: int, W: int) -> tuple[slice, slice]:
        w, h = box[2] - box[0], box[3] - box[1]
        m = self.box_margin
        return box_slices(np.array([box[0] - m * w, box[1] - m * h, box[2] + m * w, box[3] + m * h]), H, W)

    def _fallback_mask(self, box: np.ndarray, H: int, W: int) -> np.ndarray:
        mask = np.zeros((H, W), dtype=bool)
        ys, xs = box_slices(box, H, W)
        if self.fallback == "box":
            mask[ys, xs] = True
        elif self.fallback == "ellipse" and ys.stop > ys.start and xs.stop > xs.start:
            cy, cx = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
            ry, rx = max((box[3] - box[1]) / 2, 0.5), max((box[2] - box[0]) / 2, 0.5)
            yy, xx = np.mgrid[ys, xs]
            mask[ys, xs] = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
        return mask

    def _grabcut(self, frame: np.ndarray, region: tuple[slice, slice], fg: np.ndarray) -> np.ndarray:
        ys, xs = region
        H, W = fg.shape
        pad_y, pad_x = max((ys.stop - ys.start) // 2, 4), max((xs.stop - xs.start) // 2, 4)
        cy = slice(max(ys.start - pad_y, 0), min(ys.stop + pad_y, H))
        cx = slice(max(xs.start - pad_x, 0), min(xs.stop + pad_x, W))
        gc = np.full((cy.stop - cy.start, cx.stop - cx.start), cv2.GC_BGD, np.uint8)
        inner = (slice(ys.start - cy.start, ys.stop - cy.start), slice(xs.start - cx.start, xs.stop - cx.start))
        gc[inner] = cv2.GC_PR_BGD
        gc[fg[cy, cx] & (gc == cv2.GC_PR_BGD)] = cv2.GC_PR_FGD
        if not (gc == cv2.GC_PR_FGD).any():
            return fg
        try:
            cv2.grabCut(np.ascontiguousarray(frame[cy, cx]), gc, None, np.zeros((1, 65), np.float64),
                        np.zeros((1, 65), np.float64), self.grabcut_iters, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            return fg
        out = np.zeros_like(fg)
        out[cy, cx] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        return out

    def object_mask(self, frame: np.ndarray, box: np.ndarray, diff: np.ndarray, fg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(mask (H,W) bool, strength (H,W) float32 in [0,1]) of one object with box ``box`` on one frame."""
        H, W = fg.shape
        region, sub_mask, sub_strength = self._object_in_region(frame, box, diff, fg)
        mask = np.zeros((H, W), dtype=bool)
        strength = np.zeros((H, W), dtype=np.float32)
        mask[region], strength[region] = sub_mask, sub_strength
        return mask, strength

    def _objects_in_regions(self, frame: np.ndarray, boxes: list, diff: np.ndarray, fg: np.ndarray) -> list:
        """:meth:`_object_in_region` of each of a frame's boxes (a subclass may do them together)."""
        return [self._object_in_region(frame, box, diff, fg) for box in boxes]

    def _object_in_region(self, frame: np.ndarray, box: np.ndarray, diff: np.ndarray, fg: np.ndarray
                          ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """(region, mask, strength): :meth:`object_mask` over the object's enlarged box only (outside it the mask is
        False and the strength 0), so a frame's objects cost their boxes' pixels, not the frame's."""
        H, W = fg.shape
        region = self._region(box, H, W)
        mask = fg[region].astype(bool)  # a copy
        if self.grabcut and mask.any():
            whole = np.zeros((H, W), dtype=bool)
            whole[region] = mask
            mask = self._grabcut(frame, region, whole)[region]
        mask = self.outline(mask)
        strength = np.zeros(mask.shape, dtype=np.float32)
        if self.too_little(mask, box):
            return region, self._fallback_mask(box, H, W)[region], strength
        sub_diff = diff[region]
        vals = sub_diff[mask]
        scale = float(np.percentile(vals, 90)) if len(vals) else 0.0
        if scale > 0:
            strength[:] = np.clip(sub_diff / scale, 0.0, 1.0)
            if self.strength_blur > 0:
                strength = cv2.GaussianBlur(strength, (0, 0), self.strength_blur)
        return region, mask, strength

    def outline(self, mask: np.ndarray) -> np.ndarray:
        """The object's mask from the pixels found in its enlarged box: the largest blob only
        (``largest_component``), holes filled (``fill_holes``), convex hulls (``hull``)."""
        if mask.any() and self.largest_component:
            labels, n = ndimage.label(mask)
            if n > 1:
                sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
                mask = labels == (1 + int(np.argmax(sizes)))
        if mask.any() and self.fill_holes:
            mask = ndimage.binary_fill_holes(mask)
        if mask.any() and self.hull != "none":
            mask = convex_hulls(mask, per_component=self.hull == "component")
        return mask

    def too_little(self, mask: np.ndarray, box: np.ndarray) -> bool:
        """Whether ``mask`` covers less than ``min_fg_fraction`` of the box (the fallback mask is used then)."""
        return mask.sum() < self.min_fg_fraction * max((box[2] - box[0]) * (box[3] - box[1]), 1.0)

    def soft_margin(self, box: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(H, W) float32 factor for the pixels of the enlarged box outside the mask: ``box_score`` next to the
        mask, falling linearly to 0 at half the box's larger side away from it; 0 outside the enlarged box."""
        H, W = mask.shape
        out = np.zeros((H, W), np.float32)
        region = self._region(box, H, W)
        out[region] = self._margin_in_region(box, mask[region])
        return out

    def _margin_in_region(self, box: np.ndarray, sub: np.ndarray) -> np.ndarray:
        """:meth:`soft_margin` over the enlarged box only (``sub``: the mask there)."""
        if self.box_score <= 0 or sub.size == 0:
            return np.zeros(sub.shape, np.float32)
        reach = max(0.5 * max(box[2] - box[0], box[3] - box[1]), 1.0)
        if sub.any():
            dist = cv2.distanceTransform((~sub).astype(np.uint8), cv2.DIST_L2, 3)
        else:
            dist = np.zeros(sub.shape, np.float32)
        return (self.box_score * np.clip(1.0 - dist / reach, 0.0, 1.0)).astype(np.float32)

    def segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores] = None) -> Segmentation:
        # flows the features left for this clip (FeatureSet.extract(leave_flows=True), same flow settings): exact;
        # what is not taken is dropped when the clip is done
        memo_key = clip_key(clip, self.flow_estimator.signature)
        try:
            return self._segment(clip, prompts, scores, partial(SHARED_FLOWS.take, memo_key))
        finally:
            SHARED_FLOWS.drop(memo_key)

    def _segment(self, clip: Clip, prompts: Prompts, scores: Optional[ObjectScores],
                 known_flow: Callable[[int, np.ndarray, np.ndarray], Optional[np.ndarray]]) -> Segmentation:
        T, H, W = clip.num_frames, clip.height, clip.width
        builder = SegmentationBuilder(T, H, W)
        plan = self.plan(prompts, scores, T)
        needed = [t for t in range(T) if plan[t]]
        if not needed:
            return builder.build()
        model = self._foreground_model(clip)
        previous: tuple[int, Optional[np.ndarray]] = (-2, None)  # (index, frame) of the last decoded frame
        for t in needed:
            frame = clip.frame(t)
            diff, fg = model(t, frame, as_decoded=True)
            items = plan[t]
            flow = None
            if self._wants_flow(items) and T > 1:
                if t > 0:
                    flow = self.pixel_flow(frame, previous[1] if previous[0] == t - 1 else clip.frame(t - 1),
                                           known=partial(known_flow, t))
                else:
                    flow = self.pixel_flow(frame, clip.frame(1), other_is_previous=False)
            previous = (t, frame)
            regions, masks, pix = zip(*self.masks_at(t, frame, items, diff, fg, scores, flow=flow))
            builder.set_frame_regions(t, [it.obj_id for it in items], list(regions), list(masks),
                                      [it.score for it in items], list(pix))
        return builder.build()

    def _wants_flow(self, items: list) -> bool:
        return self.coherence != "none" and any(self._has_reference(it) for it in items)

    def _has_reference(self, item) -> bool:
        """Whether ``item``'s pixels can be weighted: the fastest cell always; the track's velocity when known."""
        return self.coherence_reference == "fastest" or bool(np.isfinite(item.velocity).all())

    def masks_at(self, t: int, frame: np.ndarray, items: list, diff: np.ndarray, fg: np.ndarray,
                 scores: Optional[ObjectScores], flow: Optional[np.ndarray] = None) -> list[tuple]:
        """(region, mask, pixel scores) of each of frame ``t``'s planned items (:meth:`object_regions`); a subclass
        may read more of the frame's context from ``scores`` (pose_person: the detector class of each box)."""
        return self.object_regions(frame, items, diff, fg, flow=flow)

    def stream(self, ctx):
        """Online: with ``foreground="background_model"``, the current frame's masks from the stream's background
        model (fitted on the warm-up frames, shared with the detector); frame differencing needs frames on both
        sides of the current one, so it segments the ring buffer (the default)."""
        if self.foreground != "background_model":
            return super().stream(ctx)
        from tao_lab.segmenter.base import FrameSegmenterStream

        if self.scope == "camera":
            log.info("segmenter.background.scope=camera is not available online: the stream's background is fitted "
                     "on its warm-up frames")
        background = ctx.background(self.background)
        stream = FrameSegmenterStream(self, ctx, None)

        def masks_of(frame, items):
            previous = stream.previous_frame
            flow = self.pixel_flow(frame, previous) if self._wants_flow(items) and previous is not None else None
            return self.frame_masks(frame, items, *background.foreground(frame), flow=flow)

        stream.masks_of = masks_of
        return stream

    def frame_masks(self, frame: np.ndarray, items: list, diff: np.ndarray, fg: np.ndarray,
                    flow: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Masks (K,H,W) bool and pixel scores (K,H,W) float32 of one frame's planned objects: :meth:`object_regions`
        on the whole frame (the online step, :meth:`stream`, and subclasses that edit whole-frame masks)."""
        H, W = frame.shape[:2]
        masks = np.zeros((len(items), H, W), dtype=bool)
        pix = np.zeros((len(items), H, W), dtype=np.float32)
        for k, (region, mask, p) in enumerate(self.object_regions(frame, items, diff, fg, flow=flow)):
            masks[k][region] = mask
            pix[k][region] = p
        return masks, pix

    def object_regions(self, frame: np.ndarray, items: list, diff: np.ndarray, fg: np.ndarray,
                       flow: Optional[np.ndarray] = None) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
        """Per planned object (region, mask, pixel scores): its enlarged box's (rows, cols) slices and, on them, its
        mask (bool) and pixel scores (float32); nothing of the object lies outside its region.

        The pixel score is the object's anomaly score times the foreground strength factor on its mask (times the
        coherence weight when ``coherence`` is on and ``flow``, (H,W,2) px/frame of this frame's pixels, is given),
        plus the soft margin around it (see the class docstring).
        """
        out = []
        for it, (region, mask, strength) in zip(items, self._objects_in_regions(frame, [it.box for it in items],
                                                                                diff, fg)):
            factor = np.ones(mask.shape, np.float32) if self.pixel_score == "object" else \
                self.strength_floor + (1.0 - self.strength_floor) * strength
            if flow is not None and self.coherence != "none" and self._has_reference(it):
                mask = self._apply_coherence(mask, factor, flow, it, region)
            out.append((region, mask, (it.score * np.where(mask, factor, self._margin_in_region(it.box, mask))
                                       ).astype(np.float32)))
        return out
