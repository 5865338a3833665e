"""The embedded default dataset: a procedural surveillance scene, deterministic from a seed, with exact GT.

Scene and conventions
---------------------
- Fixed camera looking at a walkway (like UCSD Ped2). The upper part of the frame (``y < 0.3 H``) is a textured
  lawn with a few static structures, the rest is a paved walkway. The background is the same for every clip of one
  generator (same seed = same scene), so train and test share it.
- **Walking direction convention**: normal pedestrians walk along the walkway, i.e. along the image x axis, in
  both directions (heading within +-``NORMAL_MAX_ANGLE_DEG`` of the x axis) at ``walk_speed`` px/frame.
  "Wrong-way" means walking *across* the walkway, along the y axis (heading within +-``CROSS_MAX_ANGLE_DEG`` of it).
- Training clips hold only normal pedestrians. Test clips add ``anomalies_per_clip`` anomalies drawn from
  ``anomaly_kinds`` (weights ``anomaly_weights``):

  ============ ==================================================================================================
  rider        person on a bicycle along the walkway at ``rider_speed`` px/frame (default 4-8)
  vehicle      large car-like object along the walkway at ``vehicle_speed`` px/frame (default 1.5-3.5)
  wrong_way    pedestrian crossing the walkway (along y) at ``walk_speed``
  loiter       pedestrian that walks in normally, then lingers (speed ``loiter_speed``, default <= 0.3 px/frame)
               for 30-60 % of the clip, then walks on; only the lingering frames are anomalous
  ============ ==================================================================================================

  With probability ``overlap_prob`` a rider/vehicle uses the lane of a pedestrian who is in view when it enters,
  so it passes over/behind that pedestrian (occlusion by depth order: lower feet = nearer = drawn on top).
- Perspective (option ``perspective``, default 1 = off, today's scene): with ``perspective=r`` > 1 the size AND the
  pixel speed of every object scale linearly with its feet row, ``r`` times larger on the nearest lane than on the
  farthest (1x in the middle of the walkway), like a camera looking along a ground plane. Objects keep the size of
  the row where they are drawn: exact for everything moving along x (all training objects, riders, vehicles,
  loiterers); a wrong-way walker (crossing along y) keeps the size and speed of row 0.7 H (an approximation). The
  background is not re-projected. With the default the clips (and their cache ``source``) are unchanged.
- Sensor: per-pixel Gaussian noise (``noise_sigma`` grey levels) and slow illumination drift (gain
  ``1 +- illumination_drift``, periods of 200-500 frames).

Ground truth (exact, computed from the object layout, not estimated)
-----------------------------------------------------------------
- ``mask(i)``: (H, W) bool, the *visible* pixels of anomalous objects in frame i (pixels hidden behind a nearer
  normal object are not anomalous).
- ``frame_labels``: (T,) bool, True iff ``mask(i).any()`` (an anomalous object is visible).
- ``tracks``: :class:`ObjectTable` with one row per anomalous object per frame in which it is visible;
  ``xyxy`` = bounding box of the object's own silhouette (occluders ignored) clipped to the frame, x2/y2
  exclusive; ``track_id`` = object id; ``cls`` = ``KIND_IDS[kind]``; ``score`` = 1.
- Every clip keeps its precomputed object trajectories in ``clip.objects`` (:class:`SynthObject`).

Frames are rendered on demand from the trajectories (never stored): uint8 (H, W, 3) BGR, same result whatever the
access order. Clip k of a split depends only on (seed, split, k, size and object parameters), not on how many
clips are generated.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from tao_lab.dataset.ucsd import write_ucsd_layout  # noqa: F401 - re-exported: write a generator to the UCSD layout
from tao_lab.types import Clip, ClipGT, Dataset, ObjectTable

GENERATOR_VERSION = 1  # bump when rendering or layout changes: it is part of every clip's ``source`` (cache keys)
KIND_IDS = {"pedestrian": 0, "rider": 1, "vehicle": 2, "wrong_way": 3, "loiter": 4}
ANOMALY_KINDS = ("rider", "vehicle", "wrong_way", "loiter")
NORMAL_MAX_ANGLE_DEG = 8.0
CROSS_MAX_ANGLE_DEG = 8.0
LAWN_FRACTION = 0.3  # rows above this fraction of H are lawn, below is the walkway
GAIT_PHASES = 8
_SPLIT_CODE = {"train": 0, "test": 1}
# sprite part codes -> indexes of the per-object colour table
_HEAD, _SHIRT, _PANTS, _DARK, _BODY, _GLASS = 1, 2, 3, 4, 5, 6


@dataclass
class SynthObject:
    """One object of a synthetic clip and its precomputed trajectory.

    The object exists in frames ``t0 .. t0 + len(cx) - 1``. ``cx, cy``: (L,) float64 centre of its sprite canvas
    (x right, y down, pixels, may lie outside the frame); ``phase``: (L,) int gait/pedal phase (sprite index);
    ``anomalous``: (L,) bool; ``speed``: nominal speed in px/frame (for loiter: speed while lingering);
    ``size``: (hs, ws) sprite canvas size.
    """

    oid: int
    kind: str
    t0: int
    cx: np.ndarray
    cy: np.ndarray
    phase: np.ndarray
    anomalous: np.ndarray
    speed: float
    size: tuple
    mirror: bool
    colors: np.ndarray  # (7, 3) float32 BGR level per part code
    tex_seed: int
    _sprites: dict = field(default_factory=dict, repr=False)

    @property
    def t1(self) -> int:
        return self.t0 + len(self.cx)

    def sprite(self, phase: int):
        """(img uint8 (hs, ws, 3), mask bool (hs, ws), (x0, y0, x1, y1) of the mask inside the canvas)."""
        s = self._sprites.get(phase)
        if s is None:
            s = self._sprites[phase] = _render_sprite(self, phase)
        return s

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_sprites"] = {}
        return d


class SyntheticClip(Clip):
    """A synthetic clip: renders frame i from the clip's object trajectories, background and sensor model."""

    #: GT track class -> anomaly kind (for the per-anomaly-type table of an eval run).
    kind_names = {v: k for k, v in KIND_IDS.items()}

    def __init__(self, clip_id: str, num_frames: int, height: int, width: int, fps: float, source: str,
                 scene: "_Scene", objects: list[SynthObject], gain: np.ndarray, offset: np.ndarray,
                 noise_bank: np.ndarray, noise_yx: np.ndarray):
        super().__init__(clip_id, num_frames, height, width, fps, None, source)
        self.scene = scene
        self.objects = objects
        self._gain = gain
        self._offset = offset
        self._bank = noise_bank
        self._noise_yx = noise_yx
        self._t0 = np.array([o.t0 for o in objects], dtype=np.int64)
        self._t1 = np.array([o.t1 for o in objects], dtype=np.int64)
        labels, tracks = self._ground_truth()
        self.gt = ClipGT(labels, self.mask, tracks)

    # --- layout of one frame -------------------------------------------------------------------------------
    def _layout(self, i: int):
        """[(obj, sprite, x0, y0)] of the objects present in frame i, far to near (drawing order)."""
        items = []
        for k in np.flatnonzero((self._t0 <= i) & (i < self._t1)):
            o = self.objects[k]
            j = i - o.t0
            hs, ws = o.size
            x0 = int(math.floor(o.cx[j] - ws / 2 + 0.5))
            y0 = int(math.floor(o.cy[j] - hs / 2 + 0.5))
            items.append((y0 + hs, o.oid, o, j, x0, y0))
        items.sort(key=lambda t: (t[0], t[1]))
        return [(o, j, o.sprite(int(o.phase[j])), x0, y0) for _, _, o, j, x0, y0 in items]

    def _window(self, x0: int, y0: int, hs: int, ws: int):
        """Frame slice and sprite slice of a sprite placed at (x0, y0), clipped to the frame (None if outside)."""
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + ws, self.width), min(y0 + hs, self.height)
        if fx0 >= fx1 or fy0 >= fy1:
            return None
        return (slice(fy0, fy1), slice(fx0, fx1)), (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))

    def _read(self, i: int) -> np.ndarray:
        frame = self.scene.background.copy()
        for o, j, (img, msk, _), x0, y0 in self._layout(i):
            w = self._window(x0, y0, msk.shape[0], msk.shape[1])
            if w is not None:
                np.copyto(frame[w[0]], img[w[1]], where=msk[w[1]][..., None])
        ny, nx = self._noise_yx[i]
        noise = self._bank[i % len(self._bank), ny:ny + self.height, nx:nx + self.width]
        # one pass: gain * frame + (noise - 128) + offset, saturated to uint8
        return cv2.addWeighted(frame, float(self._gain[i]), noise, 1.0, float(self._offset[i]) - 128.0)

    def _owner(self, i: int, layout=None) -> Optional[np.ndarray]:
        """(H, W) int32 index into ``layout`` of the object visible at each pixel (-1 = background)."""
        layout = self._layout(i) if layout is None else layout
        own = np.full((self.height, self.width), -1, dtype=np.int32)
        for k, (o, j, (_, msk, _), x0, y0) in enumerate(layout):
            w = self._window(x0, y0, msk.shape[0], msk.shape[1])
            if w is not None:
                own[w[0]][msk[w[1]]] = k
        return own

    def mask(self, i: int) -> np.ndarray:
        """(H, W) bool: visible pixels of anomalous objects in frame i."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"clip {self.clip_id}: frame {i} out of range [0, {self.num_frames})")
        layout = self._layout(i)
        anom = [k for k, (o, j, *_rest) in enumerate(layout) if o.anomalous[j]]
        if not anom:
            return np.zeros((self.height, self.width), dtype=bool)
        return np.isin(self._owner(i, layout), anom)

    def _ground_truth(self):
        labels = np.zeros(self.num_frames, dtype=bool)
        rows_f, rows_box, rows_id, rows_cls = [], [], [], []
        anom_objs = [k for k, o in enumerate(self.objects) if o.anomalous.any()]
        for i in range(self.num_frames):
            if not any(self._t0[k] <= i < self._t1[k] and self.objects[k].anomalous[i - self._t0[k]]
                       for k in anom_objs):
                continue
            layout = self._layout(i)
            own = self._owner(i, layout)
            for k, (o, j, (_, msk, (bx0, by0, bx1, by1)), x0, y0) in enumerate(layout):
                if not o.anomalous[j]:
                    continue
                w = self._window(x0, y0, msk.shape[0], msk.shape[1])
                if w is None or not (own[w[0]] == k).any():
                    continue
                labels[i] = True
                rows_f.append(i)
                rows_box.append((max(x0 + bx0, 0), max(y0 + by0, 0),
                                 min(x0 + bx1, self.width), min(y0 + by1, self.height)))
                rows_id.append(o.oid)
                rows_cls.append(KIND_IDS[o.kind])
        if rows_f:
            tracks = ObjectTable.build(np.array(rows_f), np.array(rows_box, dtype=np.float32), None,
                                       np.array(rows_id), np.array(rows_cls))
            order = np.lexsort((tracks.track_id, tracks.frame))
            tracks = tracks.take(order)
        else:
            tracks = ObjectTable.empty()
        return labels, tracks


class _Scene:
    """Static background (uint8 (H, W, 3) BGR) shared by all clips of one generator."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.background = _make_background(height, width, rng)
        self.walkway_level = float(self.background[int(height * LAWN_FRACTION) + 2:].mean())


