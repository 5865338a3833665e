"""Scenes of the cross-scene validation: the Ped2 training clips, the same clips seen by other (simulated) cameras,
and the embedded synthetic scenes, flat and with perspective. Training clips only: no test clip is ever read.

Simulated cameras (:data:`WARPS`): each is a plane homography that maps a quadrilateral of the Ped2 frame onto the
whole output frame (same size). Because the quadrilateral lies inside the frame, no border is invented; because a
homography is a projective map, objects grow and shrink with depth the way they do for a real camera tilted or
turned against the ground (pixel speeds change with depth in the same ratio as sizes). "Magnification" below is
the output size of an object relative to where it is in Ped2 (Ped2's own perspective comes on top):

============= ==================================================================================================
ped2_low      a lower camera looking along the walkway: far (top) rows as in Ped2, near (bottom) rows 2x
              (source quad: top edge the full width, bottom edge the middle half)
ped2_lower    the same, stronger: near rows 3x (bottom edge the middle third)
ped2_high     a higher camera looking more steeply down: flatter than Ped2, far rows 1.6x, near rows as in Ped2
              (top edge the middle 62 %, bottom edge the full width)
ped2_oblique  a camera turned sideways: the left side as in Ped2, the right side 2x nearer (right edge the middle
              half of the height): speeds and sizes now change along x too
============= ==================================================================================================

Resized cameras (:data:`SCALES`): the Ped2 frame scaled as a whole (area-averaged when shrinking, as a camera of
fewer pixels integrates the light of a larger patch; bilinear when enlarging), so every object, speed and texture
shrinks or grows by the same factor:

============= ==================================================================================================
ped2_small    0.6x (216x144): a lower-resolution or farther camera; Ped2's median walker (34-36 px tall) is
              about 21 px, its farthest ones about 12 px, as on the 158x238 frames of the UCSD Ped1 camera
ped2_large    1.6x (576x384, bilinear): a nearer camera with more pixels per person (walkers 55-100 px tall, as
              on CUHK Avenue's 640x360 frames); no detail is added, only sizes and px/frame speeds grow
============= ==================================================================================================

Each simulated camera is a scene of its own: its planted objects are placed with the statistics of its own
(warped) training clips. A planted clip can also be warped (:class:`WarpedClip`): its labels are then kept where
the planted object is still in the simulated camera's (cropped) view.

Synthetic scenes (:func:`synthetic_scene`): ``synthetic`` is today's embedded dataset's generator (training clips);
``synthetic_persp`` renders the same kind of scene with ``perspective=3`` (near walkers 3x the height and pixel
speed of far ones; :class:`tao_lab.dataset.synthetic.SyntheticGenerator`).
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import cv2
import numpy as np

from tao_lab.types import Clip

#: name -> (what it simulates, source quadrilateral TL, TR, BR, BL as fractions of (width, height)).
WARPS: dict[str, tuple[str, tuple[tuple[float, float], ...]]] = {
    "ped2_low": ("lower camera: near rows 2x", ((0.0, 0.0), (1.0, 0.0), (0.75, 1.0), (0.25, 1.0))),
    "ped2_lower": ("much lower camera: near rows 3x", ((0.0, 0.0), (1.0, 0.0), (2 / 3, 1.0), (1 / 3, 1.0))),
    "ped2_high": ("higher camera: far rows 1.6x (flatter)", ((0.19, 0.0), (0.81, 0.0), (1.0, 1.0), (0.0, 1.0))),
    "ped2_oblique": ("camera turned sideways: right side 2x", ((0.0, 0.0), (1.0, 0.25), (1.0, 0.75), (0.0, 1.0))),
}
#: name -> scale of the whole frame (output size = round(scale x Ped2's size)).
SCALES: dict[str, float] = {"ped2_small": 0.6, "ped2_large": 1.6}
SYNTHETIC_SCENES = {"synthetic": 1.0, "synthetic_persp": 3.0}  # name -> perspective (near/far scale ratio)
SCENES = ("ped2", *WARPS, *SCALES, *SYNTHETIC_SCENES)
DEFAULT_SCENES = ("ped2", "ped2_low", "ped2_oblique", "synthetic", "synthetic_persp")

#: Ped2's walkable ground (the paved walkway and the diagonal path at the top left), drawn by hand on the median of
#: training frames, as (x, y) fractions of the frame: everything else is lawn, hedge, building or the grass corners at
#: the bottom. The off-the-paths set plants its walkers off this ground (SceneStats.walkable).
PED2_WALKWAY = ((0.0, 0.483), (0.106, 0.483), (0.297, 0.0), (0.356, 0.0), (0.175, 0.483), (0.917, 0.488),
                (0.933, 0.438), (1.0, 0.438), (1.0, 0.813), (0.922, 0.813), (0.922, 0.938), (0.694, 0.938),
                (0.694, 1.0), (0.114, 1.0), (0.131, 0.921), (0.0, 0.921))


def walkable_ground(name: str, width: int, height: int) -> Optional[np.ndarray]:
    """(height, width) bool: where people can walk in scene ``name`` (the ground of its paths, whether or not a
    training object stood there), or None when not known. Ped2: :data:`PED2_WALKWAY`, mapped by the simulated
    camera's homography for :data:`WARPS` and scaled for :data:`SCALES`; synthetic scenes: the walkway below the
    lawn (``tao_lab.dataset.synthetic.LAWN_FRACTION``)."""
    if name in SYNTHETIC_SCENES:
        from tao_lab.dataset.synthetic import LAWN_FRACTION

        out = np.zeros((height, width), bool)
        out[int(LAWN_FRACTION * height):] = True
        return out
    if name != "ped2" and name not in WARPS and name not in SCALES:
        return None
    points = np.asarray(PED2_WALKWAY, np.float64) * [width, height]
    if name in WARPS:
        points = warp_points(homography(name, width, height), points)
    out = np.zeros((height, width), np.uint8)
    cv2.fillPoly(out, [np.round(points).astype(np.int32)], 1)
    return out.astype(bool)


def homography(name: str, width: int, height: int) -> np.ndarray:
    """(3,3) float64 homography of simulated camera ``name`` for frames of ``width`` x ``height``: source (Ped2)
    pixel -> output pixel."""
    if name not in WARPS:
        raise ValueError(f"unknown simulated camera {name!r}: expected one of {tuple(WARPS)}")
    quad = np.float32(WARPS[name][1]) * np.float32([width, height])
    rect = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.getPerspectiveTransform(quad, rect).astype(np.float64)


def warp_points(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,2) points mapped by homography H."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    q = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ H.T
    return q[:, :2] / q[:, 2:3]


class WarpedClip(Clip):
    """``base`` seen through homography ``H`` (same frame size). When ``base`` carries planted-object ``labels``,
    they are kept where the planted object's box, mapped by H, still covers >= 25 % of its own area in view."""

    def __init__(self, base: Clip, H: np.ndarray, tag: str):
        digest = hashlib.sha1(np.asarray(H, np.float64).tobytes()).hexdigest()[:10]
        super().__init__(f"{base.clip_id}@{tag}", base.num_frames, base.height, base.width, base.fps, gt=None,
                         source=f"{base.source}+warp:{tag}:{digest}")
        self.base, self.H = base, np.asarray(H, np.float64)
        if hasattr(base, "labels"):
            self.labels = np.asarray(base.labels, bool) & self._in_view()

    def _in_view(self) -> np.ndarray:
        b = self.base
        if not hasattr(b, "top_left"):
            return np.ones(self.num_frames, bool)
        h, w = b.alpha.shape
        out = np.zeros(self.num_frames, bool)
        for i in np.flatnonzero(b.labels):
            x, y = b.top_left[i]
            s = b.scale[i]
            corners = np.array([[x, y], [x + s * w, y], [x + s * w, y + s * h], [x, y + s * h]])
            q = warp_points(self.H, corners).astype(np.float32)
            full = cv2.contourArea(q)
            clipped = cv2.intersectConvexConvex(
                q, np.float32([[0, 0], [self.width, 0], [self.width, self.height], [0, self.height]]))[0]
            out[i] = full > 0 and clipped >= 0.25 * full
        return out

    def _warp(self, frame: np.ndarray) -> np.ndarray:
        return cv2.warpPerspective(frame, self.H, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)

    def _read(self, i: int) -> np.ndarray:
        return self._warp(self.base.frame(i))

    def _sequential(self, start: int, stop: int):
        for frame in self.base.frames(start, stop):
            yield self._warp(frame)


