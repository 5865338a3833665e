"""Scene-context attributes (tao_lab.scorer.scene + AttributeScorer): known answers on hand-made scenes.

The scene: a fixed 360x240 camera with perspective (box height grows from 0.05 H at the horizon row to 0.3 H at
the bottom), people walking RIGHT along a band of the ground (foot y in [0.5, 0.9]) at 0.04 body heights per
frame, so far walkers are small and slow in pixels and near ones large and fast. Fitted on normal clips only.
"""
import numpy as np
import pytest

from tao_lab.scorer import scene
from tao_lab.types import ObjectTable

W, H, BINS = 360, 240, 8


def rel_height(foot_y):
    return 0.05 + 0.25 * (np.asarray(foot_y, float) - 0.5) / 0.4


def make_track(track_id, foot_x0, foot_y, frames, speed_rel=0.04, direction=0.0, start=0, jitter=0.0, rng=None):
    """One object's rows: (objects, features). direction in radians (0 = right, pi = left, pi/2 = down)."""
    rng = rng or np.random.default_rng(track_id)
    h = rel_height(foot_y) * H  # px
    w = 0.4 * h
    speed = speed_rel * h  # px/frame
    f = np.arange(start, start + frames)
    fx = foot_x0 * W + np.cos(direction) * speed * (f - start) + rng.normal(0, jitter, len(f))
    fy = foot_y * H + np.sin(direction) * speed * (f - start) + rng.normal(0, jitter, len(f))
    xyxy = np.stack([fx - w / 2, fy - h, fx + w / 2, fy], 1)
    place = np.stack([fx / W, fy / H, np.full(len(f), w / W), np.full(len(f), h / H), np.full(len(f), W),
                      np.full(len(f), H)], 1)
    vel = np.zeros((len(f), 3 + BINS), np.float32)
    sp = speed * (1 + rng.normal(0, 0.05, len(f))) if speed > 0 else np.zeros(len(f))
    vel[:, 0] = sp
    vel[:, 1] = sp
    vel[:, 2] = sp * 1.2
    b = int(round((direction % (2 * np.pi)) / (2 * np.pi / BINS))) % BINS
    vel[:, 3 + b] = sp
    obj = ObjectTable.build(f, xyxy, track_id=np.full(len(f), track_id))
    return obj, {"velocity": vel, "place": place.astype(np.float32)}


def concat(parts):
    objs = ObjectTable.concat([p[0] for p in parts])
    feats = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return objs, feats


def normal_clip(seed, num_frames=120):
    rng = np.random.default_rng(seed)
    parts = []
    for t in range(14):
        foot_y = rng.uniform(0.5, 0.9)
        start = int(rng.integers(0, num_frames - 60))
        parts.append(make_track(seed * 100 + t, rng.uniform(0.05, 0.3), foot_y, 60, start=start, jitter=0.3,
                                rng=rng))
    objs, feats = concat(parts)
    return objs, feats, num_frames


SCENE_ATTRIBUTES = {
    "speed_place": {"feature": "velocity", "columns": [0], "model": "gmm", "tail": "upper", "by_place": "ratio",
                    "calibration": "in_sample", "group": "motion", "grid": [4, 4]},
    "speed_rel": {"feature": "scene.speed_rel", "columns": [0], "model": "gmm", "tail": "upper",
                  "calibration": "in_sample", "group": "motion"},
    "place": {"model": "occupancy", "calibration": "loo", "grid": [12, 12]},
    "direction": {"feature": "velocity", "columns": list(range(3, 3 + BINS)), "model": "direction",
                  "calibration": "loo", "grid": [4, 4]},
    "dwell": {"feature": "scene.dwell", "model": "gmm", "tail": "upper", "by_place": "ratio", "calibration": "loo",
              "grid": [4, 4]},
    "size": {"feature": "scene.size", "columns": [2], "model": "gmm", "tail": "upper", "by_place": "standardize",
             "calibration": "in_sample", "grid": [4, 4]},
}


@pytest.fixture(scope="module")
def fitted():
    from tao_lab.scorer import AttributeScorer

    return AttributeScorer(attributes=SCENE_ATTRIBUTES, frame_sigma=0).fit_clips([normal_clip(s) for s in range(4)])


def parts_of(scorer, track, name):
    objs, feats = track
    return scorer.object_parts(objs, feats)[name]


def reloaded(scorer, tmp_path, objs=None, feats=None, num_frames=40):
    """The scorer saved and loaded back; with objects, also checks the loaded one scores them identically."""
    from tao_lab.scorer import AttributeScorer

    path = tmp_path / "scorer.ckpt"
    scorer.save_checkpoint(path)
    loaded = AttributeScorer.load_from_checkpoint(path)
    if objs is not None:
        assert np.array_equal(loaded.score_clip(objs, feats, num_frames).objects.score,
                              scorer.score_clip(objs, feats, num_frames).objects.score)
    return loaded


def test_expected_height_is_robust_to_merged_groups_and_fragments():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (2000, 2))
    true = 0.02 + 0.01 * xy[:, 0] + 0.3 * xy[:, 1]
    h = true * (1 + rng.normal(0, 0.03, len(xy)))
    bad = rng.random(len(xy)) < 0.3  # 30% merged groups (2-3x too large) or fragments (a third)
    h[bad] *= rng.choice([0.33, 2.0, 3.0], bad.sum())
    model = scene.fit_expected_height(xy, h)
    assert np.allclose(model[:3], [0.02, 0.01, 0.3], atol=0.012)
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(h)), xy]), h, rcond=None)[0]
    assert abs(ols[2] - 0.3) > abs(model[2] - 0.3)  # the L1 fit beats least squares here


def test_quantile_plane_fits_the_asked_quantile():
    """Heights uniform in [0.5, 1.5] x a plane: the q-quantile plane is (0.5 + q) x that plane."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1, (4000, 2))
    plane = 0.05 + 0.02 * xy[:, 0] + 0.2 * xy[:, 1]
    h = plane * rng.uniform(0.5, 1.5, len(xy))
    for q in (0.25, 0.5, 0.75):
        model = scene.fit_expected_height(xy, h, quantile=q)
        assert np.allclose(model[:3], (0.5 + q) * np.array([0.05, 0.02, 0.2]), atol=0.01), (q, model)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="quantile must be in"):
            scene.fit_expected_height(xy, h, quantile=bad)


def _crowded_walkway(seed=0):
    """Boxes of a walkway whose near half (foot y > 0.5) is crowded: there two people one behind the other in one blob
    (1.8x a person's height) are 60% of the boxes, the most common box; pieces (0.45x) are 8% everywhere."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, (6000, 2))
    person = 0.06 + 0.01 * xy[:, 0] + 0.12 * xy[:, 1]
    h = person * np.exp(rng.normal(0, 0.04, len(xy)))
    kind = rng.random(len(xy))
    pair = (xy[:, 1] > 0.5) & (kind < 0.6)
    piece = ~pair & (kind > 0.92)
    h[pair] *= 1.8
    h[piece] *= 0.45
    return xy, h, person


def test_mode_plane_follows_single_objects_where_merged_pairs_are_the_most_common_box():
    """Known answer: the mode fit recovers a person's height (within 4% at every foot row) where the median plane
    follows the merged pairs near the camera (over 20% too tall at foot row 0.9); on boxes of single objects only,
    the two fits agree."""
    xy, h, person = _crowded_walkway()
    rows = np.array([[0.5, y] for y in (0.1, 0.5, 0.9)])
    truth = 0.06 + 0.01 * 0.5 + 0.12 * rows[:, 1]
    mode = scene.expected_height(scene.fit_height_model(xy, h, "mode"), rows)
    median = scene.expected_height(scene.fit_height_model(xy, h, "median"), rows)
    assert np.all(np.abs(mode / truth - 1) < 0.04), mode / truth
    assert median[2] / truth[2] > 1.2, median / truth
    single = np.abs(np.log(h / person)) < 0.2
    both = [scene.expected_height(scene.fit_height_model(xy[single], h[single], fit), rows) for fit in ("median", "mode")]
    assert np.allclose(both[0], both[1], rtol=0.03)
    with pytest.raises(ValueError, match="height_fit must be one of"):
        scene.fit_height_model(xy, h, "mean")
    with pytest.raises(ValueError, match="sigma must be"):
        scene.fit_modal_height(xy, h, sigma=0.0)


def test_scorer_height_fit_key_fits_the_mode_plane_and_round_trips(tmp_path):
    """The scorer's expected-height plane is the mode plane with height_fit=mode (the same plane as
    scene.fit_height_model on its training boxes), the median one by default; the key is saved with the checkpoint
    and a bad value is refused."""
    from omegaconf import OmegaConf

    from helpers import CONFIG_DIR
    from tao_lab.scorer import AttributeScorer

    attrs = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "scorer" / "attribute.yaml"))["attributes"]
    spec = {"dwell": attrs["dwell"]}
    rng = np.random.default_rng(3)
    clips = []
    for seed in range(3):
        objs, feats, _ = normal_clip(seed)
        place = feats["place"].copy()  # near the camera, 60% of the boxes are merged pairs 1.8x as tall
        place[(place[:, 1] > 0.7) & (rng.random(len(place)) < 0.6), 3] *= 1.8
        clips.append((objs, {**feats, "place": place}, 120))
    place = np.concatenate([c[1]["place"] for c in clips])
    fits = {fit: AttributeScorer(attributes=spec, frame_sigma=0, height_fit=fit).fit_clips(clips)
            for fit in ("median", "mode")}
    for fit, scorer in fits.items():
        np.testing.assert_allclose(scorer.scene__height.numpy(), scene.fit_height_model(place[:, :2], place[:, 3], fit))
    near = np.array([[0.5, 0.9]])
    ratio = (scene.expected_height(fits["median"].scene__height.numpy(), near)
             / scene.expected_height(fits["mode"].scene__height.numpy(), near))
    assert ratio[0] > 1.1, ratio  # the two fits differ here, so the key is seen to reach the fit
    assert AttributeScorer(attributes=spec).height_fit == "median"
    loaded = reloaded(fits["mode"], tmp_path, *clips[0][:2], num_frames=120)
    assert loaded.height_fit == "mode"
    np.testing.assert_array_equal(loaded.scene__height.numpy(), fits["mode"].scene__height.numpy())
    with pytest.raises(ValueError, match="height_fit must be one of"):
        AttributeScorer(attributes=spec, height_fit="mean")


def test_scorer_dwell_height_key_reaches_the_dwell_feature_and_round_trips(tmp_path):
    """With dwell_height=own the scorer's scene.dwell is derived_quantities' with the object's own height (different
    from the default's on these clips, whose boxes are not the plane's height); saved with the checkpoint; refused
    when unknown."""
    from omegaconf import OmegaConf

    from helpers import CONFIG_DIR
    from tao_lab.scorer import AttributeScorer

    attrs = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "scorer" / "attribute.yaml"))["attributes"]
    spec = {"dwell": attrs["dwell"]}
    clips = [(*normal_clip(seed)[:2], 120) for seed in range(3)]
    objs, feats = normal_clip(7)[:2]
    feats = {**feats, "place": feats["place"].copy()}
    feats["place"][:, 3] *= 0.5  # boxes half the height the plane expects
    got = {}
    for which in scene.DWELL_HEIGHTS:
        scorer = AttributeScorer(attributes=spec, frame_sigma=0, dwell_height=which).fit_clips(clips)
        want = scene.derived_quantities(objs, feats, scorer.scene__height.numpy(), scorer.dwell_radius,
                                        dwell_height=which)["scene.dwell"]
        got[which] = scorer._features(objs, feats)["scene.dwell"]
        np.testing.assert_array_equal(got[which], want)
    assert got["own"].sum() < got["expected"].sum()
    assert np.array_equal(got["smaller"], got["own"])  # every box is under the plane here
    loaded = reloaded(scorer, tmp_path, objs, feats, num_frames=120)
    assert scene.DWELL_HEIGHTS[-1] == "smaller" and loaded.dwell_height == "smaller"
    with pytest.raises(ValueError, match="dwell_height must be one of"):
        AttributeScorer(attributes=spec, dwell_height="plane")


def test_dwell_counts_frames_within_the_radius():
    f = np.arange(10)
    x = np.array([0, 10, 20, 30, 31, 32, 31, 30, 31, 60], float)  # walks, stays 5 frames, jumps away
    objs = ObjectTable.build(f, np.zeros((10, 4)), track_id=np.zeros(10))
    d = scene.dwell_frames(objs, np.stack([x, np.zeros(10)], 1), np.full(10, 5.0))
    # frame i: frames since the last detection farther than 5 px (or the track start)
    assert d.tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 0]
    untracked = ObjectTable.build(f, np.zeros((10, 4)))
    assert scene.dwell_frames(untracked, np.zeros((10, 2)), np.ones(10)).tolist() == [0] * 10


def test_dwell_radius_in_the_objects_own_height():
    """Known answers: a walker 20 px tall moving 1 px/frame where the scene's plane expects 80 px. With dwell_radius
    0.5 of the expected height (40 px) it has stayed 40 frames from frame 41 on; of its own height (10 px), 10 frames;
    of the smaller of the two, 10 frames, and 40 for a merged blob 160 px tall; a bad value is refused."""
    n, W, H = 60, 320, 240
    x = 100 + np.arange(n, dtype=np.float64)
    objs = ObjectTable.build(np.arange(n), np.stack([x - 4, np.full(n, 180), x + 4, np.full(n, 200)], 1),
                             track_id=np.zeros(n))
    place = np.stack([x / W, np.full(n, 200 / H), np.full(n, 8 / W), np.full(n, 20 / H), np.full(n, W),
                      np.full(n, H)], 1)
    model = np.array([80 / H, 0.0, 0.0, 0.01])
    dwell = {which: scene.derived_quantities(objs, {"place": place}, model, 0.5, dwell_height=which)["scene.dwell"][:, 0]
             for which in scene.DWELL_HEIGHTS}
    assert dwell["expected"].tolist() == list(range(41)) + [40] * (n - 41)
    assert dwell["own"].tolist() == list(range(11)) + [10] * (n - 11)
    assert dwell["smaller"].tolist() == dwell["own"].tolist()  # the box is the smaller here
    tall = place.copy()
    tall[:, 3] = 160 / H  # a merged blob twice the expected height: the expected height is the smaller
    smaller = scene.derived_quantities(objs, {"place": tall}, model, 0.5, dwell_height="smaller")["scene.dwell"][:, 0]
    assert smaller.tolist() == dwell["expected"].tolist()
    with pytest.raises(ValueError, match="dwell_height must be one of"):
        scene.derived_quantities(objs, {"place": place}, model, 0.5, dwell_height="plane")