class SyntheticGenerator:
    """Deterministic procedural dataset; see the module docstring for the scene, conventions and GT.

    Args (all sizes in pixels, speeds in px/frame, ranges are (low, high) uniform):
        seed: everything derives from it.
        num_train_clips, num_test_clips, num_frames, height, width, fps: dataset size.
        pedestrians: range of the number of normal pedestrians in view at once (walkers who leave are replaced).
        pedestrian_height: range of pedestrian heights as a fraction of ``height`` (nearer lanes are taller).
        walk_speed: normal (and wrong-way) walking speed.
        anomaly_kinds, anomaly_weights: which anomalies test clips get, and their relative rates.
        anomalies_per_clip: range (inclusive) of the number of anomalies per test clip.
        anomaly_start: range of the first frame of an anomaly as a fraction of ``num_frames``.
        rider_speed, vehicle_speed, loiter_speed: speeds of those anomalies.
        vehicle_length: range of the vehicle length as a fraction of ``width``.
        overlap_prob: probability that a rider/vehicle takes the lane of a visible pedestrian.
        noise_sigma: sensor noise std in grey levels; illumination_drift: relative amplitude of the gain drift.
        perspective: near/far ratio of object size and pixel speed across the walkway (1 = none, the default;
            see the module docstring).
    """

    def __init__(self, seed: int = 0, num_train_clips: int = 4, num_test_clips: int = 4, num_frames: int = 120,
                 height: int = 160, width: int = 240, fps: float = 25.0,
                 pedestrians: Sequence[int] = (3, 6), pedestrian_height: Sequence[float] = (0.17, 0.24),
                 walk_speed: Sequence[float] = (1.0, 2.0),
                 anomaly_kinds: Sequence[str] = ANOMALY_KINDS, anomaly_weights: Optional[Sequence[float]] = None,
                 anomalies_per_clip: Sequence[int] = (1, 2), anomaly_start: Sequence[float] = (0.05, 0.55),
                 rider_speed: Sequence[float] = (4.0, 8.0), vehicle_speed: Sequence[float] = (1.5, 3.5),
                 loiter_speed: Sequence[float] = (0.05, 0.3), vehicle_length: Sequence[float] = (0.28, 0.4),
                 overlap_prob: float = 0.5, noise_sigma: float = 3.0, illumination_drift: float = 0.06,
                 perspective: float = 1.0):
        kinds = [str(k) for k in anomaly_kinds]
        for k in kinds:
            if k not in ANOMALY_KINDS:
                raise ValueError(f"unknown anomaly kind {k!r}: expected some of {ANOMALY_KINDS}")
        if num_test_clips > 0 and not kinds and max(anomalies_per_clip) > 0:
            raise ValueError("anomaly_kinds is empty but anomalies_per_clip asks for anomalies")
        weights = [1.0] * len(kinds) if anomaly_weights is None else [float(w) for w in anomaly_weights]
        if len(weights) != len(kinds) or (kinds and sum(weights) <= 0):
            raise ValueError(f"anomaly_weights {anomaly_weights} must be {len(kinds)} non-negative numbers")
        if height < 32 or width < 32 or num_frames < 1:
            raise ValueError(f"frames must be at least 32x32 and num_frames >= 1, got {height}x{width}, "
                             f"{num_frames}")
        self.params = dict(
            seed=int(seed), num_train_clips=int(num_train_clips), num_test_clips=int(num_test_clips),
            num_frames=int(num_frames), height=int(height), width=int(width), fps=float(fps),
            pedestrians=_pair(pedestrians, int), pedestrian_height=_pair(pedestrian_height),
            walk_speed=_pair(walk_speed), anomaly_kinds=kinds, anomaly_weights=weights,
            anomalies_per_clip=_pair(anomalies_per_clip, int), anomaly_start=_pair(anomaly_start),
            rider_speed=_pair(rider_speed), vehicle_speed=_pair(vehicle_speed), loiter_speed=_pair(loiter_speed),
            vehicle_length=_pair(vehicle_length), overlap_prob=float(overlap_prob),
            noise_sigma=float(noise_sigma), illumination_drift=float(illumination_drift))
        if not perspective >= 1.0:
            raise ValueError(f"perspective must be >= 1 (near/far size ratio; 1 = none), got {perspective}")
        if perspective != 1.0:  # only then: the default keeps today's spec, hence today's cache keys
            self.params["perspective"] = float(perspective)
        p = self.params
        self._scene_rng_seed = [p["seed"], 7919]
        self._scene: Optional[_Scene] = None
        self._bank: Optional[np.ndarray] = None

    @property
    def scene(self) -> _Scene:
        if self._scene is None:
            p = self.params
            rng = np.random.default_rng(self._scene_rng_seed)
            self._scene = _Scene(p["height"], p["width"], rng)
            pad = 32
            bank = rng.normal(128.0, p["noise_sigma"], size=(4, p["height"] + pad, p["width"] + pad, 3))
            self._bank = np.clip(np.rint(bank), 0, 255).astype(np.uint8)
        return self._scene

    def spec(self) -> str:
        """Canonical string of the generator parameters (part of each clip's ``source``)."""
        return f"synthetic:v{GENERATOR_VERSION}|" + json.dumps(self.params, sort_keys=True)

    def clip(self, split: str, index: int) -> SyntheticClip:
        """Clip ``index`` (0-based) of ``split`` ('train' or 'test'); id 'Train001' / 'Test001' style."""
        if split not in _SPLIT_CODE:
            raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
        p = self.params
        scene = self.scene
        rng = np.random.default_rng([p["seed"], _SPLIT_CODE[split], int(index)])
        T, H, W = p["num_frames"], p["height"], p["width"]
        q = dict(p, _bg=scene.walkway_level)
        objects = _simulate_pedestrians(rng, q)
        if split == "test":
            objects += _simulate_anomalies(rng, q, objects)
        for k, o in enumerate(objects):
            o.oid = k
        t = np.arange(T)
        per1, per2 = rng.uniform(200, 500, 2)
        ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
        gain = 1.0 + p["illumination_drift"] * np.sin(2 * np.pi * t / per1 + ph1)
        offset = 4.0 * np.sin(2 * np.pi * t / per2 + ph2)
        pad = self._bank.shape[1] - H
        noise_yx = rng.integers(0, pad + 1, size=(T, 2))
        cid = f"{'Train' if split == 'train' else 'Test'}{index + 1:03d}"
        return SyntheticClip(cid, T, H, W, p["fps"], f"{self.spec()}|{split}|{index}", scene, objects,
                             gain, offset, self._bank, noise_yx)

    def dataset(self) -> Dataset:
        p = self.params
        return Dataset("synthetic",
                       [self.clip("train", k) for k in range(p["num_train_clips"])],
                       [self.clip("test", k) for k in range(p["num_test_clips"])])


