"""Training-only validation: planted objects land where and when the labels say, at the requested speed; the
leave-one-clip-out protocol ranks a planted fast object and reports one AUC per variant and planted set."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import grey_clip, reference_objects
from tao_lab.online import BufferClip
from tao_lab.types import ObjectTable
from tao_lab.validation import PlantSpec, cut_walker, make_box, plant

H, W, T = 120, 160, 60


def donor_clip():
    """A clip with one dark 12x30 person-like block walking 2 px/frame over the grey background, and its objects."""
    frames = []
    for i in range(T):
        f = grey_clip().frame(0).copy()
        f[40:70, 10 + 2 * i:22 + 2 * i] = 30
        frames.append(f)
    objects = ObjectTable.build(np.arange(T), np.array([[10 + 2 * i, 40, 22 + 2 * i, 70] for i in range(T)],
                                                       np.float32))
    return BufferClip(frames, clip_id="donor"), objects


def centroid(diff):
    ys, xs = np.nonzero(diff)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("kind", ["box", "walker"])
def test_planted_object_is_where_the_labels_say_and_moves_at_the_requested_speed(kind):
    base = grey_clip()
    spec = PlantSpec("p", kind, (3.0, 3.0), duration=(20, 20))
    clip = plant(base, spec, reference_objects(), donor_clip(), np.random.default_rng(3))
    assert clip.labels.dtype == bool and 10 <= clip.labels.sum() <= 20
    frames = list(clip.frames())
    assert all(np.array_equal(f, clip.frame(i)) for i, f in enumerate(frames))  # streaming == random access
    changed = np.array([np.abs(f.astype(int) - base.frame(i)).max() > 20 for i, f in enumerate(frames)])
    assert not changed[~clip.labels].any()  # nothing pasted outside the labelled frames
    assert changed[clip.labels].mean() > 0.9  # (an entering sliver may be fainter than the test's 20 levels)
    idx = np.flatnonzero(clip.labels)
    assert np.all(np.diff(idx) == 1)  # one stretch
    # it enters through the border: its first labelled frame touches the frame edge
    h, w = clip.alpha.shape
    x, y = clip.top_left[idx[0]]
    assert x < 0 or y < 0 or x + w > W or y + h > H
    inner = [i for i in idx if 0 <= clip.top_left[i, 0] and clip.top_left[i, 0] + w <= W
             and 0 <= clip.top_left[i, 1] and clip.top_left[i, 1] + h <= H]  # fully inside the frame
    assert len(inner) >= 5
    c = [centroid(np.abs(frames[i].astype(int) - base.frame(i)).max(axis=2) > 20) for i in (inner[0], inner[-1])]
    speed = np.linalg.norm(c[1] - c[0]) / (inner[-1] - inner[0])
    assert speed == pytest.approx(3.0, rel=0.15)
    # size follows the reference objects standing there (30 px tall; a box is 0.8 of that)
    rows = np.flatnonzero((np.abs(frames[inner[0]].astype(int) - base.frame(0)).max(axis=2) > 20).any(axis=1))
    assert (rows[-1] - rows[0] + 1) == pytest.approx(24 if kind == "box" else 30, abs=3)
    # the clip's cache identity depends on what was planted
    other = plant(base, spec, reference_objects(), donor_clip(), np.random.default_rng(4))
    assert other.source != clip.source and clip.source.startswith(base.source)


def test_box_is_grey_in_a_grey_video_and_walker_cut_is_the_foreground():
    box, alpha = make_box(20, np.random.default_rng(0), grey=True)
    assert box.shape[0] == 20 and 24 <= box.shape[1] <= 32 and np.all(alpha == 1)
    assert np.array_equal(box[..., 0], box[..., 1]) and np.array_equal(box[..., 1], box[..., 2])
    clip, objects = donor_clip()
    sprite, a = cut_walker(clip, objects, np.random.default_rng(0))
    assert sprite.shape[:2] == (30, 12) and a.mean() > 0.8 and sprite.mean() < 60


def test_normal_speed_unit_plants_at_a_multiple_of_the_tracks_median_feet_speed():
    from tao_lab.validation.planted import normal_moving_speed

    # two clips' tracks: walkers at 1.0 and 2.0 px/frame (two tracks each, same ids in both clips: per-clip ids),
    # plus a standing object (0 px/frame, not a pace of walking) -> median of the moving feet speeds 1.5 ... of
    # one track at 1 and three at 2 -> 2.0
    def walker(tid, speed, n=30):
        f = np.arange(n)
        return ObjectTable.build(f, np.stack([10 + speed * f, np.full(n, 20.0), 20 + speed * f, np.full(n, 50.0)], 1),
                                 track_id=np.full(n, tid))
    standing = ObjectTable.build(np.arange(30), np.tile([[100.0, 20, 110, 50]], (30, 1)), track_id=np.full(30, 9))
    clip_a = ObjectTable.concat([walker(0, 1.0), walker(1, 2.0), standing])
    clip_b = ObjectTable.concat([walker(0, 2.0), walker(1, 2.0)])
    assert normal_moving_speed([clip_a, clip_b]) == pytest.approx(2.0)
    assert normal_moving_speed([clip_a]) == pytest.approx(1.5)  # 26 feet speeds of 1 and 26 of 2: the median between
    # feet_velocity measures within a track only (a concatenated table with repeated ids would mix two clips' walkers)
    assert normal_moving_speed([standing]) is None and normal_moving_speed([]) is None
    # a "normal" spec's speed is that multiple of the unit: 1.5 x 2 px/frame = 3 px/frame, as a px spec of 3
    base = grey_clip()
    px = plant(base, PlantSpec("p", "box", (3.0, 3.0), duration=(20, 20)), reference_objects(), None,
               np.random.default_rng(3))
    rel = plant(base, PlantSpec("p", "box", (1.5, 1.5), duration=(20, 20), speed_unit="normal"), reference_objects(),
                None, np.random.default_rng(3), normal_speed=2.0)
    np.testing.assert_allclose(rel.top_left, px.top_left, equal_nan=True)
    step = np.diff(rel.top_left[rel.labels], axis=0)
    assert np.linalg.norm(step, axis=1) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="normal_speed"):
        plant(base, PlantSpec("p", "box", (1.5, 1.5), speed_unit="normal"), reference_objects(), None,
              np.random.default_rng(3))
    with pytest.raises(ValueError, match="speed_unit"):
        PlantSpec("p", "box", (1.0, 2.0), speed_unit="m/s")


def test_plant_refuses_bad_input():
    with pytest.raises(ValueError, match="kind"):
        PlantSpec("x", "car", (1, 2))
    with pytest.raises(ValueError, match="speed"):
        PlantSpec("x", "box", (3, 1))
    with pytest.raises(ValueError, match="reference"):
        plant(grey_clip(), PlantSpec("x", "box", (1, 2)), ObjectTable.empty(), None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="donor"):
        plant(grey_clip(), PlantSpec("x", "walker", (1, 2)), reference_objects(), None, np.random.default_rng(0))


def test_leave_one_clip_out_validation_on_synthetic(compose_cfg):
    from sklearn.metrics import roc_auc_score

    from tao_lab.pipeline import Pipeline, instantiate, load_dataset
    from tao_lab.validation import planted_clips, validate
    from tao_lab.validation.protocol import planting_pipeline

    overrides = ["dataset.num_train_clips=3", "dataset.num_frames=120"]
    cfg = compose_cfg("eval", overrides)
    train = load_dataset(cfg).train
    plants = (PlantSpec("fast", "walker", (6.0, 8.0)), PlantSpec("cart", "box", (0.5, 1.0)))
    velocity_only = overrides + ["~scorer.attributes.appearance"]
    variants = {"velocity_only": compose_cfg("eval", velocity_only), "default": compose_cfg("eval", overrides)}
    result = validate(cfg, variants, train, plants=plants, seed=0, show_progress=False)
    assert list(result.auc) == ["velocity_only", "default"] and result.plants == ["fast", "cart"]
    # a fast planted object is found by the velocity attribute alone
    assert result.auc["velocity_only"]["fast"] > 0.9
    # independent recomputation of one cell: fit on the other clips, score the planted clip, pooled sklearn AUC
    vcfg = compose_cfg("eval", velocity_only)
    pipe = Pipeline(vcfg)
    pipe.set_camera_clips(train)  # the default detector's camera background, fitted on the training clips
    # the plants are cut from per-clip-background tracks, whatever the detector's scope
    carts = planted_clips(train, planting_pipeline(vcfg), plants, seed=0, show_progress=False)["cart"]
    scores, labels = [], []
    for v, clip in enumerate(carts):
        scorer = instantiate(vcfg.scorer).fit_clips(
            [(pipe.tracks(c), pipe.features(c), c.num_frames) for u, c in enumerate(train) if u != v])
        scores.append(scorer.score_clip(pipe.tracks(clip), pipe.features(clip), clip.num_frames).frame_scores)
        labels.append(clip.labels)
        assert 0 < clip.labels.sum() <= clip.num_frames // 2  # every held-out clip keeps normal frames
    expected = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert result.auc["velocity_only"]["cart"] == pytest.approx(expected, abs=1e-9)
    table = result.table()
    assert "velocity_only" in table and f"{result.mean('default'):.4f}" in table


def test_validation_refuses_trainer_scorers(compose_cfg):
    from tao_lab.validation import validate

    cfg = compose_cfg("eval", ["dataset.num_train_clips=2", "scorer=temporal_mae"])
    with pytest.raises(ValueError, match="Lightning Trainer"):
        validate(cfg, {"mae": cfg}, [], show_progress=False)


def test_validation_refuses_variants_of_the_working_resolution(compose_cfg):
    """Its clips are read once at the base config's resolution: a variant that resizes them cannot be compared."""
    from tao_lab.validation import validate

    cfg = compose_cfg("eval", ["dataset.num_train_clips=2"])
    with pytest.raises(ValueError, match="working_height"):
        validate(cfg, {"default": cfg, "small": compose_cfg("eval", ["working_height=100"])}, [], show_progress=False)