def test_still_dwell_counts_only_the_stays_still_detections():
    """dwell_frames(still=...): the same stays, counting only the frames that ended at a still detection; a walker
    that stays within the radius while moving (into the depth of the picture) counts nothing."""
    f = np.arange(10)
    x = np.array([0, 10, 20, 30, 31, 32, 31, 30, 31, 60], float)
    objs = ObjectTable.build(f, np.zeros((10, 4)), track_id=np.zeros(10))
    still = np.array([0, 0, 0, 1, 1, 0, 1, 1, 1, 1], bool)
    d = scene.dwell_frames(objs, np.stack([x, np.zeros(10)], 1), np.full(10, 5.0), still)
    # stay from frame 3: frames 4..i that ended at a still detection; frame 9 jumped away and starts a new stay
    assert d.tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 4, 0]
    gaps = ObjectTable.build(np.array([0, 2, 5, 6]), np.zeros((4, 4)), track_id=np.zeros(4))
    # an object still at every detection counts its whole stay, missed frames included (the plain count)
    assert scene.dwell_frames(gaps, np.zeros((4, 2)), np.full(4, 5.0), np.ones(4, bool)).tolist() == [0, 2, 5, 6]
    assert scene.dwell_frames(gaps, np.zeros((4, 2)), np.full(4, 5.0)).tolist() == [0, 2, 5, 6]
    moving = scene.dwell_frames(objs, np.zeros((10, 2)), np.full(10, 5.0), np.zeros(10, bool))
    assert moving.tolist() == [0] * 10


def test_dwell_still_speed_reads_the_velocity_features_p90_column():
    """derived_quantities(dwell_still_speed=0.5): a track whose box's 90th-percentile flow is 0.2 px/frame is still,
    one at 1.0 is not (both stay put); without the velocity feature the option is refused with a clear message."""
    n = 6
    objs = ObjectTable.build(np.r_[np.arange(3), np.arange(3)], np.tile([[10, 10, 20, 40]], (n, 1)),
                             track_id=np.r_[np.zeros(3), np.ones(3)])
    place = np.tile([[0.15, 0.4, 0.1, 0.3, 100.0, 100.0]], (n, 1))
    velocity = np.zeros((n, 11))
    velocity[:3, 1], velocity[3:, 1] = 0.2, 1.0
    height = np.array([0.3, 0.0, 0.0, 0.01])
    out = scene.derived_quantities(objs, {"place": place, "velocity": velocity}, height, 0.5, dwell_still_speed=0.5)
    assert out["scene.dwell"][:, 0].tolist() == [0, 1, 2, 0, 0, 0]
    plain = scene.derived_quantities(objs, {"place": place, "velocity": velocity}, height, 0.5)
    assert plain["scene.dwell"][:, 0].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="dwell_still_speed needs the velocity feature"):
        scene.derived_quantities(objs, {"place": place}, height, 0.5, dwell_still_speed=0.5)


def test_a_stay_starts_after_the_last_detection_cut_off_by_the_bottom_edge():
    """dwell_frames(breaks=...): a walker coming in through the bottom edge (frames 0-5: box bottom on the edge,
    creeping 0.5 px/frame) then standing: its stay is counted from frame 6, not from the track's start; a cut-off
    detection has stayed 0 frames; with still=... the same start."""
    n = 10
    objs = ObjectTable.build(np.arange(n), np.zeros((n, 4)), track_id=np.zeros(n))
    foot = np.column_stack([np.arange(n) * 0.5, np.full(n, 100.0)])
    cut = np.arange(n) < 6
    assert scene.dwell_frames(objs, foot, np.full(n, 20.0)).tolist() == list(range(10))
    assert scene.dwell_frames(objs, foot, np.full(n, 20.0), breaks=cut).tolist() == [0] * 7 + [1, 2, 3]
    still = scene.dwell_frames(objs, foot, np.full(n, 20.0), np.ones(n, bool), breaks=cut)
    assert still.tolist() == [0] * 7 + [1, 2, 3]  # still at every detection: the plain count
    # a cut-off detection in the middle of a stay (the walker steps back onto the edge) starts it again
    mid = np.zeros(n, bool)
    mid[4] = True
    assert scene.dwell_frames(objs, foot, np.full(n, 20.0), breaks=mid).tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 3, 4]


def test_dwell_stay_edge_reads_the_box_bottom_against_the_frame_height():
    """derived_quantities(dwell_stay_edge=0.01): boxes whose bottom lies within 1% of the frame height of the bottom
    edge end the stay, as footprint_edge leaves them out of the attribute; the scorer refuses other values."""
    from tao_lab.scorer import AttributeScorer

    n = 6
    objs = ObjectTable.build(np.arange(n), np.tile([[10, 60, 20, 100]], (n, 1)), track_id=np.zeros(n))
    place = np.tile([[0.15, 0.5, 0.1, 0.4, 100.0, 100.0]], (n, 1))
    place[:3, 1] = 0.995                                              # frames 0-2: feet cut off by the edge
    height = np.array([0.3, 0.0, 0.0, 0.01])
    out = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_edge=0.01)
    assert out["scene.dwell"][:, 0].tolist() == [0, 0, 0, 0, 1, 2]
    plain = scene.derived_quantities(objs, {"place": place}, height, 5.0)
    assert plain["scene.dwell"][:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="dwell_stay_edge must be a fraction"):
        AttributeScorer(dwell_stay_edge=0.7)


def test_dwell_both_ways_reads_the_whole_stay_from_the_moment_the_object_stops():
    """dwell_frames(both_ways=True): a walker (10 px/frame) that stands at x = 50 on frames 5-14 and walks on: every
    standing detection reads the whole stay (9 frames: 5 -> 14), where the past-only count grows 0..9; walking
    detections read 0 either way; the last detection of a clip (a stream's current frame) reads the stay so far; a
    break (a cut-off detection) ends the stay ahead as it does behind; derived_quantities(dwell_span=...) and the
    scorer refuse other spans and keep the key."""
    from tao_lab.scorer import AttributeScorer

    x = np.r_[np.arange(5) * 10.0, np.full(10, 50.0), 60 + np.arange(5) * 10.0]
    n = len(x)
    objs = ObjectTable.build(np.arange(n), np.zeros((n, 4)), track_id=np.zeros(n))
    foot = np.stack([x, np.zeros(n)], 1)
    past = scene.dwell_frames(objs, foot, np.full(n, 5.0))
    both = scene.dwell_frames(objs, foot, np.full(n, 5.0), both_ways=True)
    assert past.tolist() == [0] * 5 + list(range(10)) + [0] * 5
    assert both.tolist() == [0] * 5 + [9] * 10 + [0] * 5
    # a stream that has seen frames 0-9 only: its current (last) detection reads the stay so far, 4 frames
    seen = ObjectTable.build(np.arange(10), np.zeros((10, 4)), track_id=np.zeros(10))
    assert scene.dwell_frames(seen, foot[:10], np.full(10, 5.0), both_ways=True)[-1] == past[9] == 4
    # a break on frame 10 ends the stay ahead of frames 5-9 and starts a new one after it
    cut = np.zeros(n, bool)
    cut[10] = True
    broken = scene.dwell_frames(objs, foot, np.full(n, 5.0), breaks=cut, both_ways=True)
    assert broken.tolist() == [0] * 5 + [4] * 5 + [0] + [3] * 4 + [0] * 5
    # still frames only (every detection still): the same whole stays
    assert scene.dwell_frames(objs, foot, np.full(n, 5.0), np.ones(n, bool), both_ways=True).tolist() == both.tolist()
    place = np.column_stack([x / 100.0, np.full(n, 0.5), np.full(n, 0.05), np.full(n, 0.1), np.full(n, 100.0),
                             np.full(n, 100.0)])
    height = np.array([0.1, 0.0, 0.0, 0.01])  # expected height 10 px: radius 0.5 -> 5 px
    out = scene.derived_quantities(objs, {"place": place}, height, 0.5, dwell_span="stay")
    assert out["scene.dwell"][:, 0].tolist() == both.tolist()
    with pytest.raises(ValueError, match="dwell_span must be one of"):
        scene.derived_quantities(objs, {"place": place}, height, 0.5, dwell_span="future")
    with pytest.raises(ValueError, match="dwell_span must be one of"):
        AttributeScorer(dwell_span="whole")
    assert AttributeScorer(dwell_span="stay").hparams["dwell_span"] == "stay"


def test_heading_is_where_the_footprint_went_over_the_window():
    """heading_histogram: a track walking right at 2 px/frame then down at 1 px/frame reads 2.0 in bin 0 (angle 0),
    then 1.0 in bin 2 (pi/2) once its window holds only the downward part; the first detection, an untracked object
    and a detection cut off (a break) read zeros, and the displacement never reaches back over a break."""
    n = 30
    x = np.r_[np.arange(15) * 2.0, np.full(15, 28.0)]
    y = np.r_[np.zeros(15), np.arange(1, 16) * 1.0]
    objs = ObjectTable.build(np.arange(n), np.zeros((n, 4)), track_id=np.zeros(n))
    foot = np.stack([x, y], 1)
    h = scene.heading_histogram(objs, foot, 8, 8)
    assert h.shape == (30, 8) and not h[0].any()
    np.testing.assert_allclose(h[1:15, 0], 2.0)                    # walking right
    assert not np.delete(h[1:15], 0, axis=1).any()
    np.testing.assert_allclose(h[23:, 2], 1.0)                     # window wholly on the downward part
    assert not np.delete(h[23:], 2, axis=1).any()
    np.testing.assert_allclose(h.sum(1)[15:23], np.hypot(x[15:23] - x[7:15], y[15:23] - y[7:15]) / 8)  # the turn
    untracked = ObjectTable.build(np.arange(n), np.zeros((n, 4)), track_id=np.full(n, -1))
    assert not scene.heading_histogram(untracked, foot, 8, 8).any()
    cut = np.zeros(n, bool)
    cut[5] = True
    hb = scene.heading_histogram(objs, foot, 8, 8, breaks=cut)
    assert not hb[5].any() and not hb[6].any()                      # the break, and the detection right after it
    np.testing.assert_allclose(hb[7, 0], 2.0)                      # from detection 6, not across the break
    np.testing.assert_allclose(hb[:5], h[:5])
    np.testing.assert_allclose(hb[14:], h[14:])                    # window no longer reaches the break


def test_cut_by_side_reads_the_box_sides_against_the_frame_width():
    """cut_by_side(edge): a box whose left or right side lies within ``edge`` of the frame width of a side edge; the
    bottom and top edges do not count (feet_cut_off is the bottom's)."""
    #                 foot x, foot y, w, h (frame-relative), W, H
    place = np.array([[0.05, 0.5, 0.1, 0.2, 360, 240],      # left side at 0.0: cut
                      [0.06, 0.5, 0.1, 0.2, 360, 240],      # left side at 0.01: within 1%
                      [0.07, 0.5, 0.1, 0.2, 360, 240],      # left side at 0.02: inside
                      [0.95, 0.5, 0.1, 0.2, 360, 240],      # right side at 1.0: cut
                      [0.90, 0.5, 0.1, 0.2, 360, 240],      # right side at 0.95: inside
                      [0.50, 1.0, 0.1, 0.2, 360, 240]])     # on the bottom edge only: not a side
    assert scene.cut_by_side(place, 0.01).tolist() == [True, True, False, True, False, False]
    assert scene.cut_by_side(place, 0.0).tolist() == [True, False, False, True, False, False]


def test_dwell_stay_side_edge_ends_a_stay_at_a_side_edge():
    """derived_quantities(dwell_stay_side_edge=0.01): a walker coming in through the left edge (frames 0-3: its box
    reaches the edge while it comes into view, its bottom centre creeping at half its speed) then standing: the stay
    counts from the first detection wholly inside; both edges together; the scorer refuses other values and keeps the
    key through its hyperparameters."""
    from tao_lab.scorer import AttributeScorer

    n = 8
    objs = ObjectTable.build(np.arange(n), np.tile([[0, 60, 10, 100]], (n, 1)), track_id=np.zeros(n))
    place = np.tile([[0.2, 0.5, 0.1, 0.4, 100.0, 100.0]], (n, 1))
    place[:4, 0] = [0.02, 0.03, 0.04, 0.05]  # left side at -0.03 .. 0.0: cut by the left edge
    height = np.array([0.3, 0.0, 0.0, 0.01])
    plain = scene.derived_quantities(objs, {"place": place}, height, 5.0)
    assert plain["scene.dwell"][:, 0].tolist() == list(range(n))
    side = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_side_edge=0.01)
    assert side["scene.dwell"][:, 0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    place[6, 1] = 0.995  # feet cut off by the bottom edge at frame 6: with both keys a stay starts again after it
    both = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_edge=0.01,
                                    dwell_stay_side_edge=0.01)
    assert both["scene.dwell"][:, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="dwell_stay_side_edge must be a fraction"):
        AttributeScorer(dwell_stay_side_edge=0.5)
    assert AttributeScorer(dwell_stay_side_edge=0.01).hparams["dwell_stay_side_edge"] == 0.01


def test_box_jumps_mark_a_width_or_height_change_beyond_the_factor_within_a_track():
    """scene.box_jumps: per track in frame order (rows given out of order), a detection whose box width or height
    changed by more than the factor either way from the previous detection of its track; a track's first detection,
    a one-detection track and an untracked object never jump; the factor must exceed 1."""
    # track 0 in frames 0..4 (rows shuffled), track 1 in frames 0..1, track 2 a single detection, one untracked
    frames = np.array([2, 0, 4, 1, 3, 0, 1, 0, 5])
    tracks = np.array([0, 0, 0, 0, 0, 1, 1, 2, -1])
    objs = ObjectTable.build(frames, np.zeros((9, 4)), track_id=tracks)
    place = np.tile([[0.5, 0.5, 0.1, 0.2, 100.0, 100.0]], (9, 1))
    # track 0 by frame: w 0.10, 0.12 (x1.2), 0.25 (x2.08: a merge), 0.25, 0.25 with h 0.2 -> 0.09 (x1/2.2)
    place[[1, 3, 0, 4, 2], 2] = [0.10, 0.12, 0.25, 0.25, 0.25]
    place[2, 3] = 0.09
    place[6, 3] = 0.45  # track 1's second detection: 2.25x taller
    place[8, 2] = 0.9   # untracked: no previous detection, whatever its size
    assert scene.box_jumps(objs, place, 2.0).tolist() == [True, False, True, False, False, False, True, False, False]
    assert scene.box_jumps(objs, place, 1.15).tolist() == [True, False, True, True, False, False, True, False,
                                                           False]
    assert scene.box_jumps(objs, place, 2.5).tolist() == [False] * 9
    with pytest.raises(ValueError, match="must be > 1"):
        scene.box_jumps(objs, place, 1.0)


def test_dwell_stay_jump_ends_a_stay_where_the_box_jumps():
    """derived_quantities(dwell_stay_jump=1.5): an object standing still for 8 frames whose box doubles in width at
    frame 4 (a passer-by merged with it, or the track handed to another object) counts its stay again from there, the
    jump's own frame the first of the new stay (a cut-off break's frame counts 0); the stay is unchanged without the
    key; the scorer refuses a factor <= 1 and keeps the key through its
    hyperparameters."""
    from tao_lab.scorer import AttributeScorer

    n = 8
    objs = ObjectTable.build(np.arange(n), np.tile([[0, 60, 10, 100]], (n, 1)), track_id=np.zeros(n))
    place = np.tile([[0.5, 0.5, 0.1, 0.4, 100.0, 100.0]], (n, 1))
    place[4:, 2] = 0.2
    height = np.array([0.3, 0.0, 0.0, 0.01])
    plain = scene.derived_quantities(objs, {"place": place}, height, 5.0)
    assert plain["scene.dwell"][:, 0].tolist() == list(range(n))
    jump = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_jump=1.5)
    assert jump["scene.dwell"][:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # each detection's whole stay (dwell_span stay): the stay before the jump and the one from it, 3 frames each
    whole = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_span="stay", dwell_stay_jump=1.5)
    assert whole["scene.dwell"][:, 0].tolist() == [3] * n
    with pytest.raises(ValueError, match="dwell_stay_jump must be a box size factor"):
        AttributeScorer(dwell_stay_jump=1.0)
    assert AttributeScorer(dwell_stay_jump=1.5).hparams["dwell_stay_jump"] == 1.5


