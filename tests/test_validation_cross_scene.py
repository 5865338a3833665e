"""Cross-scene validation pieces with known answers: the simulated cameras map points and speeds where the
homography says; perspective synthetic objects shrink with distance; every planted behaviour set puts its object
where, as large, as fast and in the direction its labels claim; the protocol prints one scene x set table."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import walking_tracks
from tao_lab.online import BufferClip
from tao_lab.types import ObjectTable
from tao_lab.validation.behaviours import BEHAVIOURS, SceneStats, plant_behaviour
from tao_lab.validation.scenes import SCALES, WARPS, WarpedClip, homography, scale_scene, warp_points

H, W, T = 120, 160, 120


# ----- simulated cameras ---------------------------------------------------------------------------------------

def test_homography_maps_the_source_quad_onto_the_frame():
    Hm = homography("ped2_low", 360, 240)
    src = np.array([[0, 0], [360, 0], [270, 240], [90, 240], [180, 240]])
    np.testing.assert_allclose(warp_points(Hm, src), [[0, 0], [360, 0], [360, 240], [0, 240], [180, 240]],
                               atol=1e-6)
    # the bottom edge spans half the width in the source: a 10 px step there is 20 px in the output, a step on
    # the top edge keeps its length
    bottom = warp_points(Hm, [[180, 240], [190, 240]])
    top = warp_points(Hm, [[180, 0], [190, 0]])
    assert np.linalg.norm(bottom[1] - bottom[0]) == pytest.approx(20, rel=1e-6)
    assert np.linalg.norm(top[1] - top[0]) == pytest.approx(10, rel=1e-6)
    # oblique: the right edge spans half the height, so vertical steps there double, on the left they do not
    Ho = homography("ped2_oblique", 360, 240)
    right = warp_points(Ho, [[360, 110], [360, 120]])
    left = warp_points(Ho, [[0, 110], [0, 120]])
    assert np.linalg.norm(right[1] - right[0]) == pytest.approx(20, rel=1e-6)
    assert np.linalg.norm(left[1] - left[0]) == pytest.approx(10, rel=1e-6)
    with pytest.raises(ValueError, match="unknown simulated camera"):
        homography("nope", 10, 10)


def _dot_clip(row: float, speed: float, n: int = 20, size: int = 3):
    frames = []
    for i in range(n):
        f = np.full((240, 360, 3), 100, np.uint8)
        x = 150 + speed * i
        f[int(row) - size:int(row) + size, int(x) - size:int(x) + size] = 250
        frames.append(f)
    return BufferClip(frames, clip_id=f"dot{row}")


def _centroid(frame):
    ys, xs = np.nonzero(frame[..., 0] > 175)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("name", sorted(WARPS))
def test_warped_clip_moves_objects_as_the_homography_says(name):
    for row in (40, 200):  # far and near rows
        clip = _dot_clip(row, 2.0)
        warped = WarpedClip(clip, homography(name, 360, 240), name)
        assert warped.source != clip.source and warped.num_frames == clip.num_frames
        c0, c1 = _centroid(warped.frame(2)), _centroid(warped.frame(17))
        expected = warp_points(warped.H, [[150 + 2 * 2 - 0.5, row - 0.5], [150 + 2 * 17 - 0.5, row - 0.5]])
        np.testing.assert_allclose([c0, c1], expected, atol=1.0)
    # near (bottom) rows move faster than far ones on the lowered cameras, slower on the raised one
    speeds = {}
    for row in (40, 200):
        w = WarpedClip(_dot_clip(row, 2.0), homography(name, 360, 240), name)
        speeds[row] = np.linalg.norm(_centroid(w.frame(17)) - _centroid(w.frame(2))) / 15
    if name in ("ped2_low", "ped2_lower"):
        assert speeds[200] > 1.5 * speeds[40]
    elif name == "ped2_high":
        assert speeds[40] > 1.3 * speeds[200]


@pytest.mark.parametrize("name", sorted(SCALES))
def test_resized_camera_scales_frames_objects_and_speeds(name):
    clip = _dot_clip(120, 5.0, size=5)
    (resized,) = scale_scene(name, [clip])
    s = SCALES[name]
    size = {"ped2_small": (216, 144), "ped2_large": (576, 384)}[name]
    assert (resized.width, resized.height) == size and resized.frame(0).shape == (size[1], size[0], 3)
    assert resized.source != clip.source and resized.num_frames == clip.num_frames
    # the dot's centre and its speed scale by s (the resampling keeps the centre of mass): its pixels' centres
    # average (159.5, 119.5) in frame 2, i.e. pixel-corner coordinates (160, 120), which map to (160, 120) * s
    c0, c1 = (_mass_centre(resized.frame(i)) for i in (2, 17))
    np.testing.assert_allclose(c0, np.array([160.0, 120.0]) * s - 0.5, atol=0.3)
    np.testing.assert_allclose(np.linalg.norm(c1 - c0) / 15, 5.0 * s, atol=0.1)
    # the dot's grey mass (bright minus background) scales with the area, s^2
    mass = lambda f: (f[..., 0].astype(float) - 100).sum()
    np.testing.assert_allclose(mass(resized.frame(2)), mass(clip.frame(2)) * s * s, rtol=0.03)


def test_unknown_resized_camera_is_refused():
    with pytest.raises(ValueError, match="unknown resized camera"):
        scale_scene("ped2_tiny", [_dot_clip(120, 5.0)])


def _mass_centre(frame):
    w = frame[..., 0].astype(float) - 100
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


# ----- perspective synthetic scenes ----------------------------------------------------------------------------

def _ped_rows(clips):
    rows = []
    for c in clips:
        for o in c.objects:
            feet = float(o.cy[0] + o.size[0] / 2)
            rows.append((feet, o.size[0], o.speed))
    return np.array(rows)


def test_perspective_synthetic_objects_shrink_and_slow_with_distance():
    from tao_lab.dataset.synthetic import SyntheticGenerator, make_synthetic

    flat = SyntheticGenerator(seed=0, num_train_clips=3, num_test_clips=0)
    persp = SyntheticGenerator(seed=0, num_train_clips=3, num_test_clips=0, perspective=3.0)
    assert "perspective" not in flat.spec() and "perspective" in persp.spec()
    r = _ped_rows(persp.dataset().train)
    far, near = r[r[:, 0] < np.quantile(r[:, 0], 0.25)], r[r[:, 0] > np.quantile(r[:, 0], 0.75)]
    assert np.median(near[:, 1]) > 2.0 * np.median(far[:, 1])  # 3x between the extreme lanes
    assert np.median(near[:, 2]) > 2.0 * np.median(far[:, 2])  # px/frame speeds scale too
    # size / depth factor is the drawn fraction of the frame height (0.17-0.24 of 160 px) at every row
    from tao_lab.dataset.synthetic import _depth_scale
    p = dict(persp.params)
    ratio = r[:, 1] / np.array([_depth_scale(p, y) for y in r[:, 0]]) / 160
    assert np.all((ratio > 0.16) & (ratio < 0.25))
    fr = _ped_rows(flat.dataset().train)
    fn, ff = fr[fr[:, 0] > np.quantile(fr[:, 0], 0.75)], fr[fr[:, 0] < np.quantile(fr[:, 0], 0.25)]
    assert np.median(fn[:, 1]) < 1.5 * np.median(ff[:, 1])  # today's scene: nearly flat (0.85-1.15)
    # perspective=1 is today's dataset, frame for frame and cache key for cache key
    a, b = make_synthetic(num_train_clips=1, num_test_clips=1), make_synthetic(num_train_clips=1, num_test_clips=1,
                                                                               perspective=1.0)
    for ca, cb in zip(a.train + a.test, b.train + b.test):
        assert ca.source == cb.source and all(np.array_equal(x, y) for x, y in zip(ca.frames(), cb.frames()))
    with pytest.raises(ValueError, match="perspective"):
        SyntheticGenerator(perspective=0.5)


# ----- planted behaviour sets ----------------------------------------------------------------------------------

def grey_clip(value=128, clip_id="bg"):
    rng = np.random.default_rng(0)
    base = np.clip(value + rng.normal(0, 2, (H, W, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    return BufferClip([base.copy() for _ in range(T)], clip_id=clip_id)


def donor_clip():
    frames = []
    for i in range(T):
        f = grey_clip().frame(0).copy()
        f[40:70, 10 + i:22 + i] = 30
        frames.append(f)
    objects = ObjectTable.build(np.arange(T), np.array([[10 + i, 40, 22 + i, 70] for i in range(T)], np.float32))
    return BufferClip(frames, clip_id="donor"), objects


def test_scene_statistics_recover_size_speed_place_and_direction():
    st = SceneStats.fit([walking_tracks()], W, H)
    assert st.local_height(80) == pytest.approx(32, rel=0.05) and st.local_height(60) == pytest.approx(24, rel=0.05)
    assert st.local_speed(80) == pytest.approx(1.6, rel=0.05)
    assert st.is_occupied(np.array([[80, 75]]))[0] and not st.is_occupied(np.array([[80, 20], [80, 115]])).any()
    counts = st.direction_counts(np.array([80.0, 75.0]))
    assert counts[0] > 0 and counts[4] > 0 and counts[2] == 0 and counts[6] == 0  # +-x seen, +-y never
    assert set(st.least_seen_directions(np.array([80.0, 75.0]))) == {2, 6}  # two-way path: across
    one_way = walking_tracks()
    one_way = one_way.take(one_way.track_id % 2 == 1)  # only the walkers going +x
    st1 = SceneStats.fit([one_way], W, H)
    assert list(st1.least_seen_directions(np.array([80.0, 75.0]))) == [4]  # one-way path: the opposite way


def _motion(clip, frames):
    """Per-frame (feet position, step) of the planted object from its recorded placement."""
    h, w = clip.alpha.shape
    feet = clip.top_left[frames] + np.stack([clip.scale[frames] * w / 2, clip.scale[frames] * h], 1)
    return feet, np.diff(feet, axis=0)


@pytest.mark.parametrize("kind", BEHAVIOURS)
@pytest.mark.parametrize("depth", [0, 2])
def test_planted_set_object_is_where_and_how_the_labels_say(kind, depth):
    st = SceneStats.fit([walking_tracks()], W, H)
    base = grey_clip()
    clip = plant_behaviour(base, kind, st, donor_clip(), np.random.default_rng(depth), depth=depth)
    lab = np.flatnonzero(clip.labels)
    assert 8 <= len(lab) <= T // 2 and clip.source.startswith(base.source) and kind in clip.source
    present = np.flatnonzero(clip.present)
    assert np.all(np.diff(present) == 1)  # one stretch: it never pops in or out mid-clip...
    h, w = clip.alpha.shape
    for i in (present[0], present[-1]):  # ...it is at the border, or the clip starts/ends with it in view
        x, y = clip.top_left[i]
        at_border = x < 1 or y < 1 or x + clip.scale[i] * w > W - 1 or y + clip.scale[i] * h > H - 1
        assert at_border or i in (0, T - 1)
    # the pixels change where the placement says (middle labelled frame)
    i = int(lab[len(lab) // 2])
    diff = np.abs(clip.frame(i).astype(int) - base.frame(i)).max(axis=2) > 20
    ys, xs = np.nonzero(diff)
    x, y = clip.top_left[i]
    s = clip.scale[i]
    assert xs.min() >= x - 2 and xs.max() <= x + s * w + 2 and ys.min() >= y - 2 and ys.max() <= y + s * h + 2
    feet, step = _motion(clip, lab)
    speed = np.linalg.norm(step, axis=1)
    local = st.local_speed(feet[1:, 1])
    # size: the local normal height where it stands (0.8 of it for a cart)
    rel = 0.8 if kind == "cart" else 1.0
    np.testing.assert_allclose(clip.scale[lab] * h, rel * st.local_height(feet[:, 1]), rtol=1e-6)
    if kind in ("fast", "fast_mild"):
        lo, hi = (3.3, 6.2) if kind == "fast" else (1.4, 3.1)
        assert np.all((speed / local > lo) & (speed / local < hi))
        assert np.all(np.abs(step[:, 0]) > 3 * np.abs(step[:, 1]))  # along the normal direction (x)
        assert st.band(feet[len(feet) // 2, 1]) == depth
    elif kind == "cart":
        assert w > 1.15 * h and np.all(clip.alpha == 1)
        assert np.all((speed / local > 0.65) & (speed / local < 1.35))
    elif kind == "wrong_way":
        assert np.all((speed / local > 0.75) & (speed / local < 1.25))
        assert np.all(np.abs(step[:, 1]) > 3 * np.abs(step[:, 0]))  # across the two-way path: +-y never seen
        before = np.arange(present[0], lab[0])
        if len(before) > 2:  # came in along the path (x)
            _, s0 = _motion(clip, before)
            assert np.all(np.abs(s0[:, 0]) > 3 * np.abs(s0[:, 1]))
    elif kind == "off_path":
        assert not st.is_occupied(feet).any()  # labelled = feet where no training object ever was
        assert np.all((speed / local > 0.75) & (speed / local < 1.25))
        others = np.setdiff1d(present, lab)
        if len(others):
            f_other, _ = _motion(clip, others)
            assert st.is_occupied(f_other).all()
    elif kind == "loiter":
        assert np.all(speed < 0.25) and 0.29 * T <= len(lab) <= 0.46 * T
        assert st.is_occupied(feet).all() and st.band(feet[0, 1]) == depth
        walking = np.arange(present[0], lab[0])
        if len(walking) > 2:  # it walked in at normal speed
            f0, s0 = _motion(clip, walking)
            ratio = np.linalg.norm(s0, axis=1) / st.local_speed(f0[1:, 1])
            assert np.all((ratio > 0.75) & (ratio < 1.25))


def test_off_path_walkers_are_planted_off_the_walkable_ground():
    """Without a walkable ground every unvisited place counts (rows above 45 and below 105 of the walking band);
    with one (rows >= 45: the band and the walkway below it), only the ground above it does, and every labelled
    frame has its feet there."""
    import dataclasses

    plain = SceneStats.fit([walking_tracks()], W, H)
    walkable = np.zeros((H, W), bool)
    walkable[45:] = True
    on_ground = dataclasses.replace(plain, walkable=walkable)
    rows = {}
    for name, st in (("plain", plain), ("ground", on_ground)):
        rows[name] = []
        for seed in range(3):
            for depth in range(3):
                clip = plant_behaviour(grey_clip(), "off_path", st, donor_clip(), np.random.default_rng(seed), depth)
                lab = np.flatnonzero(clip.labels)
                feet, _ = _motion(clip, lab)
                assert st.off_path(feet).all() and not st.is_occupied(feet).any()
                rows[name].append(feet[:, 1])
    assert max(r.max() for r in rows["plain"]) > 105  # an unvisited stretch of the walkway was an off-path place
    assert max(r.max() for r in rows["ground"]) < 45
    assert on_ground.off_walkway(np.array([[80, 20], [80, 115], [-5, 20]])).tolist() == [True, False, False]
    assert plain.off_walkway(np.array([[80, 20], [80, 115], [-5, 20]])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="off its walkable ground"):  # every unvisited place is walkable
        plant_behaviour(grey_clip(), "off_path", dataclasses.replace(plain, walkable=np.ones((H, W), bool)),
                        donor_clip(), np.random.default_rng(0), 0)


def test_walkable_ground_of_the_validation_scenes():
    from tao_lab.validation.scenes import SYNTHETIC_SCENES, walkable_ground

    ped2 = walkable_ground("ped2", 360, 240)
    assert ped2.shape == (240, 360)
    # (y, x): the walkway, the diagonal path at the top left; the lawn, the grass left of the path, the grass corners
    assert ped2[180, 180] and ped2[130, 20] and ped2[50, 88]
    assert not ped2[60, 180] and not ped2[50, 30] and not ped2[235, 300] and not ped2[235, 10]
    for name in WARPS:  # the simulated cameras see the same ground where their homography maps it
        warped = walkable_ground(name, 360, 240)
        src = np.array([[180, 180], [88, 50], [180, 60], [30, 50]], np.float64)  # (x, y): walkable, walkable, not, not
        q = np.round(warp_points(homography(name, 360, 240), src)).astype(int)
        seen = [(x, y, expected) for (x, y), expected in zip(q, [True, True, False, False])
                if 0 <= x < 360 and 0 <= y < 240]
        assert len(seen) >= 3, name  # most of the four points stay in every simulated camera's view
        for x, y, expected in seen:
            assert warped[y, x] == expected, (name, x, y)
    for name in SCALES:
        assert walkable_ground(name, 216, 144)[108, 108] and not walkable_ground(name, 216, 144)[36, 108]
    for name in SYNTHETIC_SCENES:
        syn = walkable_ground(name, 240, 160)
        assert syn[48:].all() and not syn[:47].any()
    assert walkable_ground("unknown", 10, 10) is None


def test_planted_sets_refuse_bad_input():
    st = SceneStats.fit([walking_tracks()], W, H)
    with pytest.raises(ValueError, match="unknown planted set"):
        plant_behaviour(grey_clip(), "teleport", st, donor_clip(), np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match="donor"):
        plant_behaviour(grey_clip(), "fast", st, None, np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match=">= 10 training objects"):
        SceneStats.fit([ObjectTable.empty()], W, H)


def test_warped_planted_clip_keeps_labels_only_where_the_object_stays_in_view():
    st = SceneStats.fit([walking_tracks()], W, H)
    clip = plant_behaviour(grey_clip(), "fast", st, donor_clip(), np.random.default_rng(0), depth=1)
    ident = WarpedClip(clip, np.eye(3), "identity")
    assert np.array_equal(ident.labels, clip.labels)
    assert np.array_equal(ident.frame(int(np.flatnonzero(clip.labels)[0])),
                          clip.frame(int(np.flatnonzero(clip.labels)[0])))
    # a camera that sees only the left quarter of the frame: labels only while the object is there
    zoom = np.diag([4.0, 1.0, 1.0])
    left = WarpedClip(clip, zoom, "zoom")
    h, w = clip.alpha.shape
    x = clip.top_left[:, 0]
    in_left = clip.labels & (x + clip.scale * w / 2 < W / 4)
    assert left.labels.sum() < clip.labels.sum() and np.all(left.labels[in_left])
    assert not left.labels[clip.labels & (x > W / 4)].any()


# ----- the protocol --------------------------------------------------------------------------------------------

def test_cross_scene_protocol_prints_one_scene_by_set_table(compose_cfg):
    from tao_lab.validation.cross_scene import cross_scene_validate

    cfg = compose_cfg("eval", [])
    variants = {"default": cfg, "sharp": compose_cfg("eval", ["scorer.frame_sigma=1"])}
    result = cross_scene_validate(cfg, variants, scenes=["synthetic", "synthetic_persp"], sets=["fast", "loiter"],
                                  num_clips=3, num_frames=70, show_progress=False)
    assert result.scenes == ["synthetic", "synthetic_persp"] and result.sets == ["fast", "loiter"]
    assert all(result.positives[s][k] > 0 for s in result.scenes for k in result.sets)
    for v in variants:
        cells = [result.auc[v][s][k] for s in result.scenes for k in result.sets]
        assert np.all(np.isfinite(cells)) and result.mean(v) == pytest.approx(np.mean(cells))
    # a walker 3.5-6x faster than its neighbours on a flat scene: any default worth the name finds it
    assert result.auc["default"]["synthetic"]["fast"] > 0.9
    text = result.tables()
    assert "[sharp]" in text and "synthetic_persp" in text and f"{result.mean('default'):.4f}" in text
    # independent recomputation of one cell: fit on the other clips of the scene, score the planted clip; positives
    # its labelled frames, negatives the held-out clip's own frames without the plant (negatives="clean", the
    # default) or the planted copy's unlabelled frames ("planted"); pooled (micro) and per-clip (macro) sklearn AUC
    from sklearn.metrics import roc_auc_score

    from tao_lab.pipeline import Pipeline, instantiate
    from tao_lab.validation.cross_scene import build_scenes

    scene = build_scenes(cfg, ["synthetic_persp"], ["fast", "loiter"], None, 3, 70, show_progress=False,
                         animate=True, occlusion=True)[0]  # cross_scene_validate's defaults: animated, behind
    pipe = Pipeline(cfg)
    pipe.set_camera_clips(cameras=[scene.train])  # the scene is its own camera (the default detector's background)

    def item(c):
        return pipe.tracks(c), pipe.features(c), c.num_frames

    def clean_pairs(fit_of):
        """(labels, scores) per held-out clip: its plant's labelled frames, then its own frames unplanted."""
        out = []
        for v, clip in enumerate(scene.planted["loiter"]):
            scorer = instantiate(cfg.scorer).fit_clips(fit_of(v))
            pos = scorer.score_clip(*item(clip)).frame_scores[clip.labels]
            neg = scorer.score_clip(*item(scene.train[v])).frame_scores
            out.append((np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))
        return out

    def others(v):
        return [item(c) for u, c in enumerate(scene.train) if u != v]

    pairs = clean_pairs(others)
    assert result.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate([y for y, _ in pairs]), np.concatenate([x for _, x in pairs])), abs=1e-9)
    planted = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast", "loiter"],
                                   num_clips=3, num_frames=70, show_progress=False, negatives="planted")
    scores, labels = [], []
    for v, clip in enumerate(scene.planted["loiter"]):
        scorer = instantiate(cfg.scorer).fit_clips(others(v))
        scores.append(scorer.score_clip(*item(clip)).frame_scores)
        labels.append(clip.labels)
    assert planted.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate(labels), np.concatenate(scores)), abs=1e-9)
    macro = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast", "loiter"],
                                 num_clips=3, num_frames=70, show_progress=False, metric="macro")
    assert macro.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        np.mean([roc_auc_score(y, x) for y, x in pairs]), abs=1e-9)
    assert "frame AUC macro" in macro.tables()
    # folds fitted on fewer clips: with fit_clips=1, clip v's scorer is fitted on clip v+1 (cyclically) alone
    few = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast", "loiter"],
                               num_clips=3, num_frames=70, show_progress=False, fit_clips=1)
    one = clean_pairs(lambda v: [item(scene.train[(v + 1) % 3])])
    assert few.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate([y for y, _ in one]), np.concatenate([x for _, x in one])), abs=1e-9)
    # one place withheld from each fold's fit: the same cell from fits without those tracks
    from tao_lab.validation.cross_scene import _seed, withhold_place

    shifted = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast", "loiter"],
                                   num_clips=3, num_frames=70, show_progress=False, withhold=0.2)

    def withheld(v):
        fit = [u for u in range(3) if u != v]
        heights = [scene.train[u].height for u in fit]
        rng = np.random.default_rng(_seed(0, "synthetic_persp", "withhold", v))  # the protocol's seed of fold v
        return withhold_place([item(scene.train[u]) for u in fit], heights, 0.2, rng)[0]

    held = clean_pairs(withheld)
    assert shifted.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate([y for y, _ in held]), np.concatenate([x for _, x in held])), abs=1e-9)
    # the scored clips' tracks cut to pieces, features computed again for the cut boxes; the fit untouched
    from tao_lab.validation.cross_scene import fragment_objects

    cut_run = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast", "loiter"],
                                   num_clips=3, num_frames=70, show_progress=False, fragments=0.5)

    def cut_item(c, v, kind):
        objects, _ = fragment_objects(pipe.tracks(c), 0.5,
                                      np.random.default_rng(_seed(0, "synthetic_persp", "fragments", v, kind)))
        return objects, pipe.feature_set.extract(c, objects, progress=False), c.num_frames

    pairs_cut = []
    for v, clip in enumerate(scene.planted["loiter"]):
        scorer = instantiate(cfg.scorer).fit_clips(others(v))
        pos = scorer.score_clip(*cut_item(clip, v, "loiter")).frame_scores[clip.labels]
        neg = scorer.score_clip(*cut_item(scene.train[v], v, "")).frame_scores
        pairs_cut.append((np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))
    assert cut_run.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate([y for y, _ in pairs_cut]), np.concatenate([x for _, x in pairs_cut])), abs=1e-9)
    with pytest.raises(ValueError, match="fragments must be a probability"):
        cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast"], num_clips=3,
                             num_frames=70, show_progress=False, fragments=0.0)
    with pytest.raises(ValueError, match="withhold must be a share"):
        cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast"], num_clips=3,
                             num_frames=70, show_progress=False, withhold=0.0)
    with pytest.raises(ValueError, match="negatives must be one of"):
        cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast"], num_clips=3,
                             num_frames=70, show_progress=False, negatives="other")
    with pytest.raises(ValueError, match="fit_clips"):
        cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["fast"], num_clips=3,
                             num_frames=70, show_progress=False, fit_clips=0)
    with pytest.raises(ValueError, match="unknown scene"):
        cross_scene_validate(cfg, variants, scenes=["mars"], show_progress=False)


