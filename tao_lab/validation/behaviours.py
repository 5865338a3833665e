"""Behaviour plants: anomalies defined against what the training clips of ONE scene do at each place.

The planted sets of the cross-scene validation (:mod:`tao_lab.validation.cross_scene`). Every set is placed
with the scene's own statistics (:class:`SceneStats`, from the tracks of the OTHER training clips of that scene):
where objects' feet are, how tall and how fast objects are at each image row, and which way they go at each place.
Speeds are multiples of the local normal speed, sizes follow the local normal height (per frame: an object moving
in depth grows and shrinks), so the same set means the same thing on cameras with different perspective.

========= =========================================================================================================
set       planted object (labels = the frames where it is anomalous)
========= =========================================================================================================
fast      a walker cut-out on a normal path (through a normal object's feet, along that object's direction) at
          3.5-6x the local normal speed; every frame it is visible
cart      an opaque cart-like box (0.8x the local height tall, 1.2-1.6x wider than high) on a normal path at
          0.7-1.3x the local normal speed; every frame it is visible
wrong_way a walker that comes in on a normal path at normal speed (not labelled), then at a normal place turns to
          the direction least seen around it (the opposite way on a one-way path, across a two-way path:
          ``SceneStats.least_seen_directions``) and walks on at normal speed; the frames after the turn
off_path  a walker at normal speed for its row on a straight line through places, next to the paths, where no
          training object's feet ever were (cells of a 12x16 grid, dilated by one cell) AND off the scene's
          walkable ground (lawn, hedge: ``SceneStats.walkable``, from ``scenes.walkable_ground``; since off-path
          round 1, before which an unvisited spot of the walkway itself counted); the frames where its feet are
          in such a place
loiter    a walker that comes in on a normal path at normal speed (not labelled), stands nearly still (<= 0.2
          px/frame of jitter) at a place where people pass for 30-45 % of the clip, then walks on (not labelled);
          the standing frames
fast_mild a walker cut-out on a normal path like ``fast``, at 1.5-3x the local normal speed (a cyclist or a
          runner next to walkers, rather than ``fast``'s 3.5-6x, which every speed measure catches); every frame
          it is visible
========= =========================================================================================================

Depth: clip v of a scene gets depth band ``(v + set index) % 3`` (far / middle / near: tertiles of the rows of
moving training objects' feet), so each set is planted at several depths across the held-out clips. Each object
follows a trajectory from outside the frame to outside the frame, and the clip shows a window of it: the object
comes in through the border or is in view at frame 0, and leaves through the border or is in view at the last
frame (it never pops up or vanishes mid-frame). At most half of a clip's frames are labelled, so every held-out
clip keeps negatives; among a few candidate paths, the one keeping the object longest mostly in view is used.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tao_lab.types import Clip, ObjectTable
from tao_lab.validation.planted import (STILL_SPEED, PlantedClip, cut_walker, cut_walker_sequence, feet_velocity,
                                        gait_index, make_box)

log = logging.getLogger(__name__)

# fast_mild last: a set's index sets its depth bands, so the earlier sets (and their cached plants) stay as they were
BEHAVIOURS = ("fast", "cart", "wrong_way", "off_path", "loiter", "fast_mild")
# the 1-D speed factors (multiples of the local normal speed) of the sets that move along a normal path
_PATH_SPEEDS = {"fast": (3.5, 6.0), "fast_mild": (1.5, 3.0), "cart": (0.7, 1.3)}
NUM_DEPTHS = 3
_DIRS = np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4])  # 8 unit directions (x right, y down)


@dataclass
class SceneStats:
    """What the normal objects of one scene do, from their tracks (feet = box bottom-centre, pixels).

    feet (N,2), height (N,), velocity (N,2) px/frame of the feet over a few frames of the same track (NaN where
    the track is too short), moving (N,) bool; size_fit / speed_fit: (slope, intercept) of height and of moving
    speed against the feet row (robust: straight line through per-row-band medians); occupied (G_r, G_c) bool:
    grid cells where a foot ever was, dilated by one cell; band_edges: rows splitting moving feet in tertiles.
    """

    width: int
    height: int
    feet: np.ndarray
    heights: np.ndarray
    velocity: np.ndarray
    moving: np.ndarray
    size_fit: tuple[float, float]
    speed_fit: tuple[float, float]
    occupied: np.ndarray
    band_edges: np.ndarray
    row_range: tuple[float, float] = (0.0, float("inf"))  # fits are held constant outside the rows of feet seen
    # (height, width) bool: where people can walk (the ground of the scene's paths: scenes.walkable_ground), None
    # when not known; off_path plants its walkers off it
    walkable: Optional[np.ndarray] = None

    GRID = (12, 16)

    @classmethod
    def fit(cls, objects, width: int, height: int, lag: int = 4) -> "SceneStats":
        """objects: the tracks of the training clips, one ObjectTable per clip (or one table of one clip)."""
        tables = [objects] if isinstance(objects, ObjectTable) else list(objects)
        objects = ObjectTable.concat(tables)
        if len(objects) < 10:
            raise ValueError(f"scene statistics need >= 10 training objects, got {len(objects)}")
        x1, y1, x2, y2 = objects.xyxy.astype(np.float64).T
        feet = np.stack([(x1 + x2) / 2, y2], axis=1)
        heights = y2 - y1
        vel = np.concatenate([feet_velocity(t, lag) for t in tables])
        speed = np.linalg.norm(vel, axis=1)
        moving = np.isfinite(speed) & (speed > STILL_SPEED)
        size_fit = _row_fit(feet[:, 1], heights, height)
        speed_fit = _row_fit(feet[moving, 1], speed[moving], height) if moving.sum() >= 5 else (0.0, 1.0)
        gr, gc = cls.GRID
        cells = np.zeros((gr, gc), np.int64)
        r = np.clip((feet[:, 1] / height * gr).astype(int), 0, gr - 1)
        c = np.clip((feet[:, 0] / width * gc).astype(int), 0, gc - 1)
        np.add.at(cells, (r, c), 1)
        seen = cells >= 2  # one stray detection does not make a path
        occupied = seen.copy()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                occupied[max(dr, 0):gr + min(dr, 0), max(dc, 0):gc + min(dc, 0)] |= \
                    seen[max(-dr, 0):gr + min(-dr, 0), max(-dc, 0):gc + min(-dc, 0)]
        band_rows = feet[moving, 1] if moving.sum() >= NUM_DEPTHS else feet[:, 1]
        band_edges = np.quantile(band_rows, np.linspace(0, 1, NUM_DEPTHS + 1))
        row_range = tuple(float(q) for q in np.quantile(feet[:, 1], [0.02, 0.98]))
        return cls(width, height, feet, heights, vel, moving, size_fit, speed_fit, occupied, band_edges, row_range)

    def local_height(self, y) -> np.ndarray:
        """Normal object height (px) at feet row(s) y."""
        a, b = self.size_fit
        return np.maximum(a * np.clip(np.asarray(y, np.float64), *self.row_range) + b, 4.0)

    def local_speed(self, y) -> np.ndarray:
        """Normal moving speed (px/frame) at feet row(s) y."""
        a, b = self.speed_fit
        return np.maximum(a * np.clip(np.asarray(y, np.float64), *self.row_range) + b, 0.3)

    def _in_frame(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(points as (N,2) float64, (N,) bool: inside the frame; NaN points are not)."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return p, (p[:, 0] >= 0) & (p[:, 0] < self.width) & (p[:, 1] >= 0) & (p[:, 1] < self.height)

    def is_occupied(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: the feet points (N,2) lie where training feet were (points outside the frame: True)."""
        gr, gc = self.GRID
        p, inside = self._in_frame(points)
        r = np.clip((p[:, 1] / self.height * gr).astype(int), 0, gr - 1)
        c = np.clip((p[:, 0] / self.width * gc).astype(int), 0, gc - 1)
        return ~inside | self.occupied[r, c]

    def off_walkway(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: the feet points (N,2) stand in the frame on ground that is not walkable (all in-frame points
        when the walkable ground is not known)."""
        p, inside = self._in_frame(points)
        if self.walkable is None:
            return inside
        out = np.zeros(len(p), bool)
        q = p[inside].astype(int)  # in the frame, so non-negative and finite
        out[inside] = ~self.walkable[q[:, 1], q[:, 0]]
        return out

    def off_path(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: the feet points (N,2) stand where no training foot was, on ground that is not walkable."""
        return ~self.is_occupied(points) & self.off_walkway(points)

    def direction_counts(self, point: np.ndarray, k: int = 40) -> np.ndarray:
        """(8,) how many moving training objects near ``point`` go in each of 8 directions (x right, y down; bin
        b = angle b*45 degrees). Near = within 1.5 local heights, at least the k nearest."""
        idx = np.flatnonzero(self.moving)
        dist = np.linalg.norm(self.feet[idx] - point, axis=1)
        radius = 1.5 * float(self.local_height(point[1]))
        near = idx[dist <= radius] if (dist <= radius).sum() >= k else idx[np.argsort(dist)[:k]]
        ang = np.arctan2(self.velocity[near, 1], self.velocity[near, 0])
        bins = np.round(ang / (np.pi / 4)).astype(int) % 8
        return np.bincount(bins, minlength=8).astype(np.float64)

    def least_seen_directions(self, point: np.ndarray) -> np.ndarray:
        """Direction bins least seen near ``point``: fewest objects within +-45 degrees, ties broken by ever wider
        neighbourhoods (a one-way path gives the opposite way, a two-way path the way across)."""
        counts = self.direction_counts(point)
        least = np.arange(8)
        for r in range(1, 4):
            wide = sum(np.roll(counts, d) for d in range(-r, r + 1))
            least = least[wide[least] == wide[least].min()]
            if len(least) <= 2:
                break
        return least

    def band(self, y):
        """Depth band (0 far .. NUM_DEPTHS-1 near) of feet row(s) y."""
        return np.clip(np.searchsorted(self.band_edges[1:-1], y, side="right"), 0, NUM_DEPTHS - 1)


def _row_fit(rows: np.ndarray, values: np.ndarray, height: int, bands: int = 8) -> tuple[float, float]:
    """Straight line value(row) through the medians of ``bands`` row bands (robust to merged/fragmented blobs)."""
    edges = np.linspace(0, height, bands + 1)
    xs, ys, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (rows >= lo) & (rows < hi)
        if m.sum() >= 3:
            xs.append(np.median(rows[m]))
            ys.append(np.median(values[m]))
            ws.append(np.sqrt(m.sum()))
    if len(xs) >= 2:
        a, b = np.polyfit(xs, ys, 1, w=ws)
        return float(a), float(b)
    return 0.0, float(np.median(values)) if len(values) else 1.0


# ---------------------------------------------------------------------------------------------------------------
# trajectories: per-step feet positions and labels, then cut to the clip
# ---------------------------------------------------------------------------------------------------------------

def _box(stats: SceneStats, feet: np.ndarray, aspect: float, rel_height: float) -> np.ndarray:
    """(N,4) boxes of an object of ``rel_height`` x the local height and width/height ``aspect`` at ``feet``."""
    h = rel_height * stats.local_height(feet[:, 1])
    w = aspect * h
    return np.stack([feet[:, 0] - w / 2, feet[:, 1] - h, feet[:, 0] + w / 2, feet[:, 1]], axis=1)


def _visible(stats: SceneStats, boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] < stats.width) & (boxes[:, 2] > 0) & (boxes[:, 1] < stats.height) & (boxes[:, 3] > 0)