def make_synthetic(seed: int = 0, num_train_clips: int = 4, num_test_clips: int = 4, num_frames: int = 120,
                   height: int = 160, width: int = 240, **kwargs) -> Dataset:
    """The default dataset: ``SyntheticGenerator(...).dataset()`` (4 train + 4 test clips of 120 frames at
    160x240 by default; other keyword arguments as in :class:`SyntheticGenerator`)."""
    return SyntheticGenerator(seed=seed, num_train_clips=num_train_clips, num_test_clips=num_test_clips,
                              num_frames=num_frames, height=height, width=width, **kwargs).dataset()


# ---------------------------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------------------------

def _pair(v, cast=float):
    v = list(v) if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") else [v, v]
    if len(v) != 2 or cast(v[0]) > cast(v[1]):
        raise ValueError(f"expected a (low, high) range, got {v!r}")
    return [cast(v[0]), cast(v[1])]


def _depth_scale(p, feet_y: float) -> float:
    """Size and pixel-speed factor of an object with its feet at row ``feet_y`` (1 without perspective): linear in
    the row, ``perspective`` times larger at the nearest lane than at the farthest, 1 in the middle."""
    r = p.get("perspective", 1.0)
    if r == 1.0:
        return 1.0
    H = p["height"]
    y0, y1 = (LAWN_FRACTION + 0.12) * H, 0.97 * H
    far, near = 2 / (1 + r), 2 * r / (1 + r)
    return float(max(0.15, far + (near - far) * (feet_y - y0) / (y1 - y0)))


