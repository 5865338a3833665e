"""Planted anomalies: a normal clip with one synthetic anomalous object pasted into a stretch of its frames.

Used by the training-only validation (:mod:`tao_lab.validation.protocol`): scorer settings are compared on
held-out TRAINING clips with known planted anomalies, so no test label ever chooses a setting.

Two kinds of planted object, both placed where the training clips' own objects stand and scaled to the local size
of those objects (perspective):
- ``walker``: a foreground cut-out of a real object from ANOTHER training clip (so its appearance is normal),
  translated rigidly at an abnormal speed (a cyclist or skater stand-in: normal look, abnormal motion);
- ``box``: an opaque, textured, wider-than-tall object (a cart stand-in: abnormal look, walking-pace motion).
Planted objects enter through the frame border where the reference objects touch it (where people come in) and
move in a straight line at constant speed towards a place where a reference object stood.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator, Optional

import cv2
import numpy as np

from tao_lab.types import Clip, ObjectTable
from tao_lab.validation.crowd import Crowd


#: Units of :attr:`PlantSpec.speed`.
SPEED_UNITS = ("px", "normal")
#: px/frame of feet speed (:func:`feet_velocity`) at or below which a tracked object counts as standing, not moving:
#: the camera's normal pace (:func:`normal_moving_speed`) and the behaviour sets' scene statistics
#: (tao_lab/validation/behaviours.py) are measured on the objects above it.
STILL_SPEED = 0.2


@dataclass(frozen=True)
class PlantSpec:
    """One planted-anomaly set.

    name: label of the set in reports; kind: "walker" | "box"; speed: (lo, hi), drawn uniformly, in ``speed_unit``;
    speed_unit: "px" = px/frame; "normal" = multiples of the camera's normal moving speed (the median feet speed of
        the reference objects' tracks, :func:`normal_moving_speed`), so a set means the same on a camera whose people
        walk 0.9 px/frame and on one where they walk 1.5 (a fixed 1.5-2.5 px/frame "slow" walker is mildly fast on
        the first and an ordinary walker on the second);
    duration: (lo, hi) frames the object is pasted for, drawn uniformly (at most half the clip; shortened where it
        leaves the frame);
    cut_threshold: a walker is cut from its donor frame where it differs from the donor's background by more than
        this many grey levels (lower: the planted object keeps fainter parts).
    """

    name: str
    kind: str
    speed: tuple[float, float]
    duration: tuple[int, int] = (40, 80)
    cut_threshold: float = 20.0
    speed_unit: str = "px"

    def __post_init__(self):
        if self.kind not in ("walker", "box"):
            raise ValueError(f"plant {self.name!r}: kind must be 'walker' or 'box', got {self.kind!r}")
        if self.speed_unit not in SPEED_UNITS:
            raise ValueError(f"plant {self.name!r}: speed_unit must be one of {SPEED_UNITS}, got {self.speed_unit!r}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"plant {self.name!r}: speed must be (lo, hi) with 0 < lo <= hi, got {self.speed}")
        if not 1 <= self.duration[0] <= self.duration[1]:
            raise ValueError(f"plant {self.name!r}: duration must be (lo, hi) with 1 <= lo <= hi")
        if not self.cut_threshold > 0:
            raise ValueError(f"plant {self.name!r}: cut_threshold must be > 0 grey levels, got {self.cut_threshold}")


#: Ground-truth shapes of a planted object (:meth:`PlantedClip.object_mask`).
GT_SHAPES = ("pasted", "hull")


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the filled convex hull of a mask's pixels (the mask itself included; empty stays empty)."""
    if not mask.any():
        return mask.copy()
    ys, xs = np.nonzero(mask)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(filled, cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32)), 1)
    return filled.astype(bool) | mask