def test_plants_are_cut_from_per_clip_background_tracks_whatever_the_detectors_scope(compose_cfg):
    """planting_pipeline: the run's config with every detector background per clip and no motion split (hybrid's
    nested part too), so the planted objects are the same for variants of the background scope and of the motion
    split; everything else is the run's."""
    from tao_lab.validation.protocol import planting_pipeline

    camera = compose_cfg("eval", ["detector.background.scope=camera", "scorer.frame_sigma=1"])
    planter = planting_pipeline(camera)
    assert planter.cfg.detector.background.scope == "clip" and camera.detector.background.scope == "camera"
    assert planter.cfg.scorer.frame_sigma == 1 and planter.cfg.detector.min_area == camera.detector.min_area
    clip = compose_cfg("eval", ["detector.background.scope=clip"])
    assert planter.caches["detect"].key == planting_pipeline(clip).caches["detect"].key
    hybrid = planting_pipeline(compose_cfg("eval", ["detector=hybrid", "detector.background.background.scope=camera",
                                                    "detector.background.split_motion=1.0"]))
    assert hybrid.cfg.detector.background.background.scope == "clip"
    assert hybrid.cfg.detector.background.split_motion == 0.0
    split = compose_cfg("eval", ["detector.split_motion=1.0"])
    assert planting_pipeline(split).cfg.detector.split_motion == 0.0 and split.detector.split_motion == 1.0
    assert planting_pipeline(split).caches["detect"].key == planting_pipeline(clip).caches["detect"].key
    rows = compose_cfg("eval", ["detector.split_rows_valley=0.5"])
    assert planting_pipeline(rows).cfg.detector.split_rows_valley == 0.0 and rows.detector.split_rows_valley == 0.5
    assert planting_pipeline(rows).caches["detect"].key == planting_pipeline(clip).caches["detect"].key