def test_withhold_place_leaves_out_whole_tracks_through_one_place():
    from tao_lab.validation.cross_scene import withhold_place

    # two clips of 100x200 (W x H): track 0 walks along the top (feet at row 40), track 1 along the bottom (row
    # 180), track 2 crosses from the top to the bottom; one untracked blob at the bottom; features keep row order
    def clip(rows):
        a = np.array(rows, np.float64)
        objects = ObjectTable.build(a[:, 0], a[:, 1:5], track_id=a[:, 5].astype(int))
        return objects, {"row": np.arange(len(a)), "xy": a[:, 1:3]}, 50

    top = [(i, 10 + 5 * i, 20, 20 + 5 * i, 40, 0) for i in range(10)]
    bottom = [(i, 10 + 5 * i, 160, 20 + 5 * i, 180, 1) for i in range(10)]
    crossing = [(i, 50, 40 + 14 * i, 60, 60 + 14 * i, 2) for i in range(10)]  # feet rows 60 .. 186
    blob = [(3, 80, 170, 90, 182, -1)]
    items = [clip(top + crossing), clip(bottom + blob)]
    heights = [200, 200]  # frame heights (px)
    # footprints in order: clip 0 top 0-9, crossing 10-19; clip 1 bottom 20-29, blob 30. The centre is drawn
    # among them; pick seeds that draw a given one
    def seed_for(index):
        return next(s for s in range(1000) if np.random.default_rng(s).integers(31) == index)

    # around the top walker's first foot, 20% of the footprints (7 with the centre, distances in frame heights)
    # are all top feet: the top track leaves whole, the crossing walker (0.22 away at its nearest) stays
    out, gone = withhold_place(items, heights, 0.2, np.random.default_rng(seed_for(0)))
    assert set(out[0][0].track_id) == {2} and len(out[0][0]) == 10
    assert len(out[1][0]) == 11 and gone == pytest.approx(10 / 31)
    np.testing.assert_array_equal(out[0][1]["xy"], out[0][0].xyxy[:, :2])  # the feature rows follow the objects
    np.testing.assert_array_equal(out[0][1]["row"], np.arange(10, 20))
    assert out[0][2] == 50
    # around the crossing walker's last foot (row 186): its own previous foot and the bottom walker's nearest feet;
    # both tracks leave whole, the crossing one with its feet at the top of the picture; the blob (0.15 away) stays
    out, gone = withhold_place(items, heights, 0.2, np.random.default_rng(seed_for(19)))
    assert set(out[0][0].track_id) == {0} and len(out[0][0]) == 10
    assert list(out[1][0].track_id) == [-1] and gone == pytest.approx(20 / 31)
    # an untracked blob leaves alone
    out, _ = withhold_place(items, heights, 0.01, np.random.default_rng(seed_for(30)))
    assert len(out[1][0]) == 10 and -1 not in set(out[1][0].track_id) and len(out[0][0]) == 20
    with pytest.raises(ValueError, match="share in"):
        withhold_place(items, heights, 1.0, np.random.default_rng(0))