class PlantedClip(Clip):
    """``base`` with ``sprite`` (h,w,3 uint8, alpha h,w float in [0,1]) pasted with its top-left corner at
    ``top_left[i]`` (x, y floats; NaN = not in frame i), scaled by ``scale[i]`` (default 1: the sprite's own size;
    a per-frame scale lets an object grow and shrink as it moves in depth). ``labels`` (T,) bool marks the
    anomalous frames: by default every frame holding the object; behaviour plants (a loiterer that walks in
    normally, then stands) pass their own, a subset of the frames holding it.

    An animated object (a walker whose limbs move) passes a sequence of K sprites, (K,h,w,3) and alphas (K,h,w),
    and ``sprite_index`` (T,) int: the sprite pasted on frame i (default 0).

    ``occlusion``: the object is pasted behind the base clip's nearer objects (:func:`nearer_objects`: the moving
    objects of frame i whose lowest row lies below the planted object's, i.e. that stand nearer a camera looking down
    at the ground), as a real object farther away is hidden by them; its ground truth is then what stays visible.
    False (every caller before session 60, and the in-run validation): pasted over everything, so a cart planted
    farther away covers the upper body of a walker in front of it and leaves that walker's legs below the cart."""

    def __init__(self, base: Clip, sprite: np.ndarray, alpha: np.ndarray, top_left: np.ndarray, tag: str,
                 scale: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                 sprite_index: Optional[np.ndarray] = None, occlusion: bool = False):
        # the occluded copy is another clip (its own features in the stage cache); the pasted-over one keeps the
        # source every earlier round's cache entries were made under
        super().__init__(f"{base.clip_id}+{tag}", base.num_frames, base.height, base.width, base.fps, gt=None,
                         source=f"{base.source}+plant:{tag}" + (":behind" if occlusion else ""))
        self.occlusion = bool(occlusion)
        sprites = np.asarray(sprite, np.float32)
        alphas = np.asarray(alpha, np.float32)
        self.sprites = sprites if sprites.ndim == 4 else sprites[None]
        self.alphas = alphas if alphas.ndim == 3 else alphas[None]
        if self.sprites.shape[:3] != self.alphas.shape:
            raise ValueError(f"sprites {self.sprites.shape} and alphas {self.alphas.shape} differ in shape")
        self.base = base
        self.sprite, self.alpha = self.sprites[0], self.alphas[0]  # the first (the only one of a rigid object)
        self.top_left = np.asarray(top_left, np.float64)
        self.present = np.isfinite(self.top_left[:, 0])
        self.scale = np.ones(base.num_frames) if scale is None else np.asarray(scale, np.float64)
        self.labels = self.present.copy() if labels is None else np.asarray(labels, bool) & self.present
        self.sprite_index = np.zeros(base.num_frames, np.int64) if sprite_index is None else \
            np.asarray(sprite_index, np.int64)
        if len(self.sprite_index) != base.num_frames or not (
                (self.sprite_index >= 0) & (self.sprite_index < len(self.sprites))).all():
            raise ValueError(f"sprite_index must hold {base.num_frames} indices into {len(self.sprites)} sprites")

    def _warp(self, image: np.ndarray, i: int) -> np.ndarray:
        """``image`` (a sprite or its alpha) on frame i's grid: sub-pixel position and scale, bilinear."""
        x, y = self.top_left[i]
        s = float(self.scale[i])
        m = np.float32([[s, 0, x], [0, s, y]])
        return cv2.warpAffine(image, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)

    def _alpha(self, frame: np.ndarray, i: int) -> np.ndarray:
        """(H, W) float32: the object's opacity on base frame i (``frame``), zero behind nearer objects with
        ``occlusion``."""
        alpha = self._warp(self.alphas[self.sprite_index[i]], i)
        if self.occlusion:
            alpha = alpha * ~nearer_objects(self.base, frame, alpha >= 0.5)
        return alpha

    def _paste(self, frame: np.ndarray, i: int) -> np.ndarray:
        if not self.present[i]:
            return frame
        a = self._alpha(frame, i)[..., None]
        out = frame.astype(np.float32) * (1 - a) + self._warp(self.sprites[self.sprite_index[i]], i) * a
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def object_mask(self, i: int, shape: str = "pasted") -> np.ndarray:
        """(H, W) bool: the planted object's ground truth on frame i (all False when it is not in the frame).

        shape: "pasted" -- the pixels it covers (pasted alpha >= 0.5), exact; "hull" -- their convex hull, the way
        annotators draw an object's mask (Ped2's masks are hand-drawn polygons around the whole object: rider and
        bike together, the gaps between the legs included)."""
        if shape not in GT_SHAPES:
            raise ValueError(f"planted ground-truth shape must be one of {GT_SHAPES}, got {shape!r}")
        if not self.present[i]:
            return np.zeros((self.height, self.width), bool)
        if self.occlusion:
            mask = self._alpha(self.base.frame(i), i) >= 0.5
        else:
            mask = self._warp(self.alphas[self.sprite_index[i]], i) >= 0.5
        return convex_hull_mask(mask) if shape == "hull" else mask

    def _read(self, i: int) -> np.ndarray:
        return self._paste(self.base.frame(i), i)

    def _sequential(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for i, frame in enumerate(self.base.frames(start, stop), start):
            yield self._paste(frame, i)


#: base clip source -> its moving objects (tao_lab.validation.crowd.Crowd: its background is computed once for all the
#: clips planted on it); bounded, the oldest dropped first
_MOVING: dict[str, Crowd] = {}
_MOVING_MAX = 64


def nearer_objects(base: Clip, frame: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of ``frame`` (frame i of ``base``) that hide an object planted at ``planted`` (H, W)
    bool. The frame's moving objects are the pixels that differ from the base clip's median background
    (:class:`tao_lab.validation.crowd.Crowd`'s mask: holes closed, specks opened away, grown by 1 px); each connected
    part whose lowest row lies below the planted object's lowest row stands nearer the camera (on a ground plane seen
    from above, nearer is lower in the image) and hides it. A part that merges people at several depths counts as
    near as its lowest one. All False when nothing is planted on the frame."""
    rows = np.flatnonzero(planted.any(axis=1))
    if len(rows) == 0:
        return np.zeros(planted.shape, bool)
    moving = _MOVING.get(base.source)
    if moving is None:
        if len(_MOVING) >= _MOVING_MAX:
            _MOVING.pop(next(iter(_MOVING)))
        moving = _MOVING[base.source] = Crowd(base)
    mask = moving.mask(frame)
    if not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    lowest = stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT] - 1
    nearer = lowest > rows[-1]
    nearer[0] = False  # the background label
    return nearer[labels]


def _median_background(clip: Clip, samples: int = 40) -> np.ndarray:
    idx = np.unique(np.linspace(0, clip.num_frames - 1, min(samples, clip.num_frames)).astype(int))
    return np.median(np.stack([clip.frame(int(i)) for i in idx]), axis=0).astype(np.float32)


def _upright(donor: Clip, objects: ObjectTable, min_height: float, max_height: float) -> np.ndarray:
    """(N,) bool: detections taller than wide (1.3-4x) and ``min_height``-``max_height`` of the frame high."""
    wh = objects.xyxy[:, 2:] - objects.xyxy[:, :2]
    aspect = wh[:, 1] / np.maximum(wh[:, 0], 1)
    return (aspect >= 1.3) & (aspect <= 4.0) & (wh[:, 1] >= min_height * donor.height) \
        & (wh[:, 1] <= max_height * donor.height)


def _cut_out(donor: Clip, objects: ObjectTable, j: int, background: np.ndarray, threshold: float
             ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(crop uint8 (h,w,3), alpha float32 (h,w)) of detection j of ``donor``: its pixels differing from the median
    ``background`` by more than ``threshold`` grey levels (closed, then lightly blurred), or None when the box is
    tiny or less than 30 % of it is foreground (not one object standing out)."""
    x1, y1, x2, y2 = np.round(objects.xyxy[j]).astype(int)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, donor.width), min(y2, donor.height)
    if x2 - x1 < 4 or y2 - y1 < 8:
        return None
    crop = donor.frame(int(objects.frame[j]))[y1:y2, x1:x2]
    diff = np.abs(crop.astype(np.float32) - background[y1:y2, x1:x2]).max(axis=2)
    mask = cv2.morphologyEx((diff > threshold).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    if mask.mean() < 0.3:
        return None
    return crop.copy(), cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)


def cut_walker(donor: Clip, objects: ObjectTable, rng: np.random.Generator,
               min_height: float = 0.08, max_height: float = 0.35, threshold: float = 20.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """A foreground cut-out (sprite uint8 (h,w,3), alpha float (h,w)) of one single upright object of ``donor``:
    a detection taller than wide (1.3-4x), ``min_height``-``max_height`` of the frame high, mostly foreground; its
    pixels are those differing from the donor's median background by more than ``threshold`` grey levels."""
    if len(objects) == 0:
        raise ValueError(f"donor clip {donor.clip_id} has no objects to cut a sprite from")
    ok = _upright(donor, objects, min_height, max_height)
    candidates = np.flatnonzero(ok) if ok.any() else np.arange(len(objects))
    bg = _median_background(donor)
    for j in rng.permutation(candidates)[:50]:
        got = _cut_out(donor, objects, int(j), bg, threshold)
        if got is not None:
            return got
    raise ValueError(f"no usable object to cut a sprite from in donor clip {donor.clip_id}")


def cut_walker_sequence(donor: Clip, objects: ObjectTable, rng: np.random.Generator, min_height: float = 0.08,
                        max_height: float = 0.35, threshold: float = 20.0, min_frames: int = 8, max_frames: int = 40
                        ) -> tuple[np.ndarray, np.ndarray]:
    """An animated cut-out of one walker of ``donor``: its crops on ``min_frames``-``max_frames`` consecutive frames
    of its track (sprites (K,h,w,3) uint8, alphas (K,h,w) float32, every crop resized to the run's median box), so a
    pasted walker moves its limbs as it did. The frames qualify as :func:`cut_walker`'s single frame does (upright,
    ``min_height``-``max_height`` of the frame high, at least 30 % foreground against the donor's median
    background), and the box's height stays within 20 % of the run's median (a box merged with a neighbour for a
    frame breaks the run). Raises ValueError when no track has such a run."""
    if len(objects) == 0:
        raise ValueError(f"donor clip {donor.clip_id} has no objects to cut a sprite from")
    ok = _upright(donor, objects, min_height, max_height) & (objects.track_id >= 0)
    runs = []  # (track rows in frame order) of consecutive qualifying frames
    for tid in np.unique(objects.track_id[ok]):
        rows = np.flatnonzero(ok & (objects.track_id == tid))
        rows = rows[np.argsort(objects.frame[rows], kind="stable")]
        breaks = np.flatnonzero(np.diff(objects.frame[rows]) != 1) + 1
        runs += [r for r in np.split(rows, breaks) if len(r) >= min_frames]
    wh = objects.xyxy[:, 2:] - objects.xyxy[:, :2]
    bg = None
    for r in (runs[i] for i in rng.permutation(len(runs))[:20]):
        r = r[:max_frames]
        h = wh[r, 1]
        if np.abs(h / np.median(h) - 1).max() > 0.2:
            continue
        bg = _median_background(donor) if bg is None else bg
        size = (int(round(np.median(wh[r, 0]))), int(round(np.median(h))))
        sprites, alphas = [], []
        for j in r:
            got = _cut_out(donor, objects, int(j), bg, threshold)
            if got is None:
                break
            sprites.append(cv2.resize(got[0], size, interpolation=cv2.INTER_LINEAR))
            alphas.append(cv2.resize(got[1], size, interpolation=cv2.INTER_LINEAR))
        if len(sprites) >= min_frames:
            return np.stack(sprites), np.stack(alphas).astype(np.float32)
    raise ValueError(f"no track of donor clip {donor.clip_id} shows a walker on {min_frames} consecutive frames")


def gait_index(steps: np.ndarray, normal_speed: np.ndarray, num_sprites: int) -> np.ndarray:
    """(T,) int: which of an animated walker's ``num_sprites`` sprites to paste on each frame. The gait advances one
    sprite per frame of walking at the local normal speed (``steps`` (T,) px moved since the previous frame,
    ``normal_speed`` (T,) px/frame), so a fast walker's limbs move faster and a standing one's not at all; it runs
    back and forth over the sequence (0, 1, .., K-1, K-2, .., 1, 0, ..). NaN steps (not in frame) count 0."""
    if num_sprites <= 1:
        return np.zeros(len(steps), np.int64)
    rate = np.nan_to_num(np.asarray(steps, np.float64) / np.maximum(np.asarray(normal_speed, np.float64), 1e-6))
    phase = np.floor(np.cumsum(np.clip(rate, 0.0, 8.0))).astype(np.int64) % (2 * num_sprites - 2)
    return np.where(phase < num_sprites, phase, 2 * num_sprites - 2 - phase)


def make_box(height: int, rng: np.random.Generator, grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A cart-like opaque object: 1.2-1.6x wider than high, a base colour with darker/lighter blocks and edges
    (grey levels only when ``grey``: a colour object in a grey video would be too easy)."""
    h = max(6, int(height))
    w = max(8, int(round(h * rng.uniform(1.2, 1.6))))
    base = np.full(3, rng.uniform(30, 225)) if grey else rng.uniform(30, 225, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    for _ in range(int(rng.integers(3, 7))):  # panels and wheels
        bw, bh = int(rng.integers(2, max(3, w // 2))), int(rng.integers(2, max(3, h // 2)))
        bx, by = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        shift = np.full(3, rng.normal(0, 60)) if grey else rng.normal(0, 60, 3)
        img[by:by + bh, bx:bx + bw] = np.clip(base + shift, 0, 255)
    noise = rng.normal(0, 8, (h, w, 1 if grey else 3))
    img += noise
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), tuple(float(v) for v in np.clip(base * 0.4, 0, 255)), 1)
    return np.clip(img, 0, 255).astype(np.uint8), np.ones((h, w), np.float32)


def feet_velocity(objects: ObjectTable, lag: int) -> np.ndarray:
    """(N,2) px/frame of each object's feet over ``lag`` frames of its own track (NaN: untracked or too short)."""
    x1, _, x2, y2 = objects.xyxy.astype(np.float64).T
    feet = np.stack([(x1 + x2) / 2, y2], axis=1)
    vel = np.full((len(objects), 2), np.nan)
    order = np.lexsort((objects.frame, objects.track_id))
    tid, fr = objects.track_id[order], objects.frame[order]
    edges = np.concatenate([[0], np.flatnonzero(tid[1:] != tid[:-1]) + 1, [len(tid)]])
    for start, stop in zip(edges[:-1], edges[1:]):
        if tid[start] < 0 or stop - start <= lag:
            continue
        rows = order[start:stop]
        f, p = fr[start:stop], feet[rows]
        k = np.arange(len(rows) - lag)
        dt = (f[k + lag] - f[k]).astype(np.float64)
        ok = (dt > 0) & (dt <= 2 * lag)
        vel[rows[k[ok]]] = (p[k[ok] + lag] - p[k[ok]]) / dt[ok, None]
    return vel


def normal_moving_speed(tracks: list[ObjectTable], lag: int = 4, still: float = STILL_SPEED) -> Optional[float]:
    """The camera's normal moving speed (px/frame): the median speed of the feet (box bottom-centre) over ``lag``
    frames of the same track, over the tracked objects of ``tracks`` (one table per clip: track ids are per clip)
    that move faster than ``still`` px/frame (standing people are not the pace of walking). None when no tracked
    object moves (nothing to measure the pace by)."""
    vel = [feet_velocity(t, lag) for t in tracks if len(t)]
    speed = np.linalg.norm(np.concatenate(vel), axis=1) if vel else np.zeros(0)
    moving = speed[np.isfinite(speed) & (speed > still)]
    return float(np.median(moving)) if len(moving) else None


def _local_height(bottoms: np.ndarray, heights: np.ndarray, y: float) -> float:
    """Median height of the training objects whose bottom edge is nearest to row y (perspective scale)."""
    near = np.argsort(np.abs(bottoms - y))[:25]
    return float(np.median(heights[near]))


def plant(base: Clip, spec: PlantSpec, reference: ObjectTable, donor: Optional[tuple[Clip, ObjectTable]],
          rng: np.random.Generator, normal_speed: Optional[float] = None) -> PlantedClip:
    """``base`` with one planted object of ``spec``.

    reference: training objects (any clips) whose positions say where objects enter, where they stand and how tall
        they are there;
    donor: (clip, objects) to cut a walker from (required for kind="walker");
    normal_speed: px/frame that one unit of a ``speed_unit: normal`` spec is (:func:`normal_moving_speed` of the
        reference clips' tracks; required then, ignored for px).
    """
    if spec.speed_unit == "normal" and not (normal_speed is not None and normal_speed > 0):
        raise ValueError(f"plant {spec.name!r} gives its speed in multiples of the normal speed: pass normal_speed "
                         f"(px/frame, > 0), got {normal_speed!r}")
    unit = float(normal_speed) if spec.speed_unit == "normal" else 1.0
    if len(reference) == 0:
        raise ValueError("plant needs reference objects (positions and sizes of normal objects)")
    bottoms = reference.xyxy[:, 3]
    centres = (reference.xyxy[:, 0] + reference.xyxy[:, 2]) / 2
    heights = reference.xyxy[:, 3] - reference.xyxy[:, 1]
    T, H, W = base.num_frames, base.height, base.width
    first = base.frame(0).astype(np.int16)
    grey = bool(np.abs(first - first[..., :1]).max() <= 3)  # a grey video stored as 3 channels
    if spec.kind == "walker":
        if donor is None:
            raise ValueError("a walker plant needs a donor clip")
        sprite, alpha = cut_walker(donor[0], donor[1], rng, threshold=spec.cut_threshold)
    feet = np.stack([centres, bottoms], axis=1).astype(np.float64)
    x1, y1, x2, y2 = reference.xyxy.T
    # where objects come in: reference boxes touching the frame border (fallback: anywhere)
    at_border = np.flatnonzero((x1 <= 2) | (y1 <= 2) | (x2 >= W - 2) | (y2 >= H - 2))
    entries = at_border if len(at_border) else np.arange(len(reference))
    for _ in range(200):
        foot = feet[int(rng.choice(entries))]
        heading = feet[int(rng.integers(len(reference)))] - foot  # towards where a normal object stands
        if np.linalg.norm(heading) < 10:
            continue
        target_h = _local_height(bottoms, heights, foot[1])
        if spec.kind == "walker":
            s = target_h / sprite.shape[0]
            spr = cv2.resize(sprite, (max(3, round(sprite.shape[1] * s)), max(4, round(sprite.shape[0] * s))))
            alp = cv2.resize(alpha, (spr.shape[1], spr.shape[0]))
        else:
            spr, alp = make_box(0.8 * target_h, rng, grey=grey)
        h, w = alp.shape
        speed = rng.uniform(*spec.speed) * unit
        step = speed * heading / np.linalg.norm(heading)
        duration = int(rng.integers(spec.duration[0], spec.duration[1] + 1))
        duration = max(1, min(duration, T // 2))  # at least half the clip stays normal (negatives per clip)
        start = int(rng.integers(0, T - duration + 1))
        # The object enters through the frame border where normal objects enter (it never pops up mid-frame: the
        # flow of a pop-up frame is meaningless) and heads in a straight line towards where a normal object stood;
        # it is pasted, and labelled, in every frame where any part of it is inside the frame.
        reach = int(np.ceil((W + H + w + h) / max(speed, 1e-3))) + 1
        k = np.arange(-reach, duration)[:, None]
        tl = foot[None, :] + k * step[None, :] - np.array([w / 2, h])[None, :]
        visible = (tl[:, 0] < W) & (tl[:, 0] + w > 0) & (tl[:, 1] < H) & (tl[:, 1] + h > 0)
        if not visible.any() or visible[0]:
            continue
        first = int(np.argmax(visible))
        tl, visible = tl[first:first + duration], visible[first:first + duration]
        inside = visible & (np.cumsum(~visible) == 0)  # the stretch from entry until it leaves again
        if inside.sum() < max(10, spec.duration[0] // 2):
            continue
        top_left = np.full((T, 2), np.nan)
        top_left[start:start + duration][inside] = tl[inside]
        digest = hashlib.sha1(spr.tobytes() + alp.tobytes() + np.nan_to_num(top_left, nan=-1).tobytes()).hexdigest()
        return PlantedClip(base, spr, alp, top_left, f"{spec.name}:{digest[:10]}")
    raise ValueError(f"could not place a {spec.name!r} object in {base.clip_id} ({W}x{H}, {T} frames)")