def warp_scene(name: str, clips: list[Clip]) -> list[WarpedClip]:
    """The clips (Ped2 training clips, planted or not) seen by simulated camera ``name``."""
    return [WarpedClip(c, homography(name, c.width, c.height), name) for c in clips]


def scale_scene(name: str, clips: list[Clip]) -> list[Clip]:
    """The clips (Ped2 training clips) seen by resized camera ``name`` (:data:`SCALES`): the working resolution's
    clip view (:class:`tao_lab.dataset.resize.ResizedClip`), tagged with the scene's name."""
    from tao_lab.dataset.resize import ResizedClip

    if name not in SCALES:
        raise ValueError(f"unknown resized camera {name!r}: expected one of {tuple(SCALES)}")
    return [ResizedClip(c, (int(round(SCALES[name] * c.height)), int(round(SCALES[name] * c.width))),
                        clip_id=f"{c.clip_id}@{name}") for c in clips]


#: training clips of a synthetic scene when none is asked for
SYNTHETIC_CLIPS = 4


def _spread(ids: list[str], n: Optional[int]) -> list[str]:
    """``n`` of ``ids`` spread evenly over them (all when None or n >= len(ids))."""
    if n is None or n >= len(ids):
        return list(ids)
    return [ids[int(round(k))] for k in np.linspace(0, len(ids) - 1, n)]