def test_track_gaps_mark_a_detection_after_more_missed_frames_than_the_limit():
    """scene.track_gaps: per track in frame order (rows given out of order), a detection that comes more than
    ``max_gap`` frames after the previous detection of its track; a track's first detection, a one-detection track and
    an untracked object never follow a gap; the limit must be at least one frame."""
    # track 0 in frames 0, 1, 3, 9, 10 (rows shuffled: steps 1, 2, 6, 1), track 1 in frames 4 and 8, track 2 alone
    frames = np.array([9, 0, 3, 1, 10, 4, 8, 20, 30])
    tracks = np.array([0, 0, 0, 0, 0, 1, 1, 2, -1])
    objs = ObjectTable.build(frames, np.zeros((9, 4)), track_id=tracks)
    assert scene.track_gaps(objs, 5).tolist() == [True, False, False, False, False, False, False, False, False]
    assert scene.track_gaps(objs, 3).tolist() == [True, False, False, False, False, False, True, False, False]
    assert scene.track_gaps(objs, 1).tolist() == [True, False, True, False, False, False, True, False, False]
    assert scene.track_gaps(objs, 6).tolist() == [False] * 9
    with pytest.raises(ValueError, match="at least 1 frame"):
        scene.track_gaps(objs, 0)


def test_dwell_stay_gap_starts_a_new_stay_after_a_gap_in_the_track():
    """derived_quantities(dwell_stay_gap=G): a still object seen in frames 0-3 and again in frames 10-13 (a gap of 7
    frames, in which the tracker may have handed its track to someone else) stays 0-3 and 10-13 frames without the key;
    with G 5 the stay begins again at frame 10 (its first frame), with G 7 the gap is within the limit and nothing
    changes; a box jump and a gap both start stays; the scorer refuses anything but a whole number of frames >= 1 and
    keeps the key through its hyperparameters."""
    from tao_lab.scorer import AttributeScorer

    frames = np.array([0, 1, 2, 3, 10, 11, 12, 13])
    n = len(frames)
    objs = ObjectTable.build(frames, np.tile([[0, 60, 10, 100]], (n, 1)), track_id=np.zeros(n))
    place = np.tile([[0.5, 0.5, 0.1, 0.4, 100.0, 100.0]], (n, 1))
    height = np.array([0.3, 0.0, 0.0, 0.01])
    plain = scene.derived_quantities(objs, {"place": place}, height, 5.0)
    assert plain["scene.dwell"][:, 0].tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    gap = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_gap=5)
    assert gap["scene.dwell"][:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    within = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_gap=7)
    assert within["scene.dwell"][:, 0].tolist() == plain["scene.dwell"][:, 0].tolist()
    place[2:, 2] = 0.25  # the box is 2.5x wider from frame 2 on: a jump at frame 2, then the gap at frame 10
    both = scene.derived_quantities(objs, {"place": place}, height, 5.0, dwell_stay_jump=2.0, dwell_stay_gap=5)
    assert both["scene.dwell"][:, 0].tolist() == [0, 1, 0, 1, 0, 1, 2, 3]
    for bad in (0, 2.5, True, "3"):
        with pytest.raises(ValueError, match="dwell_stay_gap must be a whole number of frames"):
            AttributeScorer(dwell_stay_gap=bad)
    assert AttributeScorer(dwell_stay_gap=5).hparams["dwell_stay_gap"] == 5
    assert AttributeScorer().hparams["dwell_stay_gap"] is None


def test_dwell_stay_chain_carries_a_stay_across_a_track_break():
    """derived_quantities(dwell_stay_chain=True): a still object tracked as track 0 in frames 0-5, lost, and tracked
    again as track 1 from frame 9 at the same spot goes on with track 0's stay (5 frames at frame 5, plus the 4 frames
    between): 9-12 at frames 9-12. Not chained: a new track starting farther than the radius away; one starting
    after more than dwell_stay_gap frames; one whose box is more than dwell_stay_jump times larger; one that begins
    while the old track is still seen. A lost track hands its stay to one new track only (the nearer); the carried
    stay ends where the new track's own stay restarts (it walks off and stops again)."""
    from tao_lab.scorer import AttributeScorer

    def dwell(frames, tracks, feet_x, widths=None, **kw):
        n = len(frames)
        objs = ObjectTable.build(np.asarray(frames), np.tile([[0, 60, 10, 100]], (n, 1)), track_id=np.asarray(tracks))
        place = np.tile([[0.5, 0.5, 0.1, 0.4, 100.0, 100.0]], (n, 1))
        place[:, 0] = feet_x
        if widths is not None:
            place[:, 2] = widths
        # expected height 0.3 of the frame (30 px): radius 0.5 x 30 = 15 px, i.e. 0.15 of the frame's width
        out = scene.derived_quantities(objs, {"place": place}, np.array([0.3, 0.0, 0.0, 0.01]), 0.5, **kw)
        return out["scene.dwell"][:, 0].tolist()

    frames = [0, 1, 2, 3, 4, 5, 9, 10, 11, 12]
    tracks = [0] * 6 + [1] * 4
    at = [0.5] * 10
    assert dwell(frames, tracks, at, dwell_stay_gap=10) == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    chained = dwell(frames, tracks, at, dwell_stay_gap=10, dwell_stay_chain=True)
    assert chained == [0, 1, 2, 3, 4, 5, 9, 10, 11, 12]
    # 0.2 of the frame away (20 px > 15 px): another object
    assert dwell(frames, tracks, [0.5] * 6 + [0.7] * 4, dwell_stay_gap=10, dwell_stay_chain=True)[6:] == [0, 1, 2, 3]
    # lost for 4 frames > a gap limit of 3
    assert dwell(frames, tracks, at, dwell_stay_gap=3, dwell_stay_chain=True)[6:] == [0, 1, 2, 3]
    # the new box 3x wider than the old: with the jump limit another object, without it the same
    wide = [0.1] * 6 + [0.3] * 4
    assert dwell(frames, tracks, at, wide, dwell_stay_gap=10, dwell_stay_jump=2.0, dwell_stay_chain=True)[6:] == \
        [0, 1, 2, 3]
    assert dwell(frames, tracks, at, wide, dwell_stay_gap=10, dwell_stay_chain=True)[6:] == [9, 10, 11, 12]
    # track 0 still seen in track 1's first frame: two objects side by side, not one tracked again
    assert dwell([0, 1, 2, 3, 3, 4], [0, 0, 0, 0, 1, 1], [0.5] * 6, dwell_stay_gap=10,
                 dwell_stay_chain=True)[4:] == [0, 1]
    # two new tracks where one was lost: the nearer (0.05 away) takes the stay, the other (0.1 away) starts its own
    two = dwell(frames[:6] + [9, 10, 9, 10], [0] * 6 + [1, 1, 2, 2], [0.5] * 6 + [0.6, 0.6, 0.55, 0.55],
                dwell_stay_gap=10, dwell_stay_chain=True)
    assert two[6:] == [0, 1, 9, 10]
    # the new track walks off at frame 11 and stands again: its stay there starts afresh
    assert dwell(frames, tracks, [0.5] * 8 + [0.9, 0.9], dwell_stay_gap=10, dwell_stay_chain=True)[6:] == \
        [9, 10, 0, 1]
    # chained twice: a third track takes over the second's stay, carried stay included
    three = dwell([0, 1, 3, 4, 6, 7], [0, 0, 1, 1, 2, 2], [0.5] * 6, dwell_stay_gap=10, dwell_stay_chain=True)
    assert three == [0, 1, 3, 4, 6, 7]
    with pytest.raises(ValueError, match="needs dwell_stay_gap"):
        dwell(frames, tracks, at, dwell_stay_chain=True)
    with pytest.raises(ValueError, match="stay so far"):
        dwell(frames, tracks, at, dwell_stay_gap=10, dwell_stay_chain=True, dwell_span="stay")
    for bad in ({"dwell_stay_chain": True}, {"dwell_stay_chain": True, "dwell_stay_gap": 10, "dwell_span": "stay"},
                {"dwell_stay_chain": "yes", "dwell_stay_gap": 10}):
        with pytest.raises(ValueError, match="dwell_stay_chain"):
            AttributeScorer(**bad)
    assert AttributeScorer(dwell_stay_gap=10, dwell_stay_chain=True).hparams["dwell_stay_chain"] is True
    assert AttributeScorer().hparams["dwell_stay_chain"] is False


def test_size_columns_are_log_sizes_against_the_expected_height_and_the_box_shape_in_pixels():
    """scene.size: log width, height and area against the expected height at the footprint (frame-relative), and
    log(width / height) of the box in pixels (a 40x20 px box on a 360x240 frame: log 2, whatever the frame's shape)."""
    boxes = np.array([[100, 100, 140, 120], [10, 40, 20, 90]], np.float32)   # 40x20 px and 10x50 px
    objs = ObjectTable.build(np.arange(2), boxes, track_id=np.arange(2))
    w, h = (boxes[:, 2] - boxes[:, 0]) / W, (boxes[:, 3] - boxes[:, 1]) / H
    place = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / W, boxes[:, 3] / H, w, h, np.full(2, W), np.full(2, H)], 1)
    height = np.array([0.2, 0.0, 0.0, 0.01])  # expected height 0.2 of the frame everywhere
    size = scene.derived_quantities(objs, {"place": place}, height, 0.5)["scene.size"]
    assert size.shape == (2, 4)
    np.testing.assert_allclose(size[:, 0], np.log(w / 0.2), rtol=1e-5)
    np.testing.assert_allclose(size[:, 1], np.log(h / 0.2), rtol=1e-5)
    np.testing.assert_allclose(size[:, 2], np.log(w * h / 0.04), rtol=1e-5)
    np.testing.assert_allclose(size[:, 3], np.log([2.0, 0.2]), rtol=1e-5)


def test_place_norm_shrinks_sparse_cells_to_the_global_reference():
    xy = np.array([[0.1, 0.1]] * 1000 + [[0.9, 0.9]] * 2)
    x = np.concatenate([np.full(1000, 1.0), np.full(2, 100.0)])[:, None]
    m = scene.fit_place_norm(xy, x, (2, 2), "ratio", prior=50)
    # the crowded cell keeps its own reference, the 2-object cell is pulled almost all the way to the global one
    assert m["place_scale"][0, 0] == pytest.approx(1.0, rel=1e-3)
    assert m["place_scale"][3, 0] < 5.0


def test_wrong_way_walker_outscores_right_way_walkers(fitted):
    right = make_track(9001, 0.2, 0.7, 40, direction=0.0)
    wrong = make_track(9002, 0.8, 0.7, 40, direction=np.pi)
    assert parts_of(fitted, wrong, "direction").mean() > parts_of(fitted, right, "direction").mean() + 0.5


