"""Animated planted walkers (their limbs move, as real walkers' do) and the motion-pattern feature that tells rigid
from articulated motion, with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import grey_clip, walking_tracks
from tao_lab.features import MotionPatternFeature
from tao_lab.features.base import FrameContext
from tao_lab.online import BufferClip
from tao_lab.types import ObjectTable
from tao_lab.validation.behaviours import BEHAVIOURS, SceneStats, plant_behaviour
from tao_lab.validation.planted import PlantedClip, cut_walker_sequence, gait_index

T = 60


def walking_donor(track_id=0, merge_at=None):
    """A dark 12x30 walker moving 1 px/frame whose two 'legs' (the bottom 10 rows) swing: on even frames the left
    half of the leg rows is dark, on odd frames the right half. ``merge_at``: from that frame on its box is 40 %
    taller (merged with a neighbour)."""
    frames, boxes = [], []
    for i in range(T):
        f = grey_clip().frame(0).copy()
        x = 10 + i
        f[40:60, x:x + 12] = 30
        legs = slice(x, x + 6) if i % 2 == 0 else slice(x + 6, x + 12)
        f[60:70, legs] = 30
        frames.append(f)
        top = 28 if merge_at is not None and i >= merge_at else 40
        boxes.append([x, top, x + 12, 70])
    objects = ObjectTable.build(np.arange(T), np.array(boxes, np.float32), track_id=np.full(T, track_id))
    return BufferClip(frames, clip_id="walking"), objects


def test_gait_index_advances_with_the_distance_walked():
    # one sprite per frame at the normal speed, back and forth over 4 sprites
    np.testing.assert_array_equal(gait_index(np.full(9, 2.0), np.full(9, 2.0), 4), [1, 2, 3, 2, 1, 0, 1, 2, 3])
    # twice the normal speed: two sprites per frame; standing (0 px) and absent (NaN) frames hold the sprite
    np.testing.assert_array_equal(gait_index(np.array([2.0, 2, 0, np.nan, 1]), np.full(5, 1.0), 5), [2, 4, 4, 4, 3])
    assert not gait_index(np.full(5, 3.0), np.ones(5), 1).any()  # a single sprite: always 0


def test_cut_walker_sequence_keeps_the_limb_motion():
    clip, objects = walking_donor()
    sprites, alphas = cut_walker_sequence(clip, objects, np.random.default_rng(0), min_frames=8, max_frames=12)
    assert sprites.shape == (12, 30, 12, 3) and alphas.shape == (12, 30, 12) and sprites.dtype == np.uint8
    legs = alphas[:, 20:, :] > 0.5  # the leg rows: left half on even frames, right half on odd ones
    left, right = legs[:, :, :5].mean(axis=(1, 2)), legs[:, :, 7:].mean(axis=(1, 2))
    assert np.all(np.abs(np.diff(left - right)) > 0.5)  # the swing alternates frame by frame
    assert (alphas[:, :18] > 0.5).mean() > 0.9  # the body is foreground on every frame
    with pytest.raises(ValueError, match="consecutive frames"):  # untracked objects: no run
        cut_walker_sequence(clip, ObjectTable.build(objects.frame, objects.xyxy), np.random.default_rng(0))
    merged, mobjects = walking_donor(merge_at=5)  # the box grows by 40 % after frame 5: the run breaks there
    with pytest.raises(ValueError, match="consecutive frames"):
        cut_walker_sequence(merged, mobjects, np.random.default_rng(0), min_frames=8, max_frames=8)


def test_planted_clip_pastes_the_indexed_sprite():
    base = grey_clip()
    sprites = np.stack([np.full((10, 6, 3), v, np.uint8) for v in (20, 120, 240)])
    alphas = np.ones((3, 10, 6), np.float32)
    alphas[2, :, 3:] = 0  # the third sprite covers only its left half
    top_left = np.full((T, 2), np.nan)
    top_left[5:8] = [[50, 40], [52, 40], [54, 40]]
    index = np.zeros(T, np.int64)
    index[5:8] = [0, 1, 2]
    clip = PlantedClip(base, sprites, alphas, top_left, "seq", sprite_index=index)
    assert clip.frame(5)[45, 53, 0] == 20 and clip.frame(6)[45, 55, 0] == 120 and clip.frame(7)[45, 55, 0] == 240
    assert clip.object_mask(7).sum() == 30 and clip.object_mask(6).sum() == 60
    np.testing.assert_array_equal(clip.frame(9), base.frame(9))
    with pytest.raises(ValueError, match="sprite_index"):
        PlantedClip(base, sprites, alphas, top_left, "bad", sprite_index=np.full(T, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        PlantedClip(base, sprites, alphas[:2], top_left, "bad")


@pytest.mark.parametrize("kind", [k for k in BEHAVIOURS if k != "cart"])
def test_animated_plants_walk_with_their_limbs_and_stand_still_when_loitering(kind):
    st = SceneStats.fit([walking_tracks()], 160, 120)
    base = grey_clip(num_frames=120)
    clip = plant_behaviour(base, kind, st, walking_donor(), np.random.default_rng(1), depth=1, animate=True)
    assert len(clip.sprites) > 1
    present = np.flatnonzero(clip.present)
    shown = clip.sprite_index[present]
    labelled = clip.labels[present]
    if kind == "loiter":  # standing: one sprite; walking in and out: the gait moves on
        assert len(np.unique(shown[labelled])) <= 2 and len(np.unique(shown[~labelled])) > 2
    else:
        assert len(np.unique(shown)) > 2
    rigid = plant_behaviour(base, kind, st, walking_donor(), np.random.default_rng(1), depth=1)
    assert len(rigid.sprites) == 1 and not rigid.sprite_index.any()


# ----- motion pattern ------------------------------------------------------------------------------------------

def _context(flow):
    ctx = FrameContext(0, np.zeros(flow.shape[:2] + (3,), np.uint8), None, None, None)
    ctx._flow = flow.astype(np.float32)
    return ctx


def test_motion_pattern_known_answers():
    feat = MotionPatternFeature(bands=4)
    flow = np.zeros((40, 60, 2), np.float32)
    flow[0:20, 0:10] = [2.0, 0.0]  # rigid: every pixel of box 0 moves (2, 0)
    # box 1, 20 rows: the top 15 rows move (1, 0), the bottom 5 (the legs) (3, 0)
    flow[0:15, 20:30] = [1.0, 0.0]
    flow[15:20, 20:30] = [3.0, 0.0]
    flow[25:35, 40:50] = [0.1, 0.1]  # box 2: standing (flow noise below the moving threshold)
    out = feat.compute(_context(flow), np.array([[0, 0, 10, 20], [20, 0, 30, 20], [40, 25, 50, 35]], np.float32))
    np.testing.assert_allclose(out[0], [0, 1, 1, 1, 1], atol=1e-6)
    mean = (15 * 1.0 + 5 * 3.0) / 20  # 1.5 px/frame
    articulation = (15 * 0.5 + 5 * 1.5) / 20 / mean
    np.testing.assert_allclose(out[1], [articulation, 1 / mean, 1 / mean, 1 / mean, 3 / mean],  # band 4: rows 15-19
                               rtol=1e-5)
    assert np.isnan(out[2]).all()
    # invariant to the direction and to the speed of the motion
    turned = np.zeros_like(flow)
    turned[0:15, 20:30] = [0.0, -2.0]
    turned[15:20, 20:30] = [0.0, -6.0]
    np.testing.assert_allclose(feat.compute(_context(turned), np.array([[20, 0, 30, 20]], np.float32))[0], out[1],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="bands"):
        MotionPatternFeature(bands=0)