def _ped2_clips(data_dir: str, ids: list[str], num_frames: Optional[int]) -> list[Clip]:
    from tao_lab.dataset import load_ucsd

    clips = {c.clip_id: c for c in load_ucsd(data_dir, "ped2", clip_ids=ids, max_frames=num_frames,
                                               splits=("train",)).train}
    return [clips[i] for i in ids]


def _ped2_ids(data_dir: str) -> list[str]:
    from tao_lab.dataset import load_ucsd

    return [c.clip_id for c in load_ucsd(data_dir, "ped2", splits=("train",)).train]


def ped2_train_clips(data_dir: str, num_clips: Optional[int], num_frames: Optional[int]) -> list[Clip]:
    """``num_clips`` Ped2 training clips spread evenly over the 16 (all when None), first ``num_frames`` frames."""
    return _ped2_clips(data_dir, _spread(_ped2_ids(data_dir), num_clips), num_frames)


def camera_view(name: str, ped2_clips: list[Clip]) -> list[Clip]:
    """Ped2 clips as Ped2 scene ``name``'s camera sees them: ``ped2`` itself, a warped or a resized camera."""
    if name == "ped2":
        return list(ped2_clips)
    if name in WARPS:
        return warp_scene(name, ped2_clips)
    if name in SCALES:
        return scale_scene(name, ped2_clips)
    raise ValueError(f"{name!r} is not a Ped2 scene: expected ped2 or one of {(*WARPS, *SCALES)}")


def spare_clips(names: Sequence[str], num_clips: Optional[int], num_frames: Optional[int],
                ped2_dir: Optional[str] = None) -> dict[str, list[Clip]]:
    """Per scene of ``names``, one clip per training clip, from the same camera, that none of the scene's folds fits
    on: the cross-scene crowd's donors (:mod:`tao_lab.validation.crowd`). The Ped2 scenes: the Ped2 training clips
    that :func:`ped2_train_clips` leaves out, spread evenly over them, first ``num_frames`` frames (read once for
    every Ped2 scene), seen by the scene's camera, so at most half of the 16 can be validated on with a crowd, and
    each at least as long as the clip it crowds (else a ValueError before anything is planted); the synthetic
    scenes: the generator's next clips (clip k of the generator does not depend on how many it makes)."""
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        raise ValueError(f"unknown scene {unknown}: expected some of {SCENES}")
    count = num_clips or SYNTHETIC_CLIPS
    out = {n: synthetic_scene(n, 2 * count, num_frames)[count:] for n in names if n in SYNTHETIC_SCENES}
    ped2_scenes = [n for n in names if n not in SYNTHETIC_SCENES]
    if ped2_scenes:
        if not ped2_dir:
            raise ValueError("the Ped2 scenes' crowd needs the Ped2 folder: --ped2-dir ../shared/datasets/ucsd_ped2")
        ids = _ped2_ids(ped2_dir)
        used = _spread(ids, num_clips)
        spare = [i for i in ids if i not in set(used)]
        if len(spare) < len(used):
            raise ValueError(f"a crowd needs a spare Ped2 training clip per validated clip: {len(used)} validated "
                             f"leave only {len(spare)} of {len(ids)} (use --clips {len(ids) // 2} or fewer)")
        donors = _ped2_clips(ped2_dir, _spread(spare, len(used)), num_frames)
        short = [(d, c) for d, c in zip(donors, _ped2_clips(ped2_dir, used, num_frames))
                 if d.num_frames < c.num_frames]
        if short:  # a donor must cover every frame it crowds (tao_lab.validation.crowd.CrowdedClip)
            d, c = short[0]
            raise ValueError(f"a crowd donor must be as long as the clip it crowds: Ped2 {d.clip_id} has "
                             f"{d.num_frames} frames, {c.clip_id} {c.num_frames} (use --frames "
                             f"{min(d.num_frames for d, _ in short)} or fewer)")
        out.update({n: camera_view(n, donors) for n in ped2_scenes})
    return {n: out[n] for n in names}


def synthetic_scene(name: str, num_clips: Optional[int], num_frames: Optional[int], seed: int = 0) -> list[Clip]:
    """Training clips of synthetic scene ``name`` (default size 160x240; ``SYNTHETIC_CLIPS`` clips of 120 frames
    when None)."""
    from tao_lab.dataset.synthetic import SyntheticGenerator

    if name not in SYNTHETIC_SCENES:
        raise ValueError(f"unknown synthetic scene {name!r}: expected one of {tuple(SYNTHETIC_SCENES)}")
    gen = SyntheticGenerator(seed=seed, num_train_clips=num_clips or SYNTHETIC_CLIPS, num_test_clips=0,
                             num_frames=num_frames or 120, perspective=SYNTHETIC_SCENES[name])
    return gen.dataset().train