def test_wrong_way_walker_outscores_right_way_walkers_by_heading(tmp_path):
    """The direction attribute on scene.heading (where the footprint went) instead of the flow in the box: the same
    known answer; the fitted model round-trips through the checkpoint."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"direction": {**SCENE_ATTRIBUTES["direction"], "feature": "scene.heading", "columns": None}}
    scorer = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips([normal_clip(s) for s in range(4)])
    right = make_track(9001, 0.2, 0.7, 40, direction=0.0)
    wrong = make_track(9002, 0.8, 0.7, 40, direction=np.pi)
    assert parts_of(scorer, wrong, "direction")[1:].mean() > parts_of(scorer, right, "direction")[1:].mean() + 0.5
    reloaded(scorer, tmp_path, *wrong)


def test_object_off_the_paths_outscores_one_on_the_path(fitted):
    on_path = make_track(9003, 0.3, 0.7, 40)
    off_path = make_track(9004, 0.3, 0.2, 40)  # the top of the image, where nobody walks
    assert parts_of(fitted, off_path, "place").mean() > parts_of(fitted, on_path, "place").mean() + 0.5


def test_loiterer_outscores_walkers(fitted):
    walker = make_track(9005, 0.2, 0.7, 100)
    loiterer = make_track(9006, 0.5, 0.7, 100, speed_rel=0.002, jitter=0.5)
    assert parts_of(fitted, loiterer, "dwell")[-20:].mean() > parts_of(fitted, walker, "dwell")[-20:].mean() + 1.0


def test_whole_stay_dwell_flags_a_loiterer_from_its_first_frames():
    """dwell_span="stay" (fitted on the same measure of the normal clips): a loiterer's first 20 detections already
    outscore a walker's highest dwell score, where the past-only count has not yet risen above the walker's."""
    from tao_lab.scorer import AttributeScorer

    train = [normal_clip(s) for s in range(4)]
    past = AttributeScorer(attributes=SCENE_ATTRIBUTES, frame_sigma=0).fit_clips(train)
    whole = AttributeScorer(attributes=SCENE_ATTRIBUTES, frame_sigma=0, dwell_span="stay").fit_clips(train)
    walker = make_track(9005, 0.2, 0.7, 100)
    loiterer = make_track(9006, 0.5, 0.7, 100, speed_rel=0.002, jitter=0.5)
    assert parts_of(whole, loiterer, "dwell")[:20].min() > parts_of(whole, walker, "dwell").max() + 1.0
    assert parts_of(past, loiterer, "dwell")[:20].min() <= parts_of(past, walker, "dwell").max()


def test_far_fast_object_outscores_near_walker_with_the_same_pixel_speed(fitted):
    near = make_track(9007, 0.2, 0.88, 30)  # a normal walker near the camera
    near_px_speed = near[1]["velocity"][:, 0].mean()
    far_h = rel_height(0.52) * H
    far = make_track(9008, 0.2, 0.52, 30, speed_rel=near_px_speed / far_h)  # same px/frame, far away
    assert far[1]["velocity"][:, 0].mean() == pytest.approx(near_px_speed, rel=0.1)
    for name in ("speed_place", "speed_rel"):
        assert parts_of(fitted, far, name).mean() > parts_of(fitted, near, name).mean() + 1.0, name


def test_large_object_outscores_walkers_at_the_same_place(fitted):
    walker = make_track(9009, 0.2, 0.7, 30)
    objs, feats = make_track(9010, 0.2, 0.7, 30)
    feats = dict(feats)
    place = feats["place"].copy()
    place[:, 2] *= 3.0  # a cart: three times as wide, 1.3 times as high
    place[:, 3] *= 1.3
    feats["place"] = place
    assert parts_of(fitted, (objs, feats), "size").mean() > parts_of(fitted, walker, "size").mean() + 1.0


def test_group_fusion_counts_correlated_attributes_once(fitted):
    objs, feats = make_track(9011, 0.2, 0.52, 30, speed_rel=0.2)
    res = fitted.score_clip(objs, feats, 40)
    p = res.parts
    expected = (np.maximum(p["speed_place"], p["speed_rel"]) + p["place"] + p["direction"] + p["dwell"] + p["size"])
    assert np.allclose(res.objects.score, expected, atol=1e-5)


@pytest.mark.parametrize("fusion", ["max", "max_excess"])
def test_max_and_max_excess_fusion_match_a_direct_computation(fitted, fusion):
    objs, feats = make_track(9012, 0.2, 0.52, 30, speed_rel=0.2)
    fitted.fusion = fusion
    try:
        res = fitted.score_clip(objs, feats, 40)
    finally:
        fitted.fusion = "sum"
    p = res.parts
    groups = [np.maximum(p["speed_place"], p["speed_rel"]), p["place"], p["direction"], p["dwell"], p["size"]]
    expected = []
    for i in range(len(objs)):
        vals = sorted((float(g[i]) for g in groups), reverse=True)
        # the strongest group, plus the other groups' excess over 1 (nothing for max)
        extra = sum(max(v - 1.0, 0.0) for v in vals[1:]) if fusion == "max_excess" else 0.0
        expected.append(vals[0] + extra)
    assert np.allclose(res.objects.score, expected, atol=1e-5)
    if fusion == "max_excess":  # the fast far-away object's excess really is in play
        assert max(max(float(g.max()) for g in groups[1:]), float(groups[0].max())) > 1.0


def test_sum_excess_fusion_subtracts_each_groups_training_baseline(tmp_path):
    """fusion=sum_excess: each group's baseline is the stated percentile of its training object scores (recomputed
    here from the fitted scorer's own training parts), an object scores the sum of its groups' excess over them,
    and the baselines round-trip through the checkpoint."""
    from tao_lab.scorer import AttributeScorer

    train = [normal_clip(s) for s in range(4)]
    # in-sample attributes only: their training parts are what object_parts gives on the training clips
    attrs = {k: SCENE_ATTRIBUTES[k] for k in ("speed_place", "speed_rel", "size")}
    scorer = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess",
                             fusion_baseline=75.0).fit_clips(train)
    summed = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(train)
    assert scorer.groups == ["motion", "size"]
    tp = [scorer.object_parts(o, f) for o, f, _ in train]
    motion = np.concatenate([np.maximum(t["speed_place"], t["speed_rel"]) for t in tp])
    size = np.concatenate([t["size"] for t in tp])
    base = scorer.fusion__baseline.numpy()
    assert np.allclose(base, [np.percentile(motion, 75), np.percentile(size, 75)], atol=1e-5)
    assert np.mean(scorer.train_scores.numpy() == 0) > 0.5  # a normal object mostly adds nothing
    objs, feats = make_track(9013, 0.2, 0.52, 30, speed_rel=0.2)
    res = scorer.score_clip(objs, feats, 40)
    p = res.parts
    groups = [np.maximum(p["speed_place"], p["speed_rel"]), p["size"]]
    expected = sum(np.clip(g - b, 0, None) for g, b in zip(groups, base))
    assert np.allclose(res.objects.score, expected, atol=1e-5)
    assert res.objects.score.max() > 0  # the fast far-away object stands out
    ref = summed.score_clip(objs, feats, 40)
    assert np.allclose(ref.objects.score, sum(groups), atol=1e-4)  # the same parts, the plain sum
    loaded = reloaded(scorer, tmp_path, objs, feats)
    assert loaded.fusion == "sum_excess" and np.array_equal(loaded.fusion__baseline.numpy(), base)
    with pytest.raises(ValueError, match="fusion_baseline"):
        AttributeScorer(fusion="sum_excess", fusion_baseline=120)
    # one percentile per group: each group's own
    per_group = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess",
                                fusion_baseline={"motion": 50.0, "size": 99.0}).fit_clips(train)
    assert np.allclose(per_group.fusion__baseline.numpy(), [np.percentile(motion, 50), np.percentile(size, 99)],
                       atol=1e-5)
    assert reloaded(per_group, tmp_path, objs, feats).fusion_baseline == {"motion": 50.0, "size": 99.0}
    with pytest.raises(ValueError, match="must name every fusion group exactly"):
        AttributeScorer(attributes=attrs, fusion="sum_excess", fusion_baseline={"motion": 90.0})
    with pytest.raises(ValueError, match="fusion_baseline must be a percentile"):
        AttributeScorer(attributes=attrs, fusion="sum_excess", fusion_baseline={"motion": 90.0, "size": 101.0})


def test_fusion_group_cap_bounds_each_group_before_the_excess(tmp_path):
    """fusion_group_cap=c: an object scores the sum of min(group, c) minus each baseline (clipped at 0), recomputed
    here from its parts; the fast far-away object's motion group is above the cap, so the cap changes its score; the
    cap round-trips through the checkpoint and a cap <= 0 is refused."""
    from tao_lab.scorer import AttributeScorer

    train = [normal_clip(s) for s in range(4)]
    attrs = {k: SCENE_ATTRIBUTES[k] for k in ("speed_place", "speed_rel", "size")}
    objs, feats = make_track(9013, 0.2, 0.52, 30, speed_rel=0.2)
    free = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess").fit_clips(train)
    p = free.score_clip(objs, feats, 40).parts
    motion = np.maximum(p["speed_place"], p["speed_rel"])
    cap = 0.5 * float(motion.max())
    assert cap > float(free.fusion__baseline.numpy()[0])  # the cap is above the motion group's baseline
    capped = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess",
                             fusion_group_cap=cap).fit_clips(train)
    res = capped.score_clip(objs, feats, 40)
    base = capped.fusion__baseline.numpy()
    groups = [np.minimum(motion, cap), np.minimum(res.parts["size"], cap)]
    expected = sum(np.clip(g - b, 0, None) for g, b in zip(groups, base))
    assert np.allclose(res.objects.score, expected, atol=1e-5)
    assert res.objects.score.max() < free.score_clip(objs, feats, 40).objects.score.max()
    assert reloaded(capped, tmp_path, objs, feats).fusion_group_cap == pytest.approx(cap)
    with pytest.raises(ValueError, match="fusion_group_cap"):
        AttributeScorer(attributes=attrs, fusion="sum_excess", fusion_group_cap=0)


def test_frame_level_fusion_baseline_is_the_percentile_of_each_training_frames_highest_group_score(tmp_path):
    """fusion_baseline_level=frame: a group's baseline is the stated percentile, over the training frames that
    have objects, of the frame's highest group score (recomputed here frame by frame with a dict, independently of
    the scorer's vectorised path); it is above the object-level baseline of the same parts (several walkers per
    frame), scoring uses it, and it round-trips through the checkpoint."""
    from tao_lab.scorer import AttributeScorer

    train = [normal_clip(s) for s in range(4)]
    attrs = {k: SCENE_ATTRIBUTES[k] for k in ("speed_place", "speed_rel", "size")}
    by_frame = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess", fusion_baseline=75.0,
                               fusion_baseline_level="frame").fit_clips(train)
    by_object = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess",
                                fusion_baseline=75.0).fit_clips(train)
    highest: dict[tuple[int, int], np.ndarray] = {}
    for v, (o, f, _) in enumerate(train):
        t = by_frame.object_parts(o, f)
        groups = np.stack([np.maximum(t["speed_place"], t["speed_rel"]), t["size"]], 1)
        for frame, g in zip(o.frame, groups):
            key = (v, int(frame))
            highest[key] = g if key not in highest else np.maximum(highest[key], g)
    per_frame = np.stack(list(highest.values()))
    expected = np.percentile(per_frame, 75, axis=0)
    base = by_frame.fusion__baseline.numpy()
    assert np.allclose(base, expected, atol=1e-5)
    assert np.all(base > by_object.fusion__baseline.numpy())
    objs, feats = make_track(9013, 0.2, 0.52, 30, speed_rel=0.2)
    res = by_frame.score_clip(objs, feats, 40)
    p = res.parts
    groups = [np.maximum(p["speed_place"], p["speed_rel"]), p["size"]]
    assert np.allclose(res.objects.score, sum(np.clip(g - b, 0, None) for g, b in zip(groups, base)), atol=1e-5)
    loaded = reloaded(by_frame, tmp_path, objs, feats)
    assert loaded.fusion_baseline_level == "frame" and np.array_equal(loaded.fusion__baseline.numpy(), base)
    with pytest.raises(ValueError, match="fusion_baseline_level"):
        AttributeScorer(fusion="sum_excess", fusion_baseline_level="clip")


def test_unknown_fusion_is_refused():
    from tao_lab.scorer import AttributeScorer

    with pytest.raises(ValueError, match="max_excess"):
        AttributeScorer(fusion="mean")


def test_every_scene_model_round_trips_through_the_checkpoint(fitted, tmp_path):
    loaded = reloaded(fitted, tmp_path)
    objs, feats, n = normal_clip(77)
    a, b = fitted.score_clip(objs, feats, n), loaded.score_clip(objs, feats, n)
    for name in SCENE_ATTRIBUTES:
        assert np.array_equal(a.parts[name], b.parts[name]), name
    assert np.array_equal(a.frame_scores, b.frame_scores)
    assert np.array_equal(fitted.scene__height.numpy(), loaded.scene__height.numpy())


def with_box_widths(track, factors):
    """The track with its boxes' widths (place columns and xyxy) times ``factors`` (one per detection)."""
    objs, feats = track
    feats = dict(feats)
    place = feats["place"].copy()
    place[:, 2] *= factors
    feats["place"] = place
    xyxy = objs.xyxy.copy()
    centre, half = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 2] - xyxy[:, 0]) / 2 * factors
    xyxy[:, 0], xyxy[:, 2] = centre - half, centre + half
    return ObjectTable.build(objs.frame, xyxy, track_id=objs.track_id), feats


def test_shape_attribute_flags_a_cart_as_wide_as_high_and_round_trips(tmp_path):
    """The default's shape attribute (configs/scorer/attribute.yaml), fitted on walkers whose boxes are 0.3-0.5 times
    as wide as high: a walker of the usual shape stays below the calibrated tail (1); a cart 1.2 times as wide as high
    at the same place, of the same height and speed, outscores even the widest normal walker by more than 1; the
    fitted model round-trips through the checkpoint."""
    from omegaconf import OmegaConf

    from helpers import CONFIG_DIR
    from tao_lab.scorer import AttributeScorer

    spec = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "scorer" / "attribute.yaml"))["attributes"]["shape"]
    assert spec["feature"] == "scene.size" and spec["columns"] == [3]
    rng = np.random.default_rng(5)
    clips = []
    for seed in range(4):
        objs, feats, n = normal_clip(seed)
        objs, feats = with_box_widths((objs, feats), rng.uniform(0.75, 1.25, len(objs)))  # aspect 0.3-0.5
        clips.append((objs, feats, n))
    scorer = AttributeScorer(attributes={"shape": spec}, frame_sigma=0).fit_clips(clips)
    walker = make_track(9101, 0.2, 0.7, 30)                      # 0.4 times as wide as high
    cart = with_box_widths(make_track(9102, 0.2, 0.7, 30), 3.0)   # 1.2 times
    widest = with_box_widths(make_track(9103, 0.2, 0.7, 30), 1.25)  # 0.5: the widest normal walker
    assert parts_of(scorer, walker, "shape").max() < 1.0
    assert parts_of(scorer, cart, "shape").min() > parts_of(scorer, widest, "shape").max() + 1.0
    loaded = reloaded(scorer, tmp_path, *cart, num_frames=40)
    assert np.array_equal(loaded.object_parts(*cart)["shape"], scorer.object_parts(*cart)["shape"])


def with_ground(track, grey, texture, rng):
    """The track with a ``ground`` feature (features.GroundFeature's columns) around (grey, texture)."""
    objs, feats = track
    n = len(objs)
    ground = np.stack([rng.normal(grey, 4.0, n), np.abs(rng.normal(texture, 0.1, n))], 1).astype(np.float32)
    return objs, {**feats, "ground": ground}


def test_ground_attribute_flags_the_lawn_not_an_unvisited_spot_of_the_walkway_and_round_trips(tmp_path):
    """The default's ground attribute (configs/scorer/attribute.yaml, group place), fitted on walkers whose feet
    are on a flat bright walkway (grey ~165, texture ~0.6) in the band foot y 0.5-0.9: a walker on the walkway
    nearer the camera (foot y 0.97, where no training foot was) stays below the calibrated tail (1) and scores as
    one on the path, where the footprint density (the place attribute it replaced) reads it well above one on the
    path; a walker on a dark textured lawn (grey ~75, texture ~1.5) at a visited place outscores it by more than 1.
    The model round-trips through the checkpoint."""
    from omegaconf import OmegaConf

    from helpers import CONFIG_DIR
    from tao_lab.scorer import AttributeScorer

    attrs = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "scorer" / "attribute.yaml"))["attributes"]
    spec = attrs["ground"]
    assert "place" not in attrs and spec["feature"] == "ground" and spec["group"] == "place"
    rng = np.random.default_rng(3)
    clips = [(*with_ground(normal_clip(seed)[:2], 165.0, 0.6, rng), 120) for seed in range(4)]
    scorer = AttributeScorer(attributes={"ground": spec}, frame_sigma=0).fit_clips(clips)
    footprints = AttributeScorer(attributes={"place": SCENE_ATTRIBUTES["place"]}, frame_sigma=0).fit_clips(clips)
    on_path = with_ground(make_track(9200, 0.3, 0.7, 30), 165.0, 0.6, rng)
    near = with_ground(make_track(9201, 0.3, 0.97, 30), 165.0, 0.6, rng)  # the walkway, nearer than anyone walked
    lawn = with_ground(make_track(9202, 0.3, 0.7, 30), 75.0, 1.5, rng)    # a visited place's rows, on the lawn
    # the footprint density reads the near walker as off the path; the ground as on it, like the on-path walker
    assert parts_of(footprints, near, "place").mean() > parts_of(footprints, on_path, "place").mean() + 0.3
    assert parts_of(scorer, near, "ground").max() < 1.0
    assert abs(parts_of(scorer, near, "ground").mean() - parts_of(scorer, on_path, "ground").mean()) < 0.3
    assert parts_of(scorer, lawn, "ground").min() > parts_of(scorer, near, "ground").max() + 1.0
    loaded = reloaded(scorer, tmp_path, *lawn, num_frames=40)
    assert np.array_equal(loaded.object_parts(*lawn)["ground"], scorer.object_parts(*lawn)["ground"])


def test_empty_clip_scores_zero(fitted):
    objs = ObjectTable.empty()
    feats = {"velocity": np.zeros((0, 3 + BINS), np.float32), "place": np.zeros((0, 6), np.float32)}
    res = fitted.score_clip(objs, feats, 5)
    assert len(res.objects) == 0 and np.array_equal(res.frame_scores, np.zeros(5, np.float32))


def test_scene_attribute_without_the_place_feature_is_refused():
    from tao_lab.scorer import AttributeScorer

    objs, feats, n = normal_clip(0)
    del feats["place"]
    with pytest.raises(KeyError, match="PlaceFeature"):
        AttributeScorer(attributes={"place": {"model": "occupancy"}}).fit_clips([(objs, feats, n)] * 2)


@pytest.mark.parametrize("grid", [4, [4], [0, 4]])
def test_bad_place_grid_is_refused_with_the_attribute_name(grid):
    from tao_lab.scorer import AttributeScorer

    with pytest.raises(ValueError, match=r"attribute 'place': grid must be \[rows, cols\]"):
        AttributeScorer(attributes={"place": {"model": "occupancy", "grid": grid}})