def _ped_height(rng, p, feet_y: float) -> int:
    """Pedestrian height: drawn from the range, scaled 0.85-1.15 by depth (feet lower in the frame = nearer), or by
    ``_depth_scale`` with perspective."""
    H = p["height"]
    depth = 0.85 + 0.3 * np.clip((feet_y - LAWN_FRACTION * H) / ((1 - LAWN_FRACTION) * H), 0, 1)
    smallest = 12
    if p.get("perspective", 1.0) != 1.0:
        depth, smallest = _depth_scale(p, feet_y), 6
    return max(smallest, int(round(rng.uniform(*p["pedestrian_height"]) * H * depth)))


def _lane_feet_y(rng, p) -> float:
    H = p["height"]
    return rng.uniform((LAWN_FRACTION + 0.12) * H, 0.97 * H)


def _colors(rng, kind: str, bg_level: float) -> np.ndarray:
    """(7, 3) BGR levels per part code: greyish, contrast to the walkway of +-18..75 levels, slight tints."""
    def level():
        d = rng.uniform(18, 75) * rng.choice([-1.0, 1.0])
        return float(np.clip(bg_level + d, 25, 235))

    def tinted(v, amount=10.0):
        t = rng.normal(0, amount, 3)
        return np.clip(v + t - t.mean(), 10, 245)

    c = np.zeros((7, 3), dtype=np.float32)
    c[_HEAD] = tinted(rng.uniform(90, 190), 12)
    c[_SHIRT] = tinted(level())
    c[_PANTS] = tinted(level() * 0.8, 6)
    c[_DARK] = tinted(rng.uniform(25, 60), 3)
    c[_BODY] = tinted(level(), 14)
    c[_GLASS] = tinted(rng.uniform(40, 80), 6)
    return c