def test_cut_threshold_keeps_the_faint_parts_of_a_walker():
    """A donor object with a strong body (60 grey levels above the background) and a faint arm (12 above): cut at 20
    grey levels the sprite is the body alone, at 8 it has the arm too; the validation config's cut_threshold reaches
    every planted set, and a non-positive one is refused."""
    from omegaconf import OmegaConf

    from tao_lab.types import ObjectTable
    from tao_lab.validation.in_run import plant_specs
    from helpers import ArrayClip

    frames = np.full((9, 60, 80, 3), 100, np.uint8)
    frames[4, 10:40, 30:42] = 160  # the body, on one frame only (the median background stays 100)
    frames[4, 15:20, 42:50] = 112  # the arm
    donor = ArrayClip(frames, "donor")
    objects = ObjectTable.build(np.array([4]), np.array([[30, 10, 50, 40]], float))
    _, strong = cut_walker(donor, objects, np.random.default_rng(0), min_height=0.1, max_height=0.9)
    _, faint = cut_walker(donor, objects, np.random.default_rng(0), min_height=0.1, max_height=0.9, threshold=8)
    assert strong[5:10, 14:20].max() < 0.5 and faint[5:10, 14:20].min() > 0.5  # the arm's pixels (box-relative)
    assert (strong > 0.5).sum() < (faint > 0.5).sum()
    specs = plant_specs(OmegaConf.create({"plants": None, "cut_threshold": 8}))
    assert specs and all(s.cut_threshold == 8.0 for s in specs)
    assert all(s.cut_threshold == 20.0 for s in plant_specs(OmegaConf.create({"plants": None})))
    with pytest.raises(ValueError, match="cut_threshold must be > 0"):
        PlantSpec("x", "walker", (1.0, 2.0), cut_threshold=0)