def _widened(clip, factor):
    """The clip with every box (and the place feature's width) ``factor`` times as wide."""
    objs, feats, n = clip
    xyxy = objs.xyxy.copy()
    cx, half = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 2] - xyxy[:, 0]) / 2 * factor
    xyxy[:, 0], xyxy[:, 2] = cx - half, cx + half
    place = feats["place"].copy()
    place[:, 2] *= factor
    return ObjectTable.build(objs.frame, xyxy, track_id=objs.track_id), {**feats, "place": place}, n


def test_reliability_weights_follow_each_groups_noise_on_held_out_training_clips(tmp_path):
    """fusion_weights=reliability: every clip's parts are recomputed here from a scorer fitted on the OTHER clips
    (its calibrated parts mapped back to raw and onto the full fit's calibration), grouped, their excess over the
    full fit's baselines maxed per frame with a dict; noise = the stated percentile floored at 1 - baseline; weights
    = 1 / noise averaging 1. The size group, whose boxes are of a different width in every clip (a model of the
    other clips does not hold on the held-out one), weighs less than motion. Scores use the weights; they round-trip
    through the checkpoint; the option needs sum_excess."""
    from tao_lab.scorer import AttributeScorer

    train = [_widened(normal_clip(s), f) for s, f in zip(range(4), (0.7, 1.0, 1.4, 2.0))]
    attrs = {k: SCENE_ATTRIBUTES[k] for k in ("speed_place", "speed_rel", "size")}
    kwargs = dict(attributes=attrs, frame_sigma=0, fusion="sum_excess", fusion_baseline=75.0)
    scorer = AttributeScorer(**kwargs, fusion_weights="reliability",
                             fusion_reliability_percentile=95.0).fit_clips(train)
    equal = AttributeScorer(**kwargs).fit_clips(train)
    assert np.array_equal(equal.fusion__weight.numpy(), [1.0, 1.0])
    base = scorer.fusion__baseline.numpy()
    assert np.allclose(base, equal.fusion__baseline.numpy())  # the weights leave the baselines alone
    highest: dict[tuple[int, int], np.ndarray] = {}
    for v, (o, f, _) in enumerate(train):
        sub = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips([c for u, c in enumerate(train) if u != v])
        held = {}
        for name, part in sub.object_parts(o, f).items():
            lo, hi = getattr(sub, f"{name}__calib").numpy()
            flo, fhi = getattr(scorer, f"{name}__calib").numpy()
            held[name] = ((part.astype(np.float64) * (hi - lo) + lo) - flo) / (fhi - flo)
        groups = np.stack([np.maximum(held["speed_place"], held["speed_rel"]), held["size"]], 1)
        for frame, g in zip(o.frame, np.clip(groups - base, 0, None)):
            key = (v, int(frame))
            highest[key] = g if key not in highest else np.maximum(highest[key], g)
    noise = np.maximum(np.percentile(np.stack(list(highest.values())), 95, axis=0), 1 - base)
    expected = (1 / noise) / np.mean(1 / noise)
    weight = scorer.fusion__weight.numpy()
    assert np.allclose(weight, expected, rtol=1e-3), (weight, expected)
    assert weight[1] < weight[0] and np.isclose(weight.mean(), 1.0)
    objs, feats = make_track(9013, 0.2, 0.52, 30, speed_rel=0.2)
    res = scorer.score_clip(objs, feats, 40)
    p = res.parts
    groups = [np.maximum(p["speed_place"], p["speed_rel"]), p["size"]]
    assert np.allclose(res.objects.score, sum(w * np.clip(g - b, 0, None) for w, g, b in zip(weight, groups, base)),
                       atol=1e-5)
    loaded = reloaded(scorer, tmp_path, objs, feats)
    assert loaded.fusion_weights == "reliability" and np.array_equal(loaded.fusion__weight.numpy(), weight)
    with pytest.raises(ValueError, match="sum_excess"):
        AttributeScorer(fusion="sum", fusion_weights="reliability")
    with pytest.raises(ValueError, match="fusion_weights"):
        AttributeScorer(fusion="sum_excess", fusion_weights="learned")


def test_clip_prior_occupancy_matches_a_direct_count_and_never_counts_an_objects_own_track():
    """occupancy_score_with_clip, recomputed object by object with a loop: the training probability mixed with the
    blurred histogram of the clip's objects of OTHER tracks (an untracked object leaves out only itself)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    logp = scene.fit_occupancy(rng.uniform(0, 1, (500, 2)) * [1, 0.5], (6, 6), sigma=1.0)  # top half only
    xy = rng.uniform(0, 1, (40, 2))
    track = rng.integers(-1, 6, 40)
    got = scene.occupancy_score_with_clip(xy, logp, 1.0, 50.0, track)
    cells = scene.cell_index(xy, (6, 6))
    for i in range(len(xy)):
        others = np.ones(len(xy), bool)
        others[(track == track[i]) if track[i] >= 0 else (np.arange(len(xy)) == i)] = False
        hist = np.bincount(cells[others], minlength=36).astype(float).reshape(6, 6)
        hist = gaussian_filter(hist, 1.0, mode="nearest").reshape(-1)
        p = (50.0 * np.exp(logp.reshape(-1)[cells[i]]) + hist[cells[i]]) / (50.0 + hist.sum())
        assert got[i] == pytest.approx(-np.log(p), rel=1e-9)
    # one track alone in the clip: nothing else to learn from, the score is the training score
    alone = scene.occupancy_score_with_clip(xy[:5], logp, 1.0, 50.0, np.zeros(5, np.int64))
    assert np.allclose(alone, scene.occupancy_score(xy[:5], logp))


def test_clip_prior_makes_a_crowded_new_path_normal_but_not_a_lone_walker_there():
    """Fitted on walkers along the band foot y in [0.5, 0.9], all walking right: a path at foot y 0.3 is off the
    paths, and walking left is the wrong way. When the scored clip holds many people on that path (or many walking
    left), each of them scores far below a lone walker doing the same with clip_prior (the others show it is what
    people here do), and about as high without it; the lone walker (the off-path or wrong-way walker) is scored
    against the training model and the others of ITS clip, never against itself. Calibrations differ between the
    two scorers, so each compares its own scores."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"place": dict(SCENE_ATTRIBUTES["place"]), "direction": dict(SCENE_ATTRIBUTES["direction"])}
    train = [normal_clip(s) for s in range(4)]
    plain = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(train)
    adapted = AttributeScorer(attributes={k: {**v, "clip_prior": 300.0} for k, v in attrs.items()},
                              frame_sigma=0).fit_clips(train)
    crowd = concat([make_track(700 + k, 0.05 + 0.05 * k, 0.3, 40) for k in range(12)])
    lone = make_track(800, 0.3, 0.3, 40)
    left_crowd = concat([make_track(900 + k, 0.3 + 0.05 * k, 0.7, 40, direction=np.pi) for k in range(12)])
    left_lone = make_track(950, 0.6, 0.7, 40, direction=np.pi)
    for name, many, one in (("place", crowd, lone), ("direction", left_crowd, left_lone)):
        ratio = {label: np.median(parts_of(s, many, name)) / np.median(parts_of(s, one, name))
                 for label, s in (("plain", plain), ("adapted", adapted))}
        assert ratio["adapted"] < 0.5 and ratio["plain"] > 0.8, (name, ratio)
    with pytest.raises(ValueError, match="clip_prior applies to the occupancy and direction"):
        AttributeScorer(attributes={"speed": {**SCENE_ATTRIBUTES["speed_rel"], "clip_prior": 10}})
    with pytest.raises(ValueError, match="clip_prior must be > 0"):
        AttributeScorer(attributes={"place": {**SCENE_ATTRIBUTES["place"], "clip_prior": 0}})


def test_sum_excess_checkpoint_written_before_group_weights_loads_with_equal_weights(tmp_path):
    """A sum_excess checkpoint without ``fusion__weight`` (written before fusion_weights existed) loads with every
    group weighing 1 and scores exactly as the scorer that wrote it."""
    import torch

    from tao_lab.scorer import AttributeScorer

    attrs = {k: SCENE_ATTRIBUTES[k] for k in ("speed_place", "size")}
    scorer = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess").fit_clips(
        [normal_clip(s) for s in range(3)])
    path = tmp_path / "old.ckpt"
    scorer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["fusion__weight"]
    del ckpt["state_dict"]["fusion__check_train"]  # nor the scene check's training shares (written later still)
    for key in ("fusion_weights", "fusion_reliability_percentile"):
        ckpt["hyper_parameters"].pop(key)
    torch.save(ckpt, path)
    loaded = AttributeScorer.load_from_checkpoint(path)
    assert loaded.fusion_weights == "equal" and np.array_equal(loaded.fusion__weight.numpy(), [1.0, 1.0])
    assert np.isnan(loaded.fusion__check_train.numpy()).all() and np.isfinite(scorer.fusion__check_train.numpy()).all()
    objs, feats = make_track(9013, 0.2, 0.52, 30, speed_rel=0.2)
    assert np.array_equal(loaded.score_clip(objs, feats, 40).objects.score,
                          scorer.score_clip(objs, feats, 40).objects.score)


def _walking_out_at_the_bottom(track_id, frames=40):
    """A walker heading down the image until the frame's bottom edge cuts it: from there on its box ends at the
    edge (foot y 1.0, as PlaceFeature clips it) instead of at its feet."""
    objs, feats = make_track(track_id, 0.5, 0.8, frames, speed_rel=0.08, direction=np.pi / 2)
    place = feats["place"].copy()
    place[:, 1] = np.minimum(place[:, 1], 1.0)
    xyxy = objs.xyxy.copy()
    xyxy[:, 3] = np.minimum(xyxy[:, 3], H)
    return ObjectTable.build(objs.frame, xyxy, track_id=objs.track_id), {**feats, "place": place}


def _cut_rows_score_zero(key, track, cut):
    """place / direction / dwell fitted on the normal clips with and without attribute key ``key`` = 0.01: the rows
    ``cut`` of ``track`` score exactly 0 with it, every other row as without it (the training clips have no cut
    rows, so the fits are the same). Returns the scorer without the key and the attributes."""
    from tao_lab.scorer import AttributeScorer

    names = ("place", "direction", "dwell")
    attrs = {k: dict(SCENE_ATTRIBUTES[k]) for k in names}
    train = [normal_clip(s) for s in range(4)]
    plain = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(train)
    keyed = AttributeScorer(attributes={k: {**v, key: 0.01} for k, v in attrs.items()}, frame_sigma=0).fit_clips(train)
    assert 5 <= cut.sum() < len(cut) - 5
    for name in names:
        before, after = parts_of(plain, track, name), parts_of(keyed, track, name)
        np.testing.assert_array_equal(after[cut], 0.0)
        np.testing.assert_allclose(after[~cut], before[~cut], rtol=1e-6, atol=1e-9)
    return plain, attrs, train


def test_footprint_edge_leaves_objects_cut_by_the_bottom_edge_out_of_scoring_and_fitting():
    """With footprint_edge, rows whose box bottom lies within that fraction of the frame height of the bottom edge
    have no place / direction / dwell value: they score exactly 0, every other row scores as without the option
    (the training clips have no cut rows, so the fits are the same), and training rows at the edge are left out of
    the fit (the occupancy model equals one fitted on the other rows alone)."""
    from tao_lab.scorer import AttributeScorer

    track = _walking_out_at_the_bottom(9100)
    cut = track[1]["place"][:, 1] >= 0.99
    plain, attrs, train = _cut_rows_score_zero("footprint_edge", track, cut)
    on_path = make_track(9101, 0.3, 0.7, 40)  # where nobody stands in training, the cut rows' false alarm:
    assert parts_of(plain, track, "place")[cut].mean() > parts_of(plain, on_path, "place").mean() + 0.3

    # fitting: a training clip with people walking out at the bottom; their cut rows are not in the place model
    extra = concat([_walking_out_at_the_bottom(9200 + k) for k in range(6)])
    fitted_edge = AttributeScorer(attributes={"place": {**attrs["place"], "footprint_edge": 0.01}},
                                  frame_sigma=0).fit_clips(train + [(*extra, 120)])
    rows = [normal_clip(s)[1]["place"] for s in range(4)] + [extra[1]["place"]]
    xy = np.concatenate(rows)[:, :2].astype(np.float64)
    kept = xy[xy[:, 1] < 0.99]
    np.testing.assert_allclose(fitted_edge.place__occ_logp.numpy(),
                               scene.fit_occupancy(kept, attrs["place"]["grid"], 1.0), rtol=1e-12)
    with pytest.raises(ValueError, match="footprint_edge must be a fraction"):
        AttributeScorer(attributes={"place": {**attrs["place"], "footprint_edge": 0.5}})


def _walking_out_at_the_right(track_id, frames=40):
    """A walker heading right until the frame's right edge cuts it: from there on its box ends at the edge and its
    bottom centre is the centre of the visible part (as PlaceFeature reads a box clipped to the frame)."""
    objs, feats = make_track(track_id, 0.9, 0.7, frames, speed_rel=0.08)
    place = feats["place"].copy()
    left = place[:, 0] - place[:, 2] / 2
    right = np.minimum(place[:, 0] + place[:, 2] / 2, 1.0)
    place[:, 0], place[:, 2] = (left + right) / 2, right - left
    xyxy = objs.xyxy.copy()
    xyxy[:, 2] = np.minimum(xyxy[:, 2], W)
    keep = place[:, 2] > 0
    objs = ObjectTable.build(objs.frame[keep], xyxy[keep], track_id=objs.track_id[keep])
    return objs, {k: v[keep] for k, v in {**feats, "place": place}.items()}


def test_footprint_side_edge_leaves_objects_cut_by_a_side_edge_out_of_scoring_and_fitting():
    """With footprint_side_edge, rows whose box reaches within that fraction of the frame width of the left or right
    edge have no value for the attribute: they score exactly 0, every other row scores as without the key (the
    training clips have no cut rows, so the fits are the same), and training rows cut by a side edge are left out of
    the fit (the occupancy model equals one fitted on the other rows alone)."""
    from tao_lab.scorer import AttributeScorer

    track = _walking_out_at_the_right(9150)
    p = track[1]["place"]
    cut = p[:, 0] + p[:, 2] / 2 >= 0.99
    plain, attrs, train = _cut_rows_score_zero("footprint_side_edge", track, cut)
    # the cut rows were scored by the plain scorer: the key changes something
    assert any(np.any(parts_of(plain, track, name)[cut] > 0) for name in attrs)

    extra = concat([_walking_out_at_the_right(9250 + k) for k in range(6)])
    fitted = AttributeScorer(attributes={"place": {**attrs["place"], "footprint_side_edge": 0.01}},
                             frame_sigma=0).fit_clips(train + [(*extra, 120)])
    rows = np.concatenate([normal_clip(s)[1]["place"] for s in range(4)] + [extra[1]["place"]]).astype(np.float64)
    kept = rows[(rows[:, 0] - rows[:, 2] / 2 > 0.01) & (rows[:, 0] + rows[:, 2] / 2 < 0.99)][:, :2]
    assert len(kept) < len(rows)
    np.testing.assert_allclose(fitted.place__occ_logp.numpy(),
                               scene.fit_occupancy(kept, attrs["place"]["grid"], 1.0), rtol=1e-12)
    with pytest.raises(ValueError, match="footprint_side_edge must be a fraction"):
        AttributeScorer(attributes={"place": {**attrs["place"], "footprint_side_edge": 0.5}})