def _walker(rng, p, t0: int, T: int, feet_y: float, speed: float, heading: float, x: Optional[float] = None,
            kind: str = "pedestrian", enter: str = "x") -> SynthObject:
    """Constant-velocity walker until its sprite leaves the frame or the clip ends.

    Starts at (x, feet_y) or, when x is None, just outside the frame edge it walks in from (``enter`` = 'x':
    left/right edge at height feet_y; 'y': top/bottom edge at column x).
    """
    H, W = p["height"], p["width"]
    h = _ped_height(rng, p, feet_y)
    hs, ws = h, max(7, int(math.ceil(0.62 * h)))
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    cx0, cy0 = x, feet_y - hs / 2
    if enter == "x" and x is None:
        cx0 = _entry(vx, ws, W)
    elif enter == "y":
        cy0 = _entry(vy, hs, H)
    n = _frames_until_exit(cx0, cy0, vx, vy, ws, hs, W, H, T - t0)
    tt = np.arange(n)
    phase = _gait(speed * tt, 0.7 * h, rng)
    return SynthObject(0, kind, t0, cx0 + vx * tt, cy0 + vy * tt, phase, np.full(n, kind != "pedestrian"),
                       float(speed), (hs, ws), bool(vx < 0), _colors(rng, kind, p["_bg"]), int(rng.integers(2**31)))


def _gait(dist: np.ndarray, stride: float, rng) -> np.ndarray:
    return (np.floor((dist / stride + rng.uniform()) * GAIT_PHASES) % GAIT_PHASES).astype(np.int8)


def _frames_until_exit(x, y, vx, vy, ws, hs, W, H, limit) -> int:
    """Frames (>= 1, <= limit) until a sprite moving from (x, y) at (vx, vy) is entirely outside the frame."""
    n = limit
    for pos, v, half, size in ((x, vx, ws / 2, W), (y, vy, hs / 2, H)):
        if v > 1e-9:
            n = min(n, int(math.ceil((size + half - pos) / v)) + 1)
        elif v < -1e-9:
            n = min(n, int(math.ceil((pos + half) / -v)) + 1)
    return max(1, n)


