"""Per-clip background model for fixed cameras (weight-free; numpy + OpenCV only).

Used by :class:`tao_lab.detector.BackgroundSubtractionDetector` and by the weight-free segmenter.

How it copes with the usual troubles of fixed-camera surveillance video:
- **moving objects in the training frames**: the background is the per-pixel *median* of frames sampled evenly
  over the whole clip, so anything that stays at a pixel for less than half of the samples is not background;
  an object that stops for less than about half of the clip stays foreground while stopped (one that stands
  still for longer becomes background: a limit of any single per-clip model, documented rather than hidden);
- **global illumination drift / camera gain**: each frame is rescaled by a robust global gain (median over a sparse
  pixel grid of the per-pixel ratio background / frame) before differencing;
- **sensor / compression noise and dynamic pixels** (leaves, flicker): the foreground threshold is per pixel,
  ``max(min_threshold, k * sigma)``, where sigma is the robust (MAD) spread of the sampled frames around the
  background at that pixel;
- **cast shadows**: a pixel darker than the background by a ratio in ``shadow_ratio`` whose local texture is the
  background's texture scaled by that ratio is a shadow and is not foreground;
- **people standing still for half the clip or longer** (absorbed by any per-clip median): with
  ``background.scope: camera`` the per-clip median is replaced, where it disagrees with it, by a background
  fitted on the camera's training clips (:meth:`BackgroundModel.blend_camera`, :mod:`tao_lab.detector.camera`).

All images are grey float32 in grey levels (0..255) after a small Gaussian blur.
"""
from __future__ import annotations

import copy

from typing import Iterable, Optional

import cv2
import numpy as np

from tao_lab.frame_memo import FOREGROUNDS
from tao_lab.types import Clip

_MAD_TO_SIGMA = 1.4826