def test_detections_so_far_counts_each_track_causally():
    """detections_so_far: 1 for a track's first detection, then 2, 3 ... in frame order whatever the row order;
    untracked objects count 1."""
    objs = ObjectTable.build(np.array([5, 3, 4, 3, 7, 9]), np.zeros((6, 4)), track_id=np.array([1, 1, 1, 2, -1, 2]))
    assert scene.detections_so_far(objs).tolist() == [3, 1, 2, 1, 1, 2]
    assert scene.detections_so_far(ObjectTable.build(np.zeros(0), np.zeros((0, 4)))).tolist() == []


def test_min_track_detections_leaves_a_tracks_first_detections_out():
    """With min_track_detections = 5 a track's first four detections have no value for the attribute (score exactly
    0) and the fifth on is scored; a one-detection blob of an unusual size scores 0 with the key and well above 0
    without it; the scorer refuses a non-integer."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"size": dict(SCENE_ATTRIBUTES["size"])}
    train = [normal_clip(s) for s in range(4)]
    plain = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(train)
    gated = AttributeScorer(attributes={"size": {**attrs["size"], "min_track_detections": 5}},
                            frame_sigma=0).fit_clips(train)
    objs, feats = make_track(9400, 0.2, 0.7, 20)
    place = feats["place"].copy()
    place[:, 2] *= 3.0  # three times as wide as a walker: a cart-sized box from its first frame
    cart = (objs, {**feats, "place": place})
    assert (parts_of(gated, cart, "size")[:4] == 0).all()
    assert (parts_of(gated, cart, "size")[4:] > 1.0).all()
    blob = ObjectTable.build(objs.frame[:1], objs.xyxy[:1], track_id=np.array([77]))
    one = (blob, {k: v[:1] for k, v in cart[1].items()})
    assert parts_of(plain, one, "size")[0] > 1.0 and parts_of(gated, one, "size")[0] == 0.0
    with pytest.raises(ValueError, match="min_track_detections must be an integer"):
        AttributeScorer(attributes={"size": {**attrs["size"], "min_track_detections": 2.5}})


def test_footprint_min_height_leaves_pieces_of_objects_out_of_scoring_and_fitting():
    """With footprint_min_height, rows whose box is less tall than that fraction of the expected height at their
    footprint (a head, a torso) have no value: they score exactly 0 and every other row scores as without the key;
    training pieces are left out of the fit (the occupancy model equals one fitted on the whole boxes alone)."""
    from tao_lab.scorer import AttributeScorer

    names = ("place", "direction", "dwell", "size")
    attrs = {k: dict(SCENE_ATTRIBUTES[k]) for k in names}
    train = [normal_clip(s) for s in range(4)]
    plain = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(train)
    pieces = AttributeScorer(attributes={k: {**v, "footprint_min_height": 0.5} for k, v in attrs.items()},
                             frame_sigma=0).fit_clips(train)
    np.testing.assert_allclose(pieces.scene__height.numpy(), plain.scene__height.numpy())
    objs, feats = make_track(9300, 0.2, 0.7, 40)
    feats = dict(feats)
    place = feats["place"].copy()
    piece = np.arange(40) % 4 == 0  # every fourth detection only the upper 20% of the body (a head)
    place[piece, 3] *= 0.2
    place[piece, 1] -= 0.8 * place[piece, 3] / 0.2
    feats["place"] = place
    xyxy = objs.xyxy.copy()
    xyxy[piece, 3] = xyxy[piece, 1] + 0.2 * (xyxy[piece, 3] - xyxy[piece, 1])
    track = (ObjectTable.build(objs.frame, xyxy, track_id=objs.track_id), feats)
    expected = scene.expected_height(plain.scene__height.numpy(), place[:, :2].astype(np.float64))
    assert np.array_equal(place[:, 3] < 0.5 * expected, piece)
    for name in names:
        before, after = parts_of(plain, track, name), parts_of(pieces, track, name)
        np.testing.assert_array_equal(after[piece], 0.0)
        np.testing.assert_allclose(after[~piece], before[~piece], rtol=1e-6, atol=1e-9)
    # fitting: a training clip of pieces (a fifth of the body) on the walkway; they are not in the place model
    extra_objs, extra_feats = make_track(9400, 0.5, 0.7, 60)
    extra_feats = dict(extra_feats)
    extra_feats["place"] = extra_feats["place"].copy()
    extra_feats["place"][:, 3] *= 0.2
    spec = {**attrs["place"], "footprint_min_height": 0.5}
    fitted = AttributeScorer(attributes={"place": spec}, frame_sigma=0).fit_clips(
        train + [(extra_objs, extra_feats, 120)])
    assert fitted.uses_height
    xy = np.concatenate([normal_clip(s)[1]["place"] for s in range(4)])[:, :2].astype(np.float64)
    np.testing.assert_allclose(fitted.place__occ_logp.numpy(), scene.fit_occupancy(xy, spec["grid"], 1.0),
                               rtol=1e-12)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="footprint_min_height must be a fraction"):
            AttributeScorer(attributes={"place": {**attrs["place"], "footprint_min_height": bad}})


def test_scene_check_counts_match_a_direct_count_and_the_training_share_is_recorded():
    """The scene check: the number of objects and, per group, how many exceed the group's baseline by more than
    SCENE_CHECK_EXCESS; known answers on hand-set parts, and the fit's training share equals the same count over the
    training objects' calibrated parts (every attribute calibrated in-sample here, so object_parts on the training
    clips reproduces them)."""
    from tao_lab.scorer import AttributeScorer
    from tao_lab.scene_check import SCENE_CHECK_EXCESS

    attrs = {"speed_place": dict(SCENE_ATTRIBUTES["speed_place"]),
             "size": dict(SCENE_ATTRIBUTES["size"]),
             "dwell": {**SCENE_ATTRIBUTES["dwell"], "calibration": "in_sample"}}
    train = [normal_clip(s) for s in range(3)]
    scorer = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess").fit_clips(train)
    assert scorer.groups == ["motion", "size", "dwell"]
    base = scorer.fusion__baseline.numpy()
    # five objects; excess over the baselines of (motion, size, dwell); 0.5 itself does not count
    excess = np.array([[0.0, 0.2, -0.1, 0.9, -0.3],
                       [0.6, -0.1, 0.5, 0.7, 0.51],
                       [-0.2, 0.8, 0.3, 0.0, -0.1]])
    parts = {"speed_place": base[0] + excess[0], "size": base[1] + excess[1], "dwell": base[2] + excess[2]}
    assert SCENE_CHECK_EXCESS == 0.5
    n, over = scorer.excess_counts(parts)
    assert n == 5
    np.testing.assert_array_equal(over, [1, 3, 1])

    objs = ObjectTable.concat([c[0] for c in train])
    feats = {k: np.concatenate([c[1][k] for c in train]) for k in train[0][1]}
    n, over = scorer.excess_counts(scorer.object_parts(objs, feats))
    assert n == len(objs)
    np.testing.assert_allclose(scorer.fusion__check_train.numpy(), over / n, rtol=1e-12)
    np.testing.assert_allclose(scorer.group_excess(parts), excess, atol=1e-9)
    # dwell_still_fit="stay": the dwell model is fitted on whole stays, new objects are scored on their still frames;
    # the training share is counted as they are scored (not on the fit's whole stays), so the check compares like
    # with like
    stay = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess", dwell_still_speed=1.0,
                           dwell_still_fit="stay").fit_clips(train)
    scored = stay.object_parts(objs, feats)
    assert not np.allclose(scored["dwell"], scorer.object_parts(objs, feats)["dwell"])  # some walkers move, some not
    n, over = stay.excess_counts(scored)
    np.testing.assert_allclose(stay.fusion__check_train.numpy(), over / n, rtol=1e-12)
    plain_sum = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum").fit_clips(train)
    assert plain_sum.excess_counts(parts) is None
    with pytest.raises(ValueError, match="group excesses need fusion='sum_excess'"):
        plain_sum.group_excess(parts)


def _edge_rows(n_inner, n_edge, seed=0):
    """Objects of one clip: n_inner in the middle of a 360x240 frame with speed ~1, n_edge cut by the left edge with
    speed ~3 (the noisier measurement of a cut box), one row per frame."""
    rng = np.random.default_rng(seed)
    n = n_inner + n_edge
    place = np.tile(np.array([0.5, 0.7, 0.05, 0.2, W, H], np.float32), (n, 1))
    place[n_inner:, 0] = 0.01  # box from x = -5.4 px: touches the left edge
    vel = np.zeros((n, 3 + BINS), np.float32)
    vel[:, 0] = np.r_[rng.normal(1.0, 0.1, n_inner), rng.normal(3.0, 0.3, n_edge)]
    fx, fy, w, h = place[:, 0] * W, place[:, 1] * H, place[:, 2] * W, place[:, 3] * H
    xyxy = np.stack([fx - w / 2, fy - h, fx + w / 2, fy], 1)
    return ObjectTable.build(np.arange(n), xyxy, track_id=np.arange(n)), {"velocity": vel, "place": place}


def test_edge_calibration_puts_objects_cut_by_a_frame_edge_on_their_own_scale(tmp_path):
    """edge_calibration: the training objects touching a frame edge get their own calibration (their minimum -> 0,
    their 99.9th percentile -> 1), the others keep the common one (identical to the scorer without the option);
    fewer than MIN_EDGE_OBJECTS edge objects keep the common scale for everyone."""
    from tao_lab.scorer import AttributeScorer
    from tao_lab.scorer.attribute import MIN_EDGE_OBJECTS

    speed = {"feature": "velocity", "columns": [0], "model": "gmm", "tail": "upper", "calibration": "in_sample",
             "upper_percentile": 99.9}
    objs, feats = _edge_rows(400, 100)
    edge = scene.touches_edge(feats["place"])
    assert edge.sum() == 100 and not edge[:400].any()
    plain = AttributeScorer(attributes={"speed": speed}, frame_sigma=0).fit_clips([(objs, feats, 500)])
    own = AttributeScorer(attributes={"speed": {**speed, "edge_calibration": True}}, frame_sigma=0).fit_clips(
        [(objs, feats, 500)])
    p_plain, p_own = plain.object_parts(objs, feats)["speed"], own.object_parts(objs, feats)["speed"]
    np.testing.assert_allclose(p_own[~edge], p_plain[~edge], rtol=1e-6)
    assert p_own[edge].min() == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(p_own[edge], 99.9) == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(p_own[edge], p_plain[edge], atol=0.05)  # a scale of their own, not the common one
    reloaded(own, tmp_path, objs, feats, 500)  # the edge scale round-trips through the checkpoint
    few_objs, few_feats = _edge_rows(400, MIN_EDGE_OBJECTS - 1)
    few = AttributeScorer(attributes={"speed": {**speed, "edge_calibration": True}}, frame_sigma=0).fit_clips(
        [(few_objs, few_feats, 500)])
    few_plain = AttributeScorer(attributes={"speed": speed}, frame_sigma=0).fit_clips([(few_objs, few_feats, 500)])
    np.testing.assert_allclose(few.object_parts(few_objs, few_feats)["speed"],
                               few_plain.object_parts(few_objs, few_feats)["speed"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- place in body heights
def test_perspective_occupancy_spreads_each_footprint_by_its_own_body_height():
    model = np.array([0.0, 0.0, 0.4, 0.01])  # expected height = 0.4 x foot y (frame heights)
    rows, cols, aspect = 40, 60, 1.5
    far = np.array([[0.5, 0.25]])  # expected height 0.1: sigma 0.05 frame heights at 0.5 body heights
    near = np.array([[0.5, 0.75]])  # expected height 0.3: sigma 0.15
    for xy, sigma in ((far, 0.05), (near, 0.15)):
        logp = scene.fit_occupancy_perspective(xy, [rows, cols], model, 0.5, aspect)
        assert np.exp(logp).sum() == pytest.approx(1.0)
        p = np.exp(logp) - 0.5 / (rows * cols) / 1.5  # minus the pseudo-count (mass 1 + 0.5 in all)
        r0 = int(xy[0, 1] * rows)  # the footprint's cell row (the footprint sits on a cell corner: 2 rows tie)
        c0 = int(xy[0, 0] * cols)
        # along the column of cells through the footprint, p falls off as exp(-d^2 / 2 sigma^2)
        d = (np.arange(rows) + 0.5) / rows - xy[0, 1]
        col = p[:, c0]
        near_rows = np.flatnonzero(np.abs(d) < 2 * sigma)
        ratio = col[near_rows] / col[r0]
        np.testing.assert_allclose(ratio, np.exp(-0.5 * (d[near_rows] ** 2 - d[r0] ** 2) / sigma ** 2), rtol=1e-6)
        # horizontally the distance counts in frame heights too (x times the aspect)
        dx = ((np.arange(cols) + 0.5) / cols - xy[0, 0]) * aspect
        row = p[r0]
        near_cols = np.flatnonzero(np.abs(dx) < 2 * sigma)
        np.testing.assert_allclose(row[near_cols] / row[c0],
                                   np.exp(-0.5 * (dx[near_cols] ** 2 - dx[c0] ** 2) / sigma ** 2), rtol=1e-6)


def _two_paths_place(spec):
    """A place attribute fitted on clips with two paths, far (small walkers, row 0.5) and near (large ones, 0.9)."""
    from tao_lab.scorer import AttributeScorer

    def clip(seed):
        rng = np.random.default_rng(seed)
        parts = [make_track(seed * 100 + t, rng.uniform(0.05, 0.85), y + rng.normal(0, 0.005), 60,
                            start=int(rng.integers(0, 60)), rng=rng) for t, y in enumerate([0.5, 0.9] * 16)]
        return (*concat(parts), 120)

    clips = [clip(s) for s in range(3)]
    return AttributeScorer(attributes={"place": spec}, frame_sigma=0).fit_clips(clips), clips


PLACE_IN_HEIGHTS = {"model": "occupancy", "calibration": "loo", "grid": [24, 32], "occupancy_height_sigma": 0.5}


def test_place_in_body_heights_flags_a_step_off_the_path_near_and_far():
    """A walker one body height above each of the two paths: with the spread in body heights both steps are flagged;
    with the default's fixed blur (one cell of 8x8) the far step, a few pixels, is not."""

    def step_up(scorer, y):
        on = parts_of(scorer, make_track(9100, 0.5, y, 10), "place").mean()
        return parts_of(scorer, make_track(9101, 0.5, y - rel_height(y), 10), "place").mean() - on

    heights, _ = _two_paths_place(PLACE_IN_HEIGHTS)
    cells, _ = _two_paths_place({"model": "occupancy", "calibration": "loo", "grid": [8, 8]})
    assert step_up(heights, 0.5) > 0.3 and step_up(heights, 0.9) > 0.3  # measured 0.61 / 0.41
    assert step_up(cells, 0.5) < 0.2  # measured 0.04