def _entry(v: float, size: float, extent: int) -> float:
    """Centre coordinate that puts a sprite of ``size`` one pixel inside the edge it enters from (velocity v)."""
    return -size / 2 + 1 if v > 0 else extent + size / 2 - 1


def _simulate_pedestrians(rng, p) -> list[SynthObject]:
    """Normal walkers: ``pedestrians`` slots; each slot's walker is replaced 0-30 frames after it leaves."""
    T, W = p["num_frames"], p["width"]
    objs = []
    for _ in range(int(rng.integers(p["pedestrians"][0], p["pedestrians"][1] + 1))):
        t = 0
        first = True
        while t < T:
            direction = rng.choice([-1.0, 1.0])
            heading = (0.0 if direction > 0 else math.pi) + math.radians(rng.uniform(-1, 1) * NORMAL_MAX_ANGLE_DEG)
            speed = rng.uniform(*p["walk_speed"])
            feet = _lane_feet_y(rng, p)
            speed *= _depth_scale(p, feet)
            x = rng.uniform(0.05 * W, 0.95 * W) if first else None  # the first ones are already in view
            o = _walker(rng, p, t, T, feet, speed, heading, x)
            objs.append(o)
            first = False
            t = o.t1 + int(rng.integers(0, 31))
    return objs


def _simulate_anomalies(rng, p, peds: list[SynthObject]) -> list[SynthObject]:
    T, H, W = p["num_frames"], p["height"], p["width"]
    kinds, weights = p["anomaly_kinds"], np.asarray(p["anomaly_weights"], dtype=float)
    out = []
    if not kinds:
        return out
    n = int(rng.integers(p["anomalies_per_clip"][0], p["anomalies_per_clip"][1] + 1))
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        t0 = min(T - 1, int(rng.uniform(*p["anomaly_start"]) * T))
        direction = rng.choice([-1.0, 1.0])
        if kind in ("rider", "vehicle"):
            visible = [o for o in peds if o.t0 <= t0 < o.t1]
            if visible and rng.uniform() < p["overlap_prob"]:
                o = visible[int(rng.integers(len(visible)))]
                feet = float(o.cy[t0 - o.t0] + o.size[0] / 2)
            else:
                feet = _lane_feet_y(rng, p)
            rng_speed = p["rider_speed"] if kind == "rider" else p["vehicle_speed"]
            speed = rng.uniform(*rng_speed) * _depth_scale(p, feet)
            heading = (0.0 if direction > 0 else math.pi) + math.radians(rng.uniform(-1, 1) * 3.0)
            vx, vy = speed * math.cos(heading), speed * math.sin(heading)
            if kind == "rider":
                ph = _ped_height(rng, p, feet)
                hs, ws = int(round(1.05 * ph)), int(round(0.95 * ph))
            else:
                ws = int(round(rng.uniform(*p["vehicle_length"]) * W * _depth_scale(p, feet)))
                hs = int(round(ws * rng.uniform(0.45, 0.6)))
                feet = max(feet, LAWN_FRACTION * H + hs)
            x0, y0 = _entry(vx, ws, W), min(feet, H) - hs / 2
            m = _frames_until_exit(x0, y0, vx, vy, ws, hs, W, H, T - t0)
            tt = np.arange(m)
            phase = (np.floor(speed * tt / (0.5 * hs) * 4) % 4).astype(np.int8) if kind == "rider" else \
                np.zeros(m, np.int8)
            out.append(SynthObject(0, kind, t0, x0 + vx * tt, y0 + vy * tt, phase, np.ones(m, bool), float(speed),
                                   (hs, ws), bool(vx < 0), _colors(rng, kind, p["_bg"]), int(rng.integers(2**31))))
        elif kind == "wrong_way":
            down = rng.uniform() < 0.5
            heading = (math.pi / 2 if down else -math.pi / 2) + math.radians(rng.uniform(-1, 1) * CROSS_MAX_ANGLE_DEG)
            speed = rng.uniform(*p["walk_speed"]) * _depth_scale(p, H * 0.7)
            x = rng.uniform(0.15 * W, 0.85 * W)
            out.append(_walker(rng, p, t0, T, H * 0.7, speed, heading, x, kind="wrong_way", enter="y"))
        else:  # loiter: walk in, linger around a point, walk on
            speed = rng.uniform(*p["walk_speed"])
            feet = _lane_feet_y(rng, p)
            speed *= _depth_scale(p, feet)
            o = _walker(rng, p, t0, T, feet, speed, 0.0 if direction > 0 else math.pi, None, kind="loiter")
            hs, ws = o.size
            xe = float(o.cx[0])
            xs = rng.uniform(0.25 * W, 0.75 * W)
            walk_in = max(1, int(abs(xs - xe) / speed))
            linger = max(10, int(rng.uniform(0.3, 0.6) * T))
            lspeed = rng.uniform(*p["loiter_speed"]) * _depth_scale(p, feet)
            radius = rng.uniform(1.0, 3.0)
            omega = lspeed / radius  # rad/frame: the point moves on a circle at lspeed px/frame
            phi = rng.uniform(0, 2 * np.pi)
            cy = feet - hs / 2
            xs_walk = xe + direction * speed * np.arange(walk_in)
            x_start_l = xe + direction * speed * walk_in
            tl = np.arange(linger)
            x_l = x_start_l + radius * (np.cos(omega * tl + phi) - np.cos(phi))
            y_l = cy + radius * (np.sin(omega * tl + phi) - np.sin(phi))
            x_out0 = x_l[-1] + direction * speed
            m_out = _frames_until_exit(x_out0, y_l[-1], direction * speed, 0.0, ws, hs, W, H, 10**9)
            x_out = x_out0 + direction * speed * np.arange(m_out)
            cx = np.concatenate([xs_walk, x_l, x_out])
            cyy = np.concatenate([np.full(walk_in, cy), y_l, np.full(m_out, y_l[-1])])
            anomalous = np.concatenate([np.zeros(walk_in, bool), np.ones(linger, bool), np.zeros(m_out, bool)])
            dist = np.concatenate([speed * np.arange(walk_in), np.full(linger, speed * walk_in),
                                   speed * (walk_in + np.arange(m_out))])
            phase = _gait(dist, 0.7 * hs, rng)
            phase[walk_in:walk_in + linger] = 0  # standing
            # the lingering (the anomaly) starts at t0: the walk-in happens before, cut at frame 0 if needed
            start = t0 - walk_in
            cut = max(0, -start)
            o.t0 = max(0, start)
            m = min(len(cx), T - o.t0 + cut)
            o.cx, o.cy, o.phase, o.anomalous = cx[cut:m], cyy[cut:m], phase[cut:m], anomalous[cut:m]
            o.speed = float(lspeed)
            o.mirror = direction < 0
            out.append(o)
    return out