def to_grey(frame: np.ndarray, blur: int = 0) -> np.ndarray:
    """uint8 BGR (H,W,3) or grey (H,W) frame -> float32 (H,W) grey levels, optionally Gaussian-blurred."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    grey = grey.astype(np.float32)
    if blur and blur > 1:
        k = int(blur) | 1
        grey = cv2.GaussianBlur(grey, (k, k), 0)
    return grey


def median_over_frames(stack: np.ndarray) -> np.ndarray:
    """np.median(stack, axis=0) of a (S,H,W) float stack without NaNs, the same values computed faster: a sort
    along the samples costs a fifth of the partition np.median runs on this layout (60 Ped2 frames: 21 ms against
    99 ms); the middle value, or with an even count the mean of the two middle values as np.median takes it."""
    n = stack.shape[0]
    ordered = np.sort(stack, axis=0)
    if n % 2:
        return ordered[n // 2]
    return np.mean(ordered[n // 2 - 1:n // 2 + 1], axis=0)


def _seen_background(samples: np.ndarray, camera_bg: np.ndarray, tolerance: np.ndarray, seen_share: float,
                     own: np.ndarray) -> np.ndarray:
    """(H,W) per pixel the (lower) median of the samples (S,H,W) within ``tolerance`` of ``camera_bg``, where at least
    ``seen_share`` of the samples are; ``own`` elsewhere. Sorting with the other samples pushed to +inf gives the
    median of the agreeing ones without a per-pixel loop."""
    agree = np.abs(samples - camera_bg[None]) <= tolerance[None]
    count = agree.sum(axis=0)
    ordered = np.sort(np.where(agree, samples, np.inf), axis=0)
    middle = np.maximum(count - 1, 0) // 2
    median = np.take_along_axis(ordered, middle[None], axis=0)[0]
    seen = count >= max(1, int(np.ceil(seen_share * len(samples))))
    return np.where(seen, median, own).astype(np.float32)


class BackgroundModel:
    """Median background of one clip with brightness normalisation, per-pixel noise and shadow suppression.

    Args:
        num_samples: frames sampled evenly over the clip for the median (more = slower fit, better median).
        blur: Gaussian kernel size (px, odd; 0 = none) applied to every grey frame; removes JPEG blocking noise.
        normalize_brightness: rescale each frame by a global gain so that its median matches the background's.
        k: foreground when difference > k * per-pixel noise sigma (grey levels) ...
        min_threshold: ... and > this many grey levels (guards pixels whose sampled history is noise-free).
        shadow_ratio: (lo, hi) range of frame/background intensity ratio that may be a cast shadow; None = off.
        shadow_texture: max mean abs difference (grey levels, 5x5 window) between the frame's gradients and the
            ratio-scaled background gradients for a darker pixel to count as a shadow.
        morph: size (px) of the opening (removes speckle) and closing (fills holes) of the foreground mask;
            0 = no morphology.
    """

    def __init__(self, num_samples: int = 60, blur: int = 5, normalize_brightness: bool = True, k: float = 4.0,
                 min_threshold: float = 12.0, shadow_ratio: Optional[tuple[float, float]] = (0.45, 0.92),
                 shadow_texture: float = 3.0, morph: int = 3):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)
        self.blur = int(blur)
        self.normalize_brightness = bool(normalize_brightness)
        self.k = float(k)
        self.min_threshold = float(min_threshold)
        self.shadow_ratio = None if shadow_ratio is None else (float(shadow_ratio[0]), float(shadow_ratio[1]))
        self.shadow_texture = float(shadow_texture)
        self.morph = int(morph)
        self.background: Optional[np.ndarray] = None  # (H,W) float32 grey levels
        self.sigma: Optional[np.ndarray] = None  # (H,W) float32 robust noise per pixel (grey levels)
        self.threshold: Optional[np.ndarray] = None  # (H,W) float32 foreground threshold (grey levels)
        self._bg_grad: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._grid = (slice(None), slice(None))
        self._bg_grid: Optional[np.ndarray] = None
        self._samples: Optional[np.ndarray] = None  # (S,H,W) sampled frames, kept only for blend_camera(seen_share)

    #: The constructor's arguments, as :meth:`settings` gives them back.
    SETTINGS = ("num_samples", "blur", "normalize_brightness", "k", "min_threshold", "shadow_ratio", "shadow_texture",
                "morph")

    @classmethod
    def settings(cls, kwargs: Optional[dict] = None) -> dict:
        """``kwargs`` checked as the constructor checks them, with every default filled in and every value in the
        type the model keeps (a YAML list ``shadow_ratio`` becomes a tuple): two stages that spell the same model
        differently (the segmenter's ``background: {scope: camera}`` and the detector's written-out defaults) get
        equal settings, so they share the camera statistics and the fitted per-clip backgrounds
        (:class:`tao_lab.detector.camera.CameraBackgrounds`) instead of fitting them once each."""
        model = cls(**dict(kwargs or {}))
        return {name: getattr(model, name) for name in cls.SETTINGS}

    @property
    def nbytes(self) -> int:
        """Bytes of the fitted arrays a frame's difference reads (0 before fitting)."""
        arrays = (self.background, self.sigma, self.threshold, self._bg_grid, *(self._bg_grad or ()))
        return sum(a.nbytes for a in arrays if a is not None)

    # ------------------------------------------------------------------ fitting
    def fit(self, clip: Clip, keep_samples: bool = False) -> "BackgroundModel":
        """Fits the background of ``clip`` from ``num_samples`` evenly spaced frames (``keep_samples``: see
        :meth:`fit_frames`). Returns self."""
        n = clip.num_frames
        if n < 1:
            raise ValueError(f"clip {clip.clip_id} has no frames; cannot fit a background")
        idx = np.unique(np.linspace(0, n - 1, min(self.num_samples, n)).round().astype(int))
        return self.fit_frames((clip.frame(int(i)) for i in idx), keep_samples)

    def fit_frames(self, frames: Iterable[np.ndarray], keep_samples: bool = False) -> "BackgroundModel":
        """Fits the background from an iterable of uint8 frames (BGR or grey). Returns self.

        keep_samples: keep the sampled grey frames (brought to the background's brightness) until
        :meth:`blend_camera` with ``seen_share`` uses and drops them."""
        greys = [to_grey(f, self.blur) for f in frames]
        if not greys:
            raise ValueError("no frames to fit the background on")
        stack = np.stack(greys)
        bg = median_over_frames(stack).astype(np.float32)
        self._set_background(bg)
        if self.normalize_brightness:
            stack = np.stack([g * self._gain(g) for g in stack])
        if stack.shape[0] >= 3:
            sigma = _MAD_TO_SIGMA * median_over_frames(np.abs(stack - bg))
        else:
            sigma = np.zeros_like(bg)
        self._set_sigma(sigma)
        self._samples = stack.astype(np.float32) if keep_samples else None
        return self

    def _forget_foregrounds(self) -> None:
        """The model changed: differences kept under it (:meth:`frame_foreground`) no longer hold."""
        FOREGROUNDS.drop(self)

    def _set_background(self, bg: np.ndarray) -> None:
        self._forget_foregrounds()
        h, w = bg.shape
        self._grid = (slice(2, h, 4), slice(2, w, 4))  # sparse grid for the global gain (cheap, robust)
        self.background = bg.astype(np.float32)
        self._bg_grid = np.maximum(self.background[self._grid], 1.0)
        self._bg_grad = self._gradients(self.background)

    def _set_sigma(self, sigma: np.ndarray) -> None:
        self._forget_foregrounds()
        self.sigma = sigma.astype(np.float32)
        self.threshold = np.maximum(self.k * self.sigma, self.min_threshold).astype(np.float32)

    def replaced(self, background: Optional[np.ndarray] = None, sigma: Optional[np.ndarray] = None
                 ) -> "BackgroundModel":
        """A copy with the given (H,W) grey-level background and/or per-pixel noise put in place of this model's
        (the gain reference and the thresholds follow them); e.g. to take a camera background apart into its
        background and its noise (benchmarks/background_parts.py)."""
        self._check()
        out = copy.copy(self)
        out._samples = None
        if background is not None:
            out._set_background(np.asarray(background, np.float32))
        if sigma is not None:
            out._set_sigma(np.asarray(sigma, np.float32))
        return out

    def gain_to(self, reference: np.ndarray) -> float:
        """Global gain that brings this (fitted) background to the brightness of ``reference`` (H,W) grey levels:
        the median over the sparse grid of the per-pixel ratio reference / background."""
        self._check()
        return float(np.median(np.maximum(reference[self._grid], 1.0) / self._bg_grid))

    def blend_camera(self, camera_bg: np.ndarray, camera_sigma: np.ndarray, max_share: float = 1.0,
                     agreement: float = 0.5, seen_share: Optional[float] = None) -> tuple[np.ndarray, float]:
        """Replaces this clip's fitted background by the camera's where the two disagree, and its noise by the
        camera's everywhere.

        ``camera_bg`` / ``camera_sigma``: (H,W) float32 grey levels, fitted on the camera's training clips
        (:class:`tao_lab.detector.camera.CameraBackgrounds`). The clip's own median is first brought to the
        camera's brightness (one global gain: illumination differs between clips); a pixel *disagrees* when the
        two differ by more than ``agreement`` times the camera's foreground threshold
        ``max(min_threshold, k * camera_sigma)`` (cleaned by an opening, then dilated by ``morph`` px so the rim of
        an absorbed object goes too). Where they agree the clip's own median is kept (it follows the clip's own
        lighting); where they disagree (anyone the clip's median absorbed) the camera's is used. ``agreement`` < 1
        because a person standing for about half the clip leaves a median half-way between the floor and the
        person, which may agree with the camera within one threshold and still hide the person from it.
        The noise is the camera's everywhere: the clip's own (spread of its frames around its median) is inflated
        wherever someone stood for a large share of the clip, which again hides that person.
        ``seen_share`` (the ``blend: seen`` of the camera options; needs ``fit_frames(..., keep_samples=True)``):
        instead of the camera's background where the two disagree, every pixel gets the median of the clip's own
        sampled frames that agree with the camera's background there, when at least ``seen_share`` of them do,
        and the clip's own median otherwise. Where the clip shows the camera's background for a while (someone
        stood there for part of the clip) that is the background, in the clip's own light; where it never does (a
        patch of sunlight or shade that lasts the whole clip, a moved bench) the clip's own median stays, where
        the camera's background would mark the patch as foreground in every frame.
        Returns (disagreement mask (H,W) bool, its share of the frame). When the share exceeds ``max_share``
        (another camera, :meth:`tao_lab.detector.camera.CameraBackgrounds.model`) the model is left unchanged:
        the clip keeps its own background.
        """
        self._check()
        if camera_bg.shape != self.background.shape or camera_sigma.shape != self.background.shape:
            raise ValueError(f"camera background size {camera_bg.shape} (noise {camera_sigma.shape}) differs from "
                             f"the clip's {self.background.shape}")
        if not 0.0 < agreement:
            raise ValueError(f"agreement must be > 0 (a fraction of the camera's foreground threshold), got "
                             f"{agreement}")
        gain = self.gain_to(camera_bg) if self.normalize_brightness else 1.0
        own = self.background * gain
        camera_threshold = np.maximum(self.k * camera_sigma, self.min_threshold)
        disagree = np.abs(own - camera_bg) > agreement * camera_threshold
        if self.morph > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.morph, self.morph))
            disagree = cv2.morphologyEx(disagree.astype(np.uint8), cv2.MORPH_OPEN, kernel)
            disagree = cv2.dilate(disagree, kernel).astype(bool)
        share = float(disagree.mean())
        samples, self._samples = self._samples, None
        if share > max_share:
            return disagree, share
        if seen_share is None:
            self._set_background(np.where(disagree, camera_bg, own))
        else:
            if samples is None:
                raise RuntimeError("blend_camera(seen_share=...) needs the sampled frames: fit with keep_samples=True")
            self._set_background(_seen_background(samples * np.float32(gain), camera_bg, agreement * camera_threshold,
                                                  seen_share, own))
        self._set_sigma(camera_sigma)
        return disagree, share

    # ------------------------------------------------------------------ per frame
    def _check(self):
        if self.background is None:
            raise RuntimeError("BackgroundModel is not fitted: call fit(clip) first")

    @staticmethod
    def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)

    def normalized(self, frame: np.ndarray) -> np.ndarray:
        """Grey, blurred frame rescaled to the background's global brightness; (H,W) float32 grey levels."""
        self._check()
        grey = to_grey(frame, self.blur)
        if grey.shape != self.background.shape:
            raise ValueError(f"frame size {grey.shape} differs from the background's {self.background.shape}")
        if self.normalize_brightness:
            grey *= self._gain(grey)
        return grey

    def _gain(self, grey: np.ndarray) -> float:
        # median of per-pixel ratios on a sparse grid: 1 when the majority of the grid is unchanged background,
        # insensitive to the objects (a minority) whatever their brightness
        return float(np.median(self._bg_grid / np.maximum(grey[self._grid], 1.0)))

    def difference(self, frame: np.ndarray) -> np.ndarray:
        """Absolute difference to the background in grey levels, (H,W) float32; shadow pixels are set to 0."""
        grey = self.normalized(frame)
        diff = np.abs(grey - self.background)
        if self.shadow_ratio is not None:
            diff[self._shadow(grey)] = 0.0
        return diff

    #: pixels a shadow pixel's texture test reads on each side: the 3 x 3 gradient and the 5 x 5 blur of the texture
    _SHADOW_REACH = 3

    def _shadow(self, grey: np.ndarray) -> np.ndarray:
        bg = self.background
        ratio = grey / np.maximum(bg, 1.0)
        lo, hi = self.shadow_ratio
        darker = (ratio >= lo) & (ratio <= hi)
        rows = np.flatnonzero(darker.any(axis=1))
        if not len(rows):
            return darker
        # the texture test only where it can matter: the rows and columns holding darker pixels, and the reach
        # around them (a few percent of a frame is darker, within about half of it). Exact: a darker pixel reads
        # only pixels within the reach, and where the part ends at the frame's edge OpenCV's border rule reads the
        # same pixels as on the whole frame.
        cols = np.flatnonzero(darker.any(axis=0))
        r, (H, W) = self._SHADOW_REACH, darker.shape
        part = (slice(max(rows[0] - r, 0), min(rows[-1] + 1 + r, H)),
                slice(max(cols[0] - r, 0), min(cols[-1] + 1 + r, W)))
        gx, gy = self._gradients(np.ascontiguousarray(grey[part]))
        bx, by = (g[part] for g in self._bg_grad)
        ratio = ratio[part]
        # a shadow dims the background's texture (gradients scale by the ratio) but adds no texture of its own
        tex = np.abs(gx - ratio * bx) + np.abs(gy - ratio * by)
        tex = cv2.blur(tex, (5, 5)) * 0.5
        darker[part] &= tex <= self.shadow_texture
        return darker

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """Foreground mask (H,W) bool: difference above the per-pixel threshold, cleaned by opening/closing."""
        return self.clean(self.difference(frame) > self.threshold)

    def frame_foreground(self, frame: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`difference`, the cleaned foreground mask) of frame ``index`` of the clip this model was fitted for,
        computed once for every stage that asks: kept under this model in tao_lab.frame_memo.FOREGROUNDS (the
        detector's pass leaves them, the segmenter takes them). ``index`` must be the frame's index in that clip."""
        kept = FOREGROUNDS.get(self, index)
        if kept is not None:
            return kept
        diff = self.difference(frame)
        fg = self.clean(diff > self.threshold)
        FOREGROUNDS.put(self, index, (diff, fg))
        return diff, fg

    def clean(self, mask: np.ndarray) -> np.ndarray:
        """Opening (removes speckle) then closing (fills small holes) of a (H,W) bool mask, size ``morph``."""
        if self.morph <= 1:
            return mask.astype(bool)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.morph, self.morph))
        m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
        return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel).astype(bool)


class StreamBackground:
    """One :class:`BackgroundModel` for a whole stream (online), shared by the detector and the segmenter.

    Fitted once on the warm-up frames (:meth:`fit`); with ``refit_every`` > 0 it is refitted every that many frames
    from a reservoir of ``num_samples`` recent frames taken every ``refit_every // num_samples`` frames
    (:meth:`observe`). :meth:`foreground` computes a frame's difference and mask once, whoever asks first.
    """

    def __init__(self, kwargs: Optional[dict] = None, refit_every: int = 0):
        from collections import deque

        self.kwargs = dict(kwargs or {})
        self.refit_every = int(refit_every)
        self.model: Optional[BackgroundModel] = None
        self._reservoir: deque = deque()
        self._last: Optional[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = None

    def fit(self, clip: Clip) -> "StreamBackground":
        self.model = BackgroundModel(**self.kwargs).fit(clip)
        self._last = None
        return self

    def foreground(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(difference (H,W) float32, cleaned foreground mask (H,W) bool) of ``frame``, cached for the last frame."""
        if self.model is None:
            raise RuntimeError("the stream's background model is not fitted: warm the stream up first")
        if self._last is None or self._last[0] is not frame:
            diff = self.model.difference(frame)
            self._last = (frame, (diff, self.model.clean(diff > self.model.threshold)))
        return self._last[1]

    def observe(self, frame: np.ndarray, index: int) -> bool:
        """Keeps ``frame`` in the reservoir when due and refits when due; True when it refitted."""
        if self.refit_every <= 0 or self.model is None:
            return False
        n = max(1, self.model.num_samples)
        if index % max(1, self.refit_every // n) == 0:
            self._reservoir.append(frame)
            while len(self._reservoir) > n:
                self._reservoir.popleft()
        if index % self.refit_every == 0 and len(self._reservoir) >= 3:
            self.model = BackgroundModel(**self.kwargs).fit_frames(list(self._reservoir))
            self._last = None
            return True
        return False