def test_place_in_body_heights_round_trips_and_refuses_bad_values(tmp_path):
    from tao_lab.scorer import AttributeScorer

    heights, clips = _two_paths_place(PLACE_IN_HEIGHTS)
    loaded = reloaded(heights, tmp_path, *clips[0][:2], num_frames=120)
    assert np.array_equal(loaded.place__occ_logp.numpy(), heights.place__occ_logp.numpy())
    spec = PLACE_IN_HEIGHTS
    for bad in ({"occupancy_height_sigma": 0}, {"occupancy_height_sigma": 0.5, "model": "knn"}):
        with pytest.raises(ValueError, match="occupancy_height_sigma"):
            AttributeScorer(attributes={"place": {**spec, **bad}})


def _moving_in_place(track_id, flow, frames=80):
    """A track whose footprint barely moves (it stays within the dwell radius) while the flow in its box is ``flow``
    px/frame: a walker going into the depth of the picture (flow 1.0) or someone standing (flow 0.1)."""
    objs, feats = make_track(track_id, 0.5, 0.7, frames, speed_rel=0.001, jitter=0.2)
    feats["velocity"][:, :3] = flow
    return objs, feats


def test_dwell_still_fit_stay_keeps_the_stander_and_drops_the_walker_going_into_the_depth(tmp_path):
    """dwell_still_fit="stay": the dwell model is fitted on whole stays, the scored object counts its still detections.
    A stander's dwell score is exactly the default's (every detection still); a walker going into the depth (within
    the radius, flow 1.0 px/frame) scores what a fresh track scores (0 still frames), far below the stander. Round-trips
    through the checkpoint; a bad value is refused."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"dwell": {**SCENE_ATTRIBUTES["dwell"], "calibration": "in_sample"}}
    clips = [normal_clip(s) for s in range(4)]
    plain = AttributeScorer(attributes=attrs, frame_sigma=0).fit_clips(clips)
    stay = AttributeScorer(attributes=attrs, frame_sigma=0, dwell_still_speed=0.3,
                           dwell_still_fit="stay").fit_clips(clips)
    stander, depth = _moving_in_place(9101, 0.1), _moving_in_place(9102, 1.0)
    assert np.allclose(parts_of(stay, stander, "dwell"), parts_of(plain, stander, "dwell"))
    fresh = parts_of(stay, make_track(9103, 0.5, 0.7, 1), "dwell")[0]
    assert np.allclose(parts_of(stay, depth, "dwell"), fresh)
    assert parts_of(plain, depth, "dwell")[-20:].mean() > fresh + 1.0  # the default counts the moving stay
    assert parts_of(stay, stander, "dwell")[-20:].mean() > parts_of(stay, depth, "dwell")[-20:].mean() + 1.0
    objs, feats = concat([stander, depth])
    loaded = reloaded(stay, tmp_path, objs, feats, num_frames=80)
    assert loaded.dwell_still_fit == "stay" and loaded.dwell_still_speed == 0.3
    with pytest.raises(ValueError, match="dwell_still_fit must be 'still' or 'stay'"):
        AttributeScorer(attributes=attrs, dwell_still_fit="whole")


def test_dwell_still_fit_stay_does_not_flag_one_still_frame_where_normal_objects_never_stand():
    """On a camera where no training object is ever still, a model fitted on still counts (dwell_still_fit="still",
    dwell still round 1) sees only zeros, and a walker with a single still detection in its stay reads far above the
    calibrated tail; fitted on whole stays ("stay") that walker scores as a fresh track."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"dwell": {**SCENE_ATTRIBUTES["dwell"], "calibration": "in_sample"}}
    clips = []
    for s in range(4):
        objs, feats, n = normal_clip(s)
        feats["velocity"][:, :3] = np.maximum(feats["velocity"][:, :3], 1.0)  # never still
        clips.append((objs, feats, n))
    walker = make_track(9201, 0.2, 0.7, 30)
    walker[1]["velocity"][:, :3] = 1.0
    walker[1]["velocity"][10, :3] = 0.1  # one still detection
    still = AttributeScorer(attributes=attrs, frame_sigma=0, dwell_still_speed=0.3, dwell_still_fit="still")
    stay = AttributeScorer(attributes=attrs, frame_sigma=0, dwell_still_speed=0.3, dwell_still_fit="stay")
    p_still = parts_of(still.fit_clips(clips), walker, "dwell")
    p_stay = parts_of(stay.fit_clips(clips), walker, "dwell")
    fresh = parts_of(stay, make_track(9202, 0.2, 0.7, 1), "dwell")[0]
    assert p_still[10] > 2.0
    assert p_stay.max() < fresh + 0.5


def test_place_shrink_row_borrows_from_the_cells_row_not_from_the_scene():
    """fit_place_norm(shrink_to="row"): a sparse far cell's reference is shrunk towards its own grid row's (the
    objects at that depth), which is shrunk towards the scene's; with "scene" it is shrunk straight to the scene's.
    Known answers on a 2x2 grid: far row (top) speeds 1.0 (100 objects in the left cell, 4 in the right one at 2.0),
    near row 4.0 (100 objects per cell); ratio mode, quantile 50 (the median), prior 50."""
    far_left = np.column_stack([np.full(100, 0.25), np.full(100, 0.25)])
    far_right = np.column_stack([np.full(4, 0.75), np.full(4, 0.25)])
    near = np.column_stack([np.r_[np.full(100, 0.25), np.full(100, 0.75)], np.full(200, 0.75)])
    xy = np.vstack([far_left, far_right, near])
    x = np.r_[np.full(100, 1.0), np.full(4, 2.0), np.full(200, 4.0)][:, None]
    g = 4.0  # the scene's median (200 of 304 values are 4.0)
    w_cell = 4 / 54
    scene_ref = scene.fit_place_norm(xy, x, [2, 2], "ratio", 50.0, 50.0)["place_scale"][1, 0]
    assert scene_ref == pytest.approx(w_cell * 2.0 + (1 - w_cell) * g)
    row_median = 1.0  # the far row: 100 x 1.0 and 4 x 2.0
    row = (104 / 154) * row_median + (50 / 154) * g
    row_ref = scene.fit_place_norm(xy, x, [2, 2], "ratio", 50.0, 50.0, shrink_to="row")["place_scale"][1, 0]
    assert row_ref == pytest.approx(w_cell * 2.0 + (1 - w_cell) * row)
    assert row_ref < scene_ref - 1.0  # the sparse far cell is judged against far objects
    with pytest.raises(ValueError, match="place_shrink must be 'scene' or 'row'"):
        scene.fit_place_norm(xy, x, [2, 2], "ratio", shrink_to="column")


def test_coherent_directions_known_answers():
    """coherent_directions: all moving pixels one way -> that bin alone; every way equally -> the place's usual mix;
    half in each of two neighbouring bins -> the mean direction between their centres, weighted by the resultant's
    length cos(22.5 deg), the rest the place's mix."""
    place_p = np.full((1, BINS), 1.0 / BINS)
    place_p[0, :2] = [0.5, 0.5 - 6.0 / BINS]  # any distribution
    place_p /= place_p.sum()
    one = np.zeros((1, BINS))
    one[0, 3] = 1.0
    np.testing.assert_allclose(scene.coherent_directions(one, place_p), one, atol=1e-12)
    uniform = np.full((1, BINS), 1.0 / BINS)
    np.testing.assert_allclose(scene.coherent_directions(uniform, place_p), place_p, atol=1e-12)
    two = np.zeros((1, BINS))
    two[0, [5, 6]] = 0.5
    r = np.cos(np.pi / BINS)
    want = (1 - r) * place_p
    want[0, [5, 6]] += r * 0.5
    np.testing.assert_allclose(scene.coherent_directions(two, place_p), want, atol=1e-12)


def test_direction_coherence_quiets_an_object_growing_in_the_picture_not_a_crossing_walker(tmp_path):
    """direction_coherence: a walker crossing the rightward path (every pixel moving down) scores as without it (its
    direction is one); an object whose pixels move every way with a downward bias (one growing in the picture as it
    comes towards the camera) scores far lower than without it, and below the crossing walker. Round-trips; refused
    for other models."""
    from tao_lab.scorer import AttributeScorer

    coh = {"direction": {**SCENE_ATTRIBUTES["direction"], "direction_coherence": True}}
    plain = AttributeScorer(attributes={"direction": SCENE_ATTRIBUTES["direction"]}, frame_sigma=0)
    coherent = AttributeScorer(attributes=coh, frame_sigma=0)
    clips = [normal_clip(s) for s in range(4)]
    plain.fit_clips(clips), coherent.fit_clips(clips)
    crossing = make_track(9301, 0.5, 0.6, 40, direction=np.pi / 2)  # down: bin 2 only
    growing = make_track(9302, 0.5, 0.6, 40, direction=np.pi / 2)
    speed = growing[1]["velocity"][:, 0].copy()
    hist = np.full((40, BINS), 0.8 / BINS)
    hist[:, 2] += 0.2  # every way, a little more downward
    growing[1]["velocity"][:, 3:] = hist * speed[:, None]
    assert np.allclose(parts_of(coherent, crossing, "direction"), parts_of(plain, crossing, "direction"), atol=1e-5)
    assert parts_of(coherent, growing, "direction").mean() < parts_of(plain, growing, "direction").mean() - 0.5
    assert parts_of(coherent, crossing, "direction").mean() > parts_of(coherent, growing, "direction").mean() + 0.5
    objs, feats = concat([crossing, growing])
    assert reloaded(coherent, tmp_path, objs, feats).specs["direction"]["direction_coherence"] is True
    with pytest.raises(ValueError, match="direction_coherence applies to model direction"):
        AttributeScorer(attributes={"dwell": {**SCENE_ATTRIBUTES["dwell"], "direction_coherence": True}})


def test_scene_check_training_share_with_still_dwell_keeps_the_edge_calibration():
    """dwell_still_fit="stay" with edge_calibration on dwell: the scene check's training share (counted as new objects
    are scored) puts the objects touching a frame edge on their own calibration, as object_parts does. Short stays at
    the left edge share a place cell with long stays inside the frame, so the two scales differ: the edge objects'
    share is counted on theirs (the direct count)."""
    from tao_lab.scorer import AttributeScorer

    attrs = {"dwell": {**SCENE_ATTRIBUTES["dwell"], "calibration": "in_sample", "edge_calibration": True}}
    train = []
    for s in range(3):
        objs, feats, _ = normal_clip(s)
        parts = [(objs, feats)]
        for t in range(10):  # 8-frame stays at the left edge, still at every detection
            parts.append(make_track(5000 + 100 * s + t, 0.0, 0.7, 8, speed_rel=0.001, start=t))
        for t in range(3):  # 60-frame stays inside the frame, in the same place cell
            parts.append(make_track(6000 + 100 * s + t, 0.12, 0.7, 60, speed_rel=0.001, start=t))
        for _, f in parts[1:]:  # every stay still
            f["velocity"][:, :3] = 0.1
        train.append((*concat(parts), 120))
    objs = ObjectTable.concat([c[0] for c in train])
    feats = {k: np.concatenate([c[1][k] for c in train]) for k in train[0][1]}
    edge = scene.touches_edge(feats["place"])
    assert edge.sum() == 3 * 10 * 8
    stay = AttributeScorer(attributes=attrs, frame_sigma=0, fusion="sum_excess", dwell_still_speed=1.0,
                           dwell_still_fit="stay").fit_clips(train)
    scored = stay.object_parts(objs, feats)
    n, over = stay.excess_counts(scored)
    np.testing.assert_allclose(stay.fusion__check_train.numpy(), over / n, rtol=1e-12)
    assert stay.dwell__calib_edge.numpy()[1] < 0.5 * stay.dwell__calib.numpy()[1]  # the two scales differ
    assert over[0] > 0


def _track_with_pieces(track_id, foot_x0, foot_y, frames, pieces, keep, lower=False):
    """make_track's walker whose detections ``pieces`` (bool (frames,)) keep only the share ``keep`` of the box: its
    upper part (the box's bottom moves up), or with ``lower`` its lower part (the top moves down)."""
    objs, feats = make_track(track_id, foot_x0, foot_y, frames)
    xyxy = objs.xyxy.astype(np.float64).copy()
    place = feats["place"].astype(np.float64).copy()
    h = xyxy[:, 3] - xyxy[:, 1]
    if lower:
        xyxy[pieces, 1] = xyxy[pieces, 3] - keep * h[pieces]
    else:
        xyxy[pieces, 3] = xyxy[pieces, 1] + keep * h[pieces]
    place[:, 1] = xyxy[:, 3] / H
    place[:, 3] = (xyxy[:, 3] - xyxy[:, 1]) / H
    return ObjectTable.build(objs.frame, xyxy, track_id=objs.track_id), {**feats, "place": place.astype(np.float32)}


def test_carry_pieces_places_a_piece_where_its_tracks_nearest_whole_detection_says_it_stands():
    """Known answers on a hand-made walker (expected height its own everywhere): detections 2-3 keep the upper
    half of the body, detection 7 the lower half. A piece takes the width, height and ground row of its track's
    nearest whole detection in time (detection 2 -> 1, detection 3 -> 4 (frames 1 and 4 are 2 and 1 away), detection
    7 -> 6 (6 and 8 are both 1 away: the earlier)), and its footprint is its own top plus that height (upper part
    kept) or its own bottom (lower part kept); its x, its other features and the whole detections stay as they were.
    An untracked piece, and a track that is pieces throughout, have nothing to read from and stay too. On a stream
    (the piece the buffer's last detection) the reference is the latest whole detection before it."""
    frames = 9
    walker = np.zeros(frames, bool)
    walker[[2, 3]] = True
    objs, feats = _track_with_pieces(0, 0.2, 0.8, frames, walker, keep=0.5)
    low_objs, low_feats = _track_with_pieces(0, 0.2, 0.8, frames, np.arange(frames) == 7, keep=0.5, lower=True)
    objs = ObjectTable.build(np.concatenate([objs.frame[:7], low_objs.frame[7:]]),
                             np.concatenate([objs.xyxy[:7], low_objs.xyxy[7:]]), track_id=np.zeros(frames, int))
    feats = {k: np.concatenate([feats[k][:7], low_feats[k][7:]]) for k in feats}
    lone = make_track(5, 0.6, 0.6, 3)  # a track of pieces only
    lone_place = lone[1]["place"].copy()
    lone_place[:, 3] *= 0.3
    untracked = (ObjectTable.build(np.array([3]), lone[0].xyxy[:1], track_id=np.array([-1])),
                 {k: v[:1] for k, v in lone[1].items()})
    untracked[1]["place"] = lone_place[:1].copy()
    objs, feats = concat([(objs, feats), (lone[0], {**lone[1], "place": lone_place}), untracked])
    n = len(objs)
    feats["ground"] = np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32)
    model = np.array([rel_height(0.8), 0.0, 0.0, 0.01])  # expected height: the walker's, everywhere
    place = feats["place"].astype(np.float64)
    assert np.allclose(place[:frames, 3], np.where(np.isin(np.arange(frames), [2, 3, 7]), 0.5, 1.0) * place[0, 3])
    ref = scene.piece_references(objs, place, model, 0.6)
    np.testing.assert_array_equal(ref, [-1, -1, 1, 4, -1, -1, -1, 6, -1] + [-1] * 4)
    before = {k: v.copy() for k, v in feats.items()}
    out = scene.carry_pieces(objs, feats, model, 0.6)
    for k in feats:  # the input is not changed
        np.testing.assert_array_equal(feats[k], before[k])
    got = out["place"].astype(np.float64)
    top = place[:, 1] - place[:, 3]
    np.testing.assert_allclose(got[2, 1], top[2] + place[1, 3], rtol=1e-6)
    np.testing.assert_allclose(got[3, 1], top[3] + place[4, 3], rtol=1e-6)
    np.testing.assert_allclose(got[7, 1], place[7, 1], rtol=1e-6)  # the lower part kept: its own bottom
    for row, src in ((2, 1), (3, 4), (7, 6)):
        np.testing.assert_allclose(got[row, 2:4], place[src, 2:4], rtol=1e-6)
        np.testing.assert_array_equal(out["ground"][row], feats["ground"][src])
    np.testing.assert_allclose(got[:, 0], place[:, 0], rtol=1e-6)  # x is every box's own
    same = np.setdiff1d(np.arange(n), [2, 3, 7])
    np.testing.assert_array_equal(out["place"][same], feats["place"][same])
    np.testing.assert_array_equal(out["ground"][same], feats["ground"][same])
    np.testing.assert_array_equal(out["velocity"], feats["velocity"])
    # a walker whose upper half at detection 2 reads its footprint where its whole detections stand
    np.testing.assert_allclose(got[2, 1], place[2, 1] + 0.5 * place[1, 3], rtol=1e-6)
    # a stream: the buffer up to detection 3, whose nearest whole detection in the buffer is 1 (4 is not seen yet)
    seen = objs.frame[:4] <= 3
    head = (ObjectTable.build(objs.frame[:4][seen], objs.xyxy[:4][seen], track_id=objs.track_id[:4][seen]),
            {k: v[:4][seen] for k, v in feats.items()})
    np.testing.assert_array_equal(scene.piece_references(head[0], head[1]["place"].astype(np.float64), model, 0.6),
                                  [-1, -1, 1, 1])
    # nothing to carry: the features come back as they are
    whole = make_track(6, 0.3, 0.7, 5)
    assert scene.carry_pieces(*whole, model, 0.6) is whole[1]
    # other features carried on demand (a feature the clip lacks is skipped); the place is never copied
    feats["appearance"] = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    more = scene.carry_pieces(objs, feats, model, 0.6, carried=("ground", "appearance", "pose"))
    np.testing.assert_array_equal(more["appearance"][[2, 3, 7]], feats["appearance"][[1, 4, 6]])
    np.testing.assert_array_equal(more["appearance"][same], feats["appearance"][same])
    np.testing.assert_array_equal(more["place"], out["place"])
    assert "pose" not in more
    with pytest.raises(ValueError, match="placed from the reference"):
        scene.carry_pieces(objs, feats, model, 0.6, carried=("place",))