def _walk(stats, start, direction, speed_factor, n_max, aspect, rel_height, forward=True):
    """Feet positions from ``start`` along ``direction`` at ``speed_factor`` x the local normal speed (updated each
    step: the object slows down in the distance like a real one), until the object is out of view (forward) or,
    walking backwards, until it has just come in (the returned list then runs towards ``start``)."""
    d = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    sign = 1.0 if forward else -1.0
    p, out = np.asarray(start, np.float64), []
    for _ in range(n_max):
        p = p + sign * d * speed_factor * float(stats.local_speed(p[1]))
        out.append(p)
        if not _visible(stats, _box(stats, p[None], aspect, rel_height))[0]:
            break
    out = np.array(out).reshape(-1, 2)
    return out if forward else out[::-1]


def _cut(rng, stats: SceneStats, feet: np.ndarray, labels: np.ndarray, aspect: float, rel_height: float, T: int,
         min_labelled: int = 8, on_path: bool = False):
    """Places a trajectory (steps of feet, labels) in a clip of T frames: (feet (T,2) NaN where absent, labels).

    The trajectory runs from outside the frame to outside the frame, so any window of it is natural: the object
    comes in through the border or is in view at frame 0, and leaves through the border or is in view at the last
    frame; it never pops up or vanishes mid-frame. The window is drawn among those with ``min_labelled``..T/2
    labelled visible frames, preferring the whole visible trajectory (fast objects), then all labelled frames (a
    loiterer's whole stay), then the most labelled frames with the object mostly (60 %) inside the frame (a slow,
    wide object spends long at the border coming in) and, with ``on_path``, its feet where training feet were (a
    straight path through a normal place leaves the paths further on)."""
    boxes = _box(stats, feet, aspect, rel_height)
    vis = _visible(stats, boxes)
    cw = np.clip(boxes[:, 2], 0, stats.width) - np.clip(boxes[:, 0], 0, stats.width)
    ch = np.clip(boxes[:, 3], 0, stats.height) - np.clip(boxes[:, 1], 0, stats.height)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    inside = cw * ch >= 0.6 * area  # mostly in view
    lab = labels & vis
    n = len(feet)
    offsets = np.arange(-(T - 1), n)  # trajectory step of clip frame 0
    lo, hi = np.clip(offsets, 0, n), np.clip(offsets + T, 0, n)

    def in_window(x):
        c = np.concatenate([[0], np.cumsum(x)])
        return c[hi] - c[lo]

    good = inside & stats.is_occupied(feet) if on_path else inside
    count, count_in = in_window(lab), in_window(lab & good)
    want = min(min_labelled, int(lab.sum()))
    valid = (count >= max(want, 1)) & (count <= T // 2)
    first_vis = int(np.argmax(vis)) if vis.any() else 0
    last_vis = n - int(np.argmax(vis[::-1])) if vis.any() else n
    whole = valid & (offsets <= first_vis) & (offsets + T >= last_vis)
    all_labelled = valid & (count == lab.sum())
    if whole.any():
        pool = np.flatnonzero(whole)
    elif all_labelled.any():
        pool = np.flatnonzero(all_labelled)
    elif valid.any():
        best = count_in if count_in[valid].max() > 0 else count
        pool = np.flatnonzero(valid & (best >= 0.8 * best[valid].max()))
    else:
        return None
    o = int(offsets[int(rng.choice(pool))])
    out_feet = np.full((T, 2), np.nan)
    out_lab = np.zeros(T, bool)
    t = np.arange(T)
    k = t + o
    ok = (k >= 0) & (k < n)
    out_feet[ok] = feet[k[ok]]
    out_lab[ok] = lab[k[ok]]
    present = np.zeros(T, bool)
    present[ok] = vis[k[ok]]
    out_feet[~present] = np.nan
    return out_feet, out_lab, int(count_in[o + T - 1])


def _anchor(stats: SceneStats, rng, depth: int) -> np.ndarray:
    """Index of a moving training object in depth band ``depth`` with its feet inside the frame."""
    band = stats.band(stats.feet[:, 1])
    inside = (stats.feet[:, 0] > 0.05 * stats.width) & (stats.feet[:, 0] < 0.95 * stats.width) \
        & (stats.feet[:, 1] > 0.05 * stats.height) & (stats.feet[:, 1] < 0.98 * stats.height)
    pool = np.flatnonzero(stats.moving & inside & (band == depth))
    if not len(pool):
        pool = np.flatnonzero(stats.moving & inside)
    if not len(pool):
        raise ValueError("no moving training object inside the frame to anchor a planted object to")
    return pool[int(rng.integers(len(pool)))]


def _trajectory(kind: str, stats: SceneStats, rng, depth: int, T: int, aspect: float, rel_height: float):
    """(feet steps (N,2), labels (N,)) of one planted object of set ``kind`` (before cutting to the clip)."""
    n_max = 4 * T + 4 * (stats.width + stats.height)
    if kind == "off_path":
        return _off_path(stats, rng, depth, n_max, aspect, rel_height)
    j = _anchor(stats, rng, depth)
    foot, heading = stats.feet[j], stats.velocity[j]
    if kind in _PATH_SPEEDS:
        factor = rng.uniform(*_PATH_SPEEDS[kind])
        before = _walk(stats, foot, heading, factor, n_max, aspect, rel_height, forward=False)
        after = _walk(stats, foot, heading, factor, n_max, aspect, rel_height)
        feet = np.concatenate([before, foot[None], after])
        return feet, np.ones(len(feet), bool)
    factor = rng.uniform(0.8, 1.2)
    before = _walk(stats, foot, heading, factor, n_max, aspect, rel_height, forward=False)
    if kind == "wrong_way":
        d = _DIRS[int(rng.choice(stats.least_seen_directions(foot)))]
        after = _walk(stats, foot, d, factor, n_max, aspect, rel_height)
        feet = np.concatenate([before, foot[None], after])
        return feet, np.arange(len(feet)) > len(before)
    if kind == "loiter":
        stand = int(rng.uniform(0.3, 0.45) * T)
        # jitter: a smoothed random walk of <= ~1.5 px around the spot, <= 0.2 px/frame
        steps = rng.normal(0, 0.06, (stand, 2))
        steps *= np.minimum(1.0, 0.2 / np.maximum(np.linalg.norm(steps, axis=1, keepdims=True), 1e-9))
        jitter = np.clip(np.cumsum(steps, axis=0), -1.5, 1.5)
        standing = foot[None] + jitter
        after = _walk(stats, standing[-1], heading, factor, n_max, aspect, rel_height)
        feet = np.concatenate([before, standing, after])
        labels = np.zeros(len(feet), bool)
        labels[len(before):len(before) + stand] = True
        return feet, labels
    raise ValueError(f"unknown planted set {kind!r}: expected one of {BEHAVIOURS}")


def _off_path(stats: SceneStats, rng, depth: int, n_max: int, aspect: float, rel_height: float):
    gr, gc = stats.GRID
    rows = (np.arange(gr) + 0.5) * stats.height / gr
    cols = (np.arange(gc) + 0.5) * stats.width / gc
    centres = np.array([[x, y] for y in rows for x in cols])
    off_ground = stats.off_walkway(centres).reshape(gr, gc)
    empty = [(r, c) for r in range(gr) for c in range(gc) if not stats.occupied[r, c] and off_ground[r, c]
             and rows[r] > stats.local_height(rows[r]) * rel_height * 0.5]  # room for the object above its feet
    if not empty:
        raise ValueError("no place of this scene is both unvisited by training objects and off its walkable "
                         "ground: no off-path place to plant")
    # prefer places next to the paths (the lawn beside the walkway), not the far corners of the frame: at most 3
    # cells from where a foot was (the occupied map is dilated by one cell)
    seen = np.argwhere(stats.occupied)
    near = [rc for rc in empty if len(seen) and np.abs(seen - rc).max(axis=1).min() <= 2] or empty
    in_band = [rc for rc in near if stats.band(rows[rc[0]]) == depth]
    pool = in_band or near
    r, c = pool[int(rng.integers(len(pool)))]
    centre = np.array([cols[c], rows[r]]) + rng.uniform(-0.3, 0.3, 2) * [stats.width / gc, stats.height / gr]
    best, best_frac = [], -1.0
    for d in rng.permutation(8):
        before = _walk(stats, centre, _DIRS[d], 1.0, n_max, aspect, rel_height, forward=False)
        after = _walk(stats, centre, _DIRS[d], 1.0, n_max, aspect, rel_height)
        feet = np.concatenate([before, centre[None], after])
        frac = float(np.mean(stats.off_path(feet)))
        if frac > best_frac:
            best, best_frac = [feet], frac
    feet = best[0]
    factor = rng.uniform(0.8, 1.2)  # normal speed: resample the path at factor x local speed (it was 1x)
    t = np.arange(0, len(feet) - 1, factor)
    i = np.floor(t).astype(int)
    feet = feet[i] + (t - i)[:, None] * (feet[np.minimum(i + 1, len(feet) - 1)] - feet[i])
    return feet, stats.off_path(feet)


def plant_behaviour(base: Clip, kind: str, stats: SceneStats, donor: Optional[tuple[Clip, ObjectTable]],
                    rng: np.random.Generator, depth: int, tries: int = 30, candidates: int = 6,
                    animate: bool = False, occlusion: bool = False) -> PlantedClip:
    """``base`` with one planted object of set ``kind`` (see the module docstring) at depth band ``depth``.

    stats: statistics of the scene's OTHER training clips; donor: (clip, its objects) to cut a walker from (every
    set but ``cart``); animate: a walker is cut from several consecutive frames of its donor track and moves its
    limbs (:func:`tao_lab.validation.planted.cut_walker_sequence`; its gait advances with the distance it walks,
    :func:`~tao_lab.validation.planted.gait_index`); without it, or when the donor has no such run, one cut-out is
    translated rigidly. occlusion: the object is pasted behind the base clip's nearer objects (PlantedClip)."""
    if kind not in BEHAVIOURS:
        raise ValueError(f"unknown planted set {kind!r}: expected one of {BEHAVIOURS}")
    T = base.num_frames
    if kind == "cart":
        first = base.frame(0).astype(np.int16)
        grey = bool(np.abs(first - first[..., :1]).max() <= 3)
        sprite, alpha = make_box(max(8, float(np.median(stats.heights))), rng, grey=grey)
        rel_height = 0.8
    else:
        if donor is None:
            raise ValueError(f"a {kind!r} plant needs a donor clip to cut a walker from")
        sprite = None
        if animate:
            try:
                sprite, alpha = cut_walker_sequence(donor[0], donor[1], rng)
            except ValueError as err:
                log.info("%s: rigid walker (%s)", base.clip_id, err)
        if sprite is None:
            sprite, alpha = cut_walker(donor[0], donor[1], rng)
        rel_height = 1.0
    frames_of = sprite if sprite.ndim == 4 else sprite[None]  # (K, h, w, 3)
    sprite_h, sprite_w = frames_of.shape[1:3]
    aspect = sprite_w / sprite_h
    # a few candidate paths; the one showing the object longest mostly in view (and on the path, for fast and
    # cart) wins: a straight path can run into a nearby border or off the paths
    best = None
    for _ in range(tries):
        try:
            feet, labels = _trajectory(kind, stats, rng, depth, T, aspect, rel_height)
        except ValueError:
            if kind == "off_path":
                raise
            continue
        placed = _cut(rng, stats, feet, labels, aspect, rel_height, T, on_path=kind in _PATH_SPEEDS)
        if placed is not None and (best is None or placed[2] > best[2]):
            best = placed
        if best is not None and (_ >= candidates - 1 or best[2] >= T // 4):
            break
    if best is not None:
        foot, lab, _ = best
        scale = rel_height * stats.local_height(np.nan_to_num(foot[:, 1], nan=stats.height / 2)) / sprite_h
        top_left = np.stack([foot[:, 0] - scale * sprite_w / 2, foot[:, 1] - scale * sprite_h], 1)
        steps = np.linalg.norm(np.diff(foot, axis=0, prepend=foot[:1]), axis=1)
        index = gait_index(steps, stats.local_speed(np.nan_to_num(foot[:, 1], nan=stats.height / 2)), len(frames_of))
        digest = hashlib.sha1(sprite.tobytes() + alpha.tobytes() + np.nan_to_num(top_left, nan=-1).tobytes()
                              + scale.tobytes() + index.tobytes()).hexdigest()
        return PlantedClip(base, sprite, alpha, top_left, f"{kind}:d{depth}:{digest[:10]}", scale=scale,
                           labels=lab, sprite_index=index, occlusion=occlusion)
    raise ValueError(f"could not place a {kind!r} object at depth {depth} in {base.clip_id} "
                     f"({base.width}x{base.height}, {T} frames)")