# ---------------------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------------------

def _make_background(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """Lawn (top), curb, paved walkway with tiles; low-frequency shading and fine static texture."""
    lawn_y = int(LAWN_FRACTION * H)
    img = np.empty((H, W), np.float32)
    img[:lawn_y] = 95.0
    img[lawn_y:] = 140.0
    # lawn: strong fine texture
    lawn_tex = cv2.GaussianBlur(rng.normal(0, 14, (lawn_y, W)).astype(np.float32), (0, 0), 0.8)
    img[:lawn_y] += lawn_tex
    # walkway: tiles with per-tile offsets and darker joints
    tile = max(8, int(0.12 * H))
    ty, tx = (H - lawn_y) // tile + 2, W // (2 * tile) + 2
    offs = rng.normal(0, 5, (ty, tx)).astype(np.float32)
    yy, xx = np.mgrid[0:H - lawn_y, 0:W]
    row = yy // tile
    col = (xx + (row % 2) * tile) // (2 * tile)
    walk = offs[row, col]
    joints = ((yy % tile) == 0) | (((xx + (row % 2) * tile) % (2 * tile)) == 0)
    walk[joints] -= 14.0
    img[lawn_y:] += walk + rng.normal(0, 4, walk.shape).astype(np.float32)
    # curb
    c0, c1 = lawn_y, min(H, lawn_y + max(2, H // 60))
    img[c0:c1] = 185.0
    # static structures on the lawn (benches, bins, poles)
    for _ in range(3):
        w = int(rng.uniform(0.03, 0.1) * W)
        h = int(rng.uniform(0.08, 0.2) * H)
        x = int(rng.uniform(0, W - w))
        y = max(0, lawn_y - h - int(rng.uniform(0, 0.05) * H))
        img[y:y + h, x:x + w] = rng.uniform(50, 200) + rng.normal(0, 3, (min(h, H - y), w))
    # low-frequency shading (shadows of trees, vignetting)
    low = cv2.resize(rng.normal(0, 10, (4, 6)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    img += low
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    grey = np.clip(img, 0, 255)
    bgr = np.stack([grey - 2.0, grey + 1.0, grey + 3.0], axis=-1)
    bgr[:lawn_y, :, 1] += 8.0  # greenish lawn
    bgr[:lawn_y, :, 0] -= 4.0
    return np.clip(np.rint(bgr), 0, 255).astype(np.uint8)


def _render_sprite(o: SynthObject, phase: int):
    hs, ws = o.size
    lab = np.zeros((hs, ws), np.uint8)
    s = 4  # cv2 drawing shift: coordinates in 1/16 px
    f = 1 << s

    def P(x, y):
        return (int(round(x * f)), int(round(y * f)))

    def line(a, b, part, th):
        cv2.line(lab, P(*a), P(*b), part, max(1, int(round(th))), cv2.LINE_8, s)

    def ell(c, ax, part):
        cv2.ellipse(lab, P(*c), (max(1, int(round(ax[0] * f))), max(1, int(round(ax[1] * f)))), 0, 0, 360, part,
                    -1, cv2.LINE_8, s)

    cx = (ws - 1) / 2
    if o.kind in ("pedestrian", "wrong_way", "loiter"):
        h = hs
        a = math.sin(2 * math.pi * phase / GAIT_PHASES)
        d = 0.17 * h * a
        for sg in (1, -1):  # legs, then arms swing opposite
            line((cx + sg * 0.05 * h, 0.55 * h), (cx + sg * d, h - 1), _PANTS, 0.09 * h)
        ell((cx, 0.37 * h), (0.15 * h, 0.2 * h), _SHIRT)
        for sg in (1, -1):
            line((cx, 0.24 * h), (cx - sg * 0.6 * d, 0.52 * h), _SHIRT, 0.065 * h)
        ell((cx, 0.1 * h), (0.085 * h, 0.095 * h), _HEAD)
    elif o.kind == "rider":
        h = hs
        r = 0.17 * h
        wy = h - 1 - r
        wheels = ((r + 1, wy), (ws - r - 2, wy))
        for c in wheels:
            cv2.circle(lab, P(*c), int(round(r * f)), _DARK, max(1, int(round(0.04 * h))), cv2.LINE_8, s)
        seat, bar, crank = (0.42 * ws, 0.56 * h), (0.74 * ws, 0.46 * h), (0.5 * ws, wy)
        for a_, b_ in ((wheels[0], seat), (seat, crank), (crank, wheels[0]), (crank, bar), (bar, wheels[1])):
            line(a_, b_, _DARK, 0.03 * h)
        ang = 2 * math.pi * phase / 4
        for sg in (1, -1):
            pedal = (crank[0] + sg * 0.09 * h * math.cos(ang), crank[1] + sg * 0.09 * h * math.sin(ang))
            knee = ((seat[0] + pedal[0]) / 2 + 0.08 * h, (seat[1] + pedal[1]) / 2 - 0.04 * h)
            line(seat, knee, _PANTS, 0.07 * h)
            line(knee, pedal, _PANTS, 0.06 * h)
        ell((0.5 * ws, 0.36 * h), (0.12 * h, 0.18 * h), _SHIRT)
        line((0.55 * ws, 0.26 * h), bar, _SHIRT, 0.05 * h)
        ell((0.6 * ws, 0.1 * h), (0.08 * h, 0.09 * h), _HEAD)
    else:  # vehicle
        h, w = hs, ws
        r = 0.16 * h
        cv2.rectangle(lab, P(0, 0.38 * h), P(w - 1, h - 1 - 0.5 * r), _BODY, -1, cv2.LINE_8, s)
        cv2.rectangle(lab, P(0.22 * w, 0.04 * h), P(0.78 * w, 0.4 * h), _BODY, -1, cv2.LINE_8, s)
        cv2.rectangle(lab, P(0.27 * w, 0.1 * h), P(0.48 * w, 0.36 * h), _GLASS, -1, cv2.LINE_8, s)
        cv2.rectangle(lab, P(0.52 * w, 0.1 * h), P(0.73 * w, 0.36 * h), _GLASS, -1, cv2.LINE_8, s)
        for x in (0.2 * w, 0.8 * w):
            cv2.circle(lab, P(x, h - 1 - r), int(round(r * f)), _DARK, -1, cv2.LINE_8, s)
        line((0.02 * w, 0.6 * h), (0.98 * w, 0.6 * h), _GLASS, max(1.0, 0.03 * h))
    if o.mirror:
        lab = lab[:, ::-1].copy()
    mask = lab > 0
    trng = np.random.default_rng(o.tex_seed)  # texture sticks to the object: same for every phase
    tex = cv2.GaussianBlur(trng.normal(0, 9, (hs, ws)).astype(np.float32), (0, 0), 0.7)
    shade = 1.0 - 0.18 * np.abs(np.linspace(-1, 1, ws, dtype=np.float32))[None, :]
    img = o.colors[lab] * shade[..., None] + tex[..., None]
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    img[~mask] = 0
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)
    return img, mask, box