def test_piece_carry_scores_a_walkers_pieces_like_its_whole_detections_and_round_trips(tmp_path):
    """The default's ground attribute, fitted on walkers whose feet are on a bright walkway: a walker on the walkway
    whose middle third of detections keep only the upper half of the body (the strip below them is its own dark
    coat, grey ~40) reads those pieces far above the calibrated tail (off the path) without piece_carry and below it
    with; the same walker on a lawn (every whole detection's strip reads the lawn) keeps its pieces flagged. The key is
    saved with the checkpoint; bad values are refused."""
    from omegaconf import OmegaConf

    from helpers import CONFIG_DIR
    from tao_lab.scorer import AttributeScorer

    attrs = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "scorer" / "attribute.yaml"))["attributes"]
    spec = {"ground": attrs["ground"]}
    rng = np.random.default_rng(5)
    clips = [(*with_ground(normal_clip(seed)[:2], 165.0, 0.6, rng), 120) for seed in range(4)]
    plain = AttributeScorer(attributes=spec, frame_sigma=0).fit_clips(clips)
    carry = AttributeScorer(attributes=spec, frame_sigma=0, piece_carry=0.6).fit_clips(clips)
    pieces = (np.arange(30) >= 10) & (np.arange(30) < 20)

    def walker(track_id, grey, texture):
        # the upper 30%: a box's height is read against the expected height at its own (raised) footprint, lower in
        # this scene's steep perspective (a body height 0.21 of the frame at foot y 0.75, 0.12 at 0.61)
        objs, feats = _track_with_pieces(track_id, 0.3, 0.75, 30, pieces, keep=0.3)
        objs, feats = with_ground((objs, feats), grey, texture, rng)
        ground = feats["ground"].copy()
        ground[pieces] = np.stack([rng.normal(40.0, 4.0, pieces.sum()), np.abs(rng.normal(1.0, 0.1, pieces.sum()))], 1)
        return objs, {**feats, "ground": ground}

    path, lawn = walker(9500, 165.0, 0.6), walker(9501, 75.0, 1.5)
    assert parts_of(plain, path, "ground")[pieces].min() > 1.0
    assert parts_of(carry, path, "ground").max() < 1.0
    assert parts_of(carry, lawn, "ground")[pieces].min() > 1.0
    # whole detections out of reach of the pieces in the running median over 5 (track_window) score as before
    far = np.convolve(pieces, np.ones(5), "same") == 0
    np.testing.assert_array_equal(parts_of(carry, path, "ground")[far], parts_of(plain, path, "ground")[far])
    loaded = reloaded(carry, tmp_path, *path, num_frames=30)
    assert loaded.piece_carry == 0.6 and loaded.uses_height and loaded.piece_carry_features == ("ground",)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="piece_carry must be a fraction"):
            AttributeScorer(attributes=spec, piece_carry=bad)
    for bad in ("ground", ["ground", "place"]):
        with pytest.raises(ValueError, match="piece_carry_features is a list"):
            AttributeScorer(attributes=spec, piece_carry=0.5, piece_carry_features=bad)


def _boxes_table(frames, boxes, track_ids):
    """Objects and their place columns (frame-relative foot x, foot y, w, h, W, H) from boxes in px (x1, y1, x2, y2)."""
    b = np.asarray(boxes, np.float64)
    objs = ObjectTable.build(np.asarray(frames), b, track_id=np.asarray(track_ids))
    place = np.stack([(b[:, 0] + b[:, 2]) / 2 / W, b[:, 3] / H, (b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H,
                      np.full(len(b), W), np.full(len(b), H)], 1)
    return objs, place


def test_stacked_partners_and_join_read_a_split_person_as_one():
    """Known answers with an expected height of 60 px everywhere (0.25 of the 240 px frame): a person split into a
    head-and-shoulders box (y 100-125) and a legs box (y 135-160) in frame 0, each a one-detection track, are each
    other's partners; a far person's feet box right above a near person's head is no partner (together 100 px, over
    1.5 x 60), nor a box beside the piece (no horizontal overlap), nor one in another frame. With piece_join the upper
    piece's place is the union (foot y 160, height 60 px, width the union's) and it takes the legs' ground; the legs
    keep their own foot and ground and take the union's size; without it (or with a partner missing) nothing moves."""
    model = np.array([0.25, 0.0, 0.0, 0.01])
    boxes = [[100, 100, 120, 125],   # 0: head and shoulders
             [101, 135, 119, 160],   # 1: legs, 10 px below
             [200, 40, 215, 60],     # 2: a piece whose only box below is a whole person, together 100 px tall
             [198, 80, 222, 140],    # 3: that person (whole), 20 px below
             [300, 100, 320, 125],   # 4: a piece with a box beside it only
             [330, 132, 350, 160],   # 5: beside 4, no horizontal overlap
             [100, 135, 120, 160]]   # 6: frame 1, under where 0 was: another frame
    objs, place = _boxes_table([0, 0, 0, 0, 0, 0, 1], boxes, [1, 2, 3, 4, 5, 6, 7])
    pieces = np.flatnonzero(scene.fragment(place, model, 0.5))
    np.testing.assert_array_equal(pieces, [0, 1, 2, 4, 5, 6])
    np.testing.assert_array_equal(scene.stacked_partners(objs, place, model, pieces), [1, 0, -1, -1, -1, -1])
    ground = np.arange(14, dtype=np.float32).reshape(7, 2)
    feats = {"place": place.astype(np.float32), "ground": ground}
    assert scene.carry_pieces(objs, feats, model, 0.5) is feats  # no track reference, no join: nothing moves
    out = scene.carry_pieces(objs, feats, model, 0.5, join=True)
    got = out["place"].astype(np.float64)
    for row in (0, 1):
        np.testing.assert_allclose(got[row, 1:4], [160 / H, 20 / W, 60 / H], rtol=1e-6)
        np.testing.assert_allclose(got[row, 0], place[row, 0], rtol=1e-6)
        np.testing.assert_array_equal(out["ground"][row], ground[1])
    np.testing.assert_array_equal(out["place"][2:], feats["place"][2:])
    np.testing.assert_array_equal(out["ground"][2:], ground[2:])
    # a piece its track places is not joined: the track comes first
    tracked, tracked_place = _boxes_table([0, 0, 1], [boxes[0], boxes[1], [100, 100, 120, 160]], [1, 2, 1])
    tracked_feats = {"place": tracked_place.astype(np.float32), "ground": ground[:3]}
    joined = scene.carry_pieces(tracked, tracked_feats, model, 0.5, join=True)
    np.testing.assert_array_equal(joined["ground"][0], ground[2])  # from its track's whole detection, frame 1
    from tao_lab.scorer import AttributeScorer

    with pytest.raises(ValueError, match="piece_join places the pieces piece_carry finds"):
        AttributeScorer(attributes={"shape": {"feature": "scene.size", "columns": [3]}}, piece_join=True)


def test_pieces_with_track_height_are_boxes_short_against_their_own_track():
    """Known answers with an expected height of 60 px everywhere: a walker (track 1) 60 px tall except frames 3-4 cut to
    42 px (0.7 of itself, above half a person) is in pieces there with track_height 0.75 (0.7 < 0.75 x its 75th
    percentile 1.0) and not without it; a cart (track 2) 36 px tall throughout (0.6 of a person) is short against a
    person but not against itself; a 20 px box is a piece either way. piece_carry then places the walker's cut boxes
    from frames 2 and 5."""
    model = np.array([0.25, 0.0, 0.0, 0.01])
    walker = [[100, 100, 120, 160]] * 3 + [[100, 100, 120, 142]] * 2 + [[100, 100, 120, 160]] * 2
    cart = [[200, 124, 240, 160]] * 7
    objs, place = _boxes_table(list(range(7)) * 2 + [0], walker + cart + [[300, 140, 310, 160]], [1] * 7 + [2] * 7 + [3])
    short = np.zeros(15, bool)
    short[14] = True
    np.testing.assert_array_equal(scene.pieces(objs, place, model, 0.5), short)
    cut = short.copy()
    cut[[3, 4]] = True
    np.testing.assert_array_equal(scene.pieces(objs, place, model, 0.5, track_height=0.75), cut)
    ref = scene.piece_references(objs, place, model, 0.5, track_height=0.75)
    np.testing.assert_array_equal(ref[[3, 4]], [2, 5])
    assert (np.delete(ref, [3, 4]) == -1).all()
    out = scene.carry_pieces(objs, {"place": place.astype(np.float32)}, model, 0.5, track_height=0.75)
    np.testing.assert_allclose(out["place"][[3, 4], 1:4].astype(np.float64), place[[2, 5], 1:4], rtol=1e-6)
    from tao_lab.scorer import AttributeScorer

    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="piece_track_height is a fraction"):
            AttributeScorer(attributes={"shape": {"feature": "scene.size", "columns": [3]}}, piece_carry=0.5,
                            piece_track_height=bad)
    # piece_carry null turns pieces off as a whole: the track height then does nothing
    off = AttributeScorer(attributes={"speed": {"feature": "velocity", "columns": [0]}}, piece_track_height=0.85)
    assert off.piece_carry is None and not off.uses_height  # nothing reads the perspective: no piece is looked for


def test_piece_shape_own_keeps_a_carried_pieces_own_box_shape(tmp_path):
    """Known answers, expected height 60 px everywhere (fitted on walkers that tall): one track is a walker 20 px wide, 60 tall on frames 0-3 and a
    cart 48 px wide, 30 tall on frames 4-7 (a track that switched objects). With track_height 0.75 the cart's boxes
    are short against the track (0.5 < 0.75 x its 75th percentile 1.0) and carried from the walker's frame 3: with
    piece_shape=carried their shape (scene.size column 3) reads the walker's log(20/60), with own their own
    log(48/30); every other column and every whole box are the same either way. The key round-trips and bad values
    are refused. With piece_shape=wider the cart keeps its own shape when it is wider than piece_shape_width x the
    walker it was carried from (2.4x here)."""
    from tao_lab.scorer import AttributeScorer

    boxes = [[100, 100, 120, 160]] * 4 + [[100, 130, 148, 160]] * 4
    objs, place = _boxes_table(list(range(8)), boxes, [1] * 8)
    feats = {"place": place.astype(np.float32)}
    # the fit: walkers 60 px tall at feet rows 100-220 all over the frame's width (a flat 60 px plane)
    walkers = [[x, y - 60, x + 20, y] for x in range(0, 340, 20) for y in (100, 160, 220)]
    fit_objs, fit_place = _boxes_table(list(range(len(walkers))), walkers, list(range(len(walkers))))
    spec = {"shape": {"feature": "scene.size", "columns": [3], "model": "gmm", "components": 1}}
    got = {}
    for which in scene.PIECE_SHAPES:
        scorer = AttributeScorer(attributes=spec, piece_carry=0.5, piece_track_height=0.75, piece_shape=which)
        scorer.fit_clips([(fit_objs, {"place": fit_place.astype(np.float32)}, len(walkers))])
        np.testing.assert_allclose(scene.expected_height(scorer.scene__height.numpy(), place[:, :2]), 0.25,
                                   rtol=1e-6)  # 60 px of 240
        got[which] = np.asarray(scorer._features(objs, feats)["scene.size"], np.float64)
    np.testing.assert_allclose(got["carried"][4:, 3], np.log(20 / 60), rtol=1e-5)
    np.testing.assert_allclose(got["own"][4:, 3], np.log(48 / 30), rtol=1e-5)
    np.testing.assert_allclose(got["own"][:4, 3], np.log(20 / 60), rtol=1e-5)
    np.testing.assert_array_equal(got["own"][:, :3], got["carried"][:, :3])
    np.testing.assert_array_equal(got["own"][:4], got["carried"][:4])
    # wider: the cart (48 px) is 2.4x as wide as the walker it was carried from (20 px): its own shape over a ratio of
    # 1.5, the walker's over a ratio of 3
    np.testing.assert_array_equal(got["wider"], got["own"])
    narrow = AttributeScorer(attributes=spec, piece_carry=0.5, piece_track_height=0.75, piece_shape="wider",
                             piece_shape_width=3.0)
    narrow.fit_clips([(fit_objs, {"place": fit_place.astype(np.float32)}, len(walkers))])
    np.testing.assert_array_equal(np.asarray(narrow._features(objs, feats)["scene.size"]), got["carried"])
    loaded = reloaded(narrow, tmp_path, objs, feats, num_frames=8)
    assert (loaded.piece_shape, loaded.piece_shape_width) == ("wider", 3.0)
    with pytest.raises(ValueError, match="piece_shape_width"):
        AttributeScorer(attributes=spec, piece_carry=0.5, piece_shape="wider", piece_shape_width=0)
    with pytest.raises(ValueError, match="piece_shape must be one of"):
        AttributeScorer(attributes=spec, piece_carry=0.5, piece_shape="reference")