def test_fragment_objects_cut_a_stretch_of_a_track_to_its_upper_part():
    from tao_lab.validation.cross_scene import fragment_objects

    # two tracks of 10 detections (boxes 20 px wide, 40 tall), listed out of frame order, and one untracked blob
    rows = [(i, 10 + i, 20, 30 + i, 60, 1) for i in range(9, -1, -1)] + [(i, 100, 10, 120, 50, 2) for i in range(10)]
    rows.append((4, 50, 50, 60, 70, -1))
    a = np.array(rows, np.float64)
    objects = ObjectTable.build(a[:, 0], a[:, 1:5], track_id=a[:, 5].astype(int))
    same, cut = fragment_objects(objects, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(same.xyxy, objects.xyxy)
    assert not cut.any()
    out, cut = fragment_objects(objects, 1.0, np.random.default_rng(3), stretch=(0.5, 0.5), keep=(0.25, 0.25))
    assert not cut[-1] and np.array_equal(out.xyxy[-1], objects.xyxy[-1])  # the untracked blob stays
    for t in (1, 2):
        rows_t = np.flatnonzero(objects.track_id == t)
        frames = objects.frame[rows_t][cut[rows_t]]
        assert len(frames) == 5 and np.ptp(frames) == 4  # half of the track's 10 detections, consecutive frames
    b, o = out.xyxy[cut], objects.xyxy[cut]
    np.testing.assert_allclose(b[:, :3], o[:, :3])  # top, left and right stay
    np.testing.assert_allclose(b[:, 3] - b[:, 1], 0.25 * (o[:, 3] - o[:, 1]))  # a quarter of the height is left
    np.testing.assert_array_equal(out.xyxy[~cut], objects.xyxy[~cut])
    np.testing.assert_array_equal(out.frame, objects.frame)
    with pytest.raises(ValueError, match="probability"):
        fragment_objects(objects, 1.5, np.random.default_rng(0))


def test_fold_clips_hold_every_clip_out_once_and_fit_on_the_next_ones():
    from tao_lab.validation.cross_scene import fold_clips

    assert [fold_clips(v, 4) for v in range(4)] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert [fold_clips(v, 4, 2) for v in range(4)] == [[1, 2], [2, 3], [0, 3], [0, 1]]
    assert all(v not in fold_clips(v, 5, k) for v in range(5) for k in range(1, 5))
    with pytest.raises(ValueError, match="only 3 other clips"):
        fold_clips(0, 4, 4)


def test_results_averaged_over_plantings_match_a_direct_mean():
    from tao_lab.validation.cross_scene import CrossSceneResult, average_results

    def result(cells, positives):
        r = CrossSceneResult(["a", "b"], ["fast", "loiter"])
        r.auc = {"v": {"a": {"fast": cells[0], "loiter": cells[1]}, "b": {"fast": cells[2], "loiter": cells[3]}}}
        r.positives = {"a": {"fast": positives, "loiter": 1}, "b": {"fast": 2, "loiter": 3}}
        return r

    one, two = result([0.9, 0.5, np.nan, 0.7], 10), result([0.7, 0.6, 0.8, np.nan], 5)
    avg = average_results([one, two])
    assert avg.auc["v"]["a"] == pytest.approx({"fast": 0.8, "loiter": 0.55})
    assert avg.auc["v"]["b"] == pytest.approx({"fast": 0.8, "loiter": 0.7})  # a NaN cell counts as missing
    assert avg.positives["a"]["fast"] == 15 and avg.positives["b"]["loiter"] == 6
    assert avg.mean("v") == pytest.approx(np.mean([0.8, 0.55, 0.8, 0.7]))
    other = result([0.5] * 4, 1)
    other.sets = ["fast", "cart"]
    with pytest.raises(ValueError, match="differ"):
        average_results([one, other])


def test_cross_scene_plants_off_path_walkers_off_the_walkable_ground(compose_cfg, monkeypatch):
    from tao_lab.dataset.synthetic import LAWN_FRACTION
    from tao_lab.validation import cross_scene
    from tao_lab.validation.__main__ import main

    cfg = compose_cfg("eval", [])
    scene = cross_scene.build_scenes(cfg, ["synthetic"], ["off_path"], None, 2, 60, show_progress=False,
                                     off_path_ground=True)[0]
    planted = [c for c in scene.planted["off_path"] if c is not None]
    assert planted
    for clip in planted:
        feet, _ = _motion(clip, np.flatnonzero(clip.labels))
        assert len(feet) and np.all(feet[:, 1] < LAWN_FRACTION * clip.height)  # on the lawn, every labelled frame
    # the validation plants them so by default; --off-path-anywhere restores the earlier rounds' set
    import inspect

    seen = []
    signature = inspect.signature(cross_scene.build_scenes)

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        seen.append((bound.arguments["off_path_ground"], bound.arguments["occlusion"]))
        raise Stop

    monkeypatch.setattr(cross_scene, "build_scenes", spy)
    for extra in ([], ["--off-path-anywhere"], ["--paste-over"]):
        with pytest.raises(Stop):
            main(["--scenes", "synthetic", "--sets", "off_path", "--clips", "2", "--frames", "60", *extra])
    # objects planted behind nearer ones by default (session 60); --paste-over restores the earlier rounds' paste
    assert seen == [(True, True), (False, True), (True, False)]


def test_validation_cli_averages_seeds(tmp_path):
    import json

    from tao_lab.validation.__main__ import main

    args = ["--scenes", "synthetic", "--sets", "fast,wrong_way", "--clips", "2", "--frames", "60", "progress=false"]
    records = {}
    for name, extra in (("both", ["--seeds", "0,1"]), ("0", ["--seed", "0"]), ("1", ["--seed", "1"])):
        assert main([*args, *extra, "--json", str(tmp_path / f"{name}.json")]) == 0
        records[name] = json.loads((tmp_path / f"{name}.json").read_text())
    both = records["both"]
    assert both["seed"] == [0, 1]
    assert both["mean_per_seed"]["configured"] == pytest.approx(
        [records["0"]["mean"]["configured"], records["1"]["mean"]["configured"]])
    for k in ("fast", "wrong_way"):
        assert both["auc"]["configured"]["synthetic"][k] == pytest.approx(
            np.nanmean([records[s]["auc"]["configured"]["synthetic"][k] for s in ("0", "1")]))
    with pytest.raises(SystemExit):
        main([*args, "--seeds", "0,0"])
    # a withheld place is recorded; a share outside (0, 1) is refused before anything runs
    assert main([*args, "--seed", "0", "--withhold-place", "0.2", "--json", str(tmp_path / "w.json")]) == 0
    assert json.loads((tmp_path / "w.json").read_text())["withhold_place"] == 0.2
    with pytest.raises(SystemExit):
        main([*args, "--withhold-place", "1.5"])
    with pytest.raises(SystemExit):
        main([*args, "--fragments", "0"])


def test_cross_scene_variants_see_the_same_plants_at_their_own_working_resolution(compose_cfg, monkeypatch):
    """A working_height variant scores the very plants of the default, shrunk (tao_lab.dataset.resize)."""
    from tao_lab.dataset.resize import ResizedClip
    from tao_lab.pipeline import Pipeline
    from tao_lab.validation.cross_scene import cross_scene_validate

    seen: dict = {}
    tracks = Pipeline.tracks

    def recording(self, clip):
        seen.setdefault(self.cfg.get("working_height"), set()).add(
            (clip.height, clip.base.source if isinstance(clip, ResizedClip) else clip.source))
        return tracks(self, clip)

    monkeypatch.setattr(Pipeline, "tracks", recording)
    cfg = compose_cfg("eval", [])
    variants = {"default": cfg, "small": compose_cfg("eval", ["working_height=100"])}
    result = cross_scene_validate(cfg, variants, scenes=["synthetic"], sets=["fast"], num_clips=3, num_frames=70,
                                  show_progress=False)
    assert {h for h, _ in seen[None]} == {160} and {h for h, _ in seen[100]} == {100}
    assert {s for _, s in seen[100]} <= {s for _, s in seen[None]}  # the same clips and plants, resized
    assert all(np.isfinite(result.auc[v]["synthetic"]["fast"]) for v in variants)


def test_cross_scene_object_scale_is_measured_per_scene_on_its_training_clips(compose_cfg):
    """working_object_height enlarges a scene's training and planted clips alike, by the factor measured on that
    scene's own training clips; a scene whose objects are tall enough is left as it is."""
    from tao_lab.dataset.object_scale import camera_object_scale
    from tao_lab.validation.cross_scene import SceneClips, _at_working_resolution
    from helpers import square_crossers as _squares

    cfg = compose_cfg("eval", ["working_object_height=32"])
    small = SceneClips("small", [_squares(16, s) for s in range(3)])
    small.planted = {"fast": [_squares(16, 7), None, _squares(16, 8)]}
    seen = _at_working_resolution(small, cfg)
    factor = camera_object_scale(small.train, cfg)
    assert factor > 1.6
    assert {c.height for c in seen.train} == {c.height for c in seen.planted["fast"] if c is not None} \
        == {round(96 * factor)}
    assert seen.planted["fast"][1] is None
    tall = SceneClips("tall", [_squares(30, s) for s in range(3)])
    tall.planted = {"fast": [_squares(16, 9)] * 3}  # small plants do not decide: the scene's training clips do
    kept = _at_working_resolution(tall, cfg)
    assert kept.train == tall.train and kept.planted["fast"] == tall.planted["fast"]
