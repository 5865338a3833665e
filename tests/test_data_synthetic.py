"""The embedded synthetic dataset: determinism, exact GT, configured speeds/directions, round-trip."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from tao_lab.dataset import SyntheticGenerator, load_ucsd, make_synthetic, write_ucsd_layout
from tao_lab.dataset.synthetic import CROSS_MAX_ANGLE_DEG, KIND_IDS, NORMAL_MAX_ANGLE_DEG
from tao_lab.types import Dataset

# one generator per anomaly kind (3 short test clips each) so that every kind is covered whatever the seed
MANY = dict(seed=3, num_train_clips=1, num_test_clips=3, num_frames=90)
KINDS = ("rider", "vehicle", "wrong_way", "loiter")


@pytest.fixture(scope="module")
def many():
    gens = [SyntheticGenerator(anomaly_kinds=[k], **MANY) for k in KINDS]
    return Dataset("many", [c for g in gens for c in g.dataset().train][:2],
                   [c for g in gens for c in g.dataset().test])


def _digest(clip, idx):
    return [int(clip.frame(i).astype(np.int64).sum()) for i in idx]


def test_default_dataset_shape():
    ds = make_synthetic()
    assert isinstance(ds, Dataset) and ds.name == "synthetic"
    assert len(ds.train) == 4 and len(ds.test) == 4
    assert [c.clip_id for c in ds.train] == ["Train001", "Train002", "Train003", "Train004"]
    assert [c.clip_id for c in ds.test] == ["Test001", "Test002", "Test003", "Test004"]
    for c in ds.train + ds.test:
        assert (c.num_frames, c.height, c.width) == (120, 160, 240)
        f = c.frame(0)
        assert f.dtype == np.uint8 and f.shape == (160, 240, 3)
    for c in ds.train:
        assert not c.gt.frame_labels.any() and len(c.gt.tracks) == 0
        assert all(o.kind == "pedestrian" for o in c.objects)
    for c in ds.test:  # every test clip has normal and anomalous frames
        assert 0 < c.gt.frame_labels.sum() < c.num_frames
    assert "synthetic:v" in ds.test[0].source and '"seed": 0' in ds.test[0].source


def test_deterministic_from_seed_and_access_order():
    a = SyntheticGenerator(seed=5, num_frames=40).clip("test", 1)
    b = SyntheticGenerator(seed=5, num_frames=40).clip("test", 1)
    c = SyntheticGenerator(seed=6, num_frames=40).clip("test", 1)
    idx = [0, 17, 39]
    assert _digest(a, idx) == _digest(b, idx)
    assert _digest(a, idx) != _digest(c, idx)
    assert np.array_equal(a.gt.frame_labels, b.gt.frame_labels)
    assert np.array_equal(a.gt.tracks.xyxy, b.gt.tracks.xyxy)
    assert a.source == b.source != c.source
    # random access == sequential, and rendering twice gives the same bytes
    seq = list(a.frames())
    for i in (39, 3, 17, 3):
        assert np.array_equal(a.frame(i), seq[i])
    # clip k does not depend on how many clips are generated
    d = SyntheticGenerator(seed=5, num_frames=40, num_test_clips=2).clip("test", 1)
    assert _digest(d, idx) == _digest(a, idx)
    # pickles (for worker processes)
    e = pickle.loads(pickle.dumps(a))
    assert np.array_equal(e.frame(17), seq[17]) and np.array_equal(e.gt.mask(17), a.gt.mask(17))


def test_labels_masks_and_tracks_are_consistent(many):
    kinds_seen = set()
    for c in many.test:
        labels = c.gt.frame_labels
        assert labels.dtype == bool and labels.shape == (c.num_frames,)
        tr = c.gt.tracks
        assert set(np.unique(tr.frame)) == set(np.flatnonzero(labels))
        for i in range(c.num_frames):
            m = c.gt.mask(i)
            assert m.dtype == bool and m.shape == (c.height, c.width)
            assert m.any() == labels[i]
            if not labels[i]:
                continue
            cover = np.zeros_like(m)
            for x0, y0, x1, y1 in tr.xyxy[tr.frame == i].astype(int):
                assert 0 <= x0 < x1 <= c.width and 0 <= y0 < y1 <= c.height
                cover[y0:y1, x0:x1] = True
            assert not (m & ~cover).any()  # every anomalous pixel lies in a GT box
        for tid, cls in zip(tr.track_id, tr.cls):
            o = c.objects[tid]
            assert o.oid == tid and KIND_IDS[o.kind] == cls and o.kind != "pedestrian"
            kinds_seen.add(o.kind)
    assert kinds_seen == {"rider", "vehicle", "wrong_way", "loiter"}


def _measured_velocity(clip, tid):
    """Mean (vx, vy) of the GT box centre over the frames where the box does not touch the frame border."""
    t = clip.gt.tracks.take(clip.gt.tracks.track_id == tid)
    b = t.xyxy
    inside = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < clip.width) & (b[:, 3] < clip.height)
    if inside.sum() < 8:
        return None
    f = t.frame[inside]
    ctr = (b[inside, :2] + b[inside, 2:]) / 2
    return (ctr[-1] - ctr[0]) / (f[-1] - f[0])


def test_anomaly_speeds_and_directions_in_configured_ranges(many):
    g = SyntheticGenerator(**MANY).params
    measured = {k: 0 for k in ("rider", "vehicle", "wrong_way", "loiter")}
    for c in many.test:
        for tid in np.unique(c.gt.tracks.track_id):
            o = c.objects[tid]
            v = _measured_velocity(c, tid)
            if v is None:
                continue
            speed = float(np.hypot(*v))
            tol = 0.15
            if o.kind == "rider":
                lo, hi = g["rider_speed"]
            elif o.kind == "vehicle":
                lo, hi = g["vehicle_speed"]
            elif o.kind == "wrong_way":
                lo, hi = g["walk_speed"]
                assert abs(v[0]) <= math.tan(math.radians(CROSS_MAX_ANGLE_DEG)) * abs(v[1]) + tol  # across
            else:
                lo, hi = 0.0, g["loiter_speed"][1]  # lingering: net motion at most the lingering speed
            assert lo - tol <= speed <= hi + tol, (c.clip_id, o.kind, speed)
            if o.kind in ("rider", "vehicle"):
                assert abs(v[1]) <= 0.1 * abs(v[0]) + tol  # along the walkway
            measured[o.kind] += 1
    assert all(n >= 1 for n in measured.values()), measured


def test_normal_pedestrians_follow_the_walking_convention(many):
    lo, hi = SyntheticGenerator(**MANY).params["walk_speed"]
    directions = set()
    n = 0
    for c in many.train + many.test:
        for o in c.objects:
            if o.kind != "pedestrian" or len(o.cx) < 2:
                continue
            vx = (o.cx[-1] - o.cx[0]) / (len(o.cx) - 1)
            vy = (o.cy[-1] - o.cy[0]) / (len(o.cy) - 1)
            assert lo - 1e-6 <= math.hypot(vx, vy) <= hi + 1e-6
            assert abs(vy) <= math.tan(math.radians(NORMAL_MAX_ANGLE_DEG)) * abs(vx) + 1e-6
            assert not o.anomalous.any()
            directions.add(np.sign(vx))
            n += 1
    assert directions == {-1.0, 1.0} and n > 30


def test_objects_stand_out_from_the_background_but_not_trivially():
    c = SyntheticGenerator(seed=1, num_frames=60).clip("test", 0)
    frames = np.stack(list(c.frames())).astype(np.int16)
    bg = c.scene.background.astype(np.int16)
    masks = np.stack([c.gt.mask(i) for i in range(c.num_frames)])
    diff = np.abs(frames - bg).max(-1)
    assert masks.any()
    inside = diff[masks]
    assert np.median(inside) > 20  # visible to background subtraction
    assert (inside < 25).mean() > 0.03  # but some object pixels are close to the background
    # sensor noise and drift: the background is never reproduced exactly, but stays close
    still = np.abs(frames[0].astype(np.int16) - frames[1]).max(-1)
    assert 0 < np.median(still) < 15


def test_occluded_anomaly_pixels_are_not_in_the_mask():
    g = SyntheticGenerator(seed=2, num_train_clips=0, num_test_clips=6, num_frames=80, anomaly_kinds=["rider"],
                           overlap_prob=1.0, pedestrians=(6, 8))
    hidden = 0
    for k in range(6):
        c = g.clip("test", k)
        for i in np.flatnonzero(c.gt.frame_labels):
            layout = c._layout(i)
            own = c._owner(i, layout)
            sil = np.zeros((c.height, c.width), bool)
            for o, j, (_, msk, _), x0, y0 in layout:
                if o.anomalous[j]:
                    w = c._window(x0, y0, *msk.shape)
                    if w is not None:
                        sil[w[0]] |= msk[w[1]]
            m = c.gt.mask(i)
            assert not (m & ~sil).any()
            hidden += int((sil & ~m).sum())
            assert np.array_equal(m, np.isin(own, [q for q, (o, j, *_) in enumerate(layout) if o.anomalous[j]]))
    assert hidden > 0  # some rider pixels were behind a nearer pedestrian


def test_kind_selection_and_validation():
    ds = make_synthetic(seed=4, num_train_clips=1, num_test_clips=3, num_frames=60, anomaly_kinds=["vehicle"],
                        anomalies_per_clip=(2, 2))
    for c in ds.test:
        an = [o for o in c.objects if o.anomalous.any()]
        assert len(an) == 2 and {o.kind for o in an} == {"vehicle"}
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        SyntheticGenerator(anomaly_kinds=["dragon"])
    with pytest.raises(ValueError):
        SyntheticGenerator(anomaly_kinds=["rider", "vehicle"], anomaly_weights=[1.0])
    with pytest.raises(ValueError):
        SyntheticGenerator(height=10)
    with pytest.raises(ValueError):
        SyntheticGenerator().clip("val", 0)


def test_round_trip_through_ucsd_layout(tmp_path):
    g = SyntheticGenerator(seed=7, num_train_clips=2, num_test_clips=2, num_frames=30, height=64, width=96)
    ds = g.dataset()
    root = write_ucsd_layout(g, str(tmp_path), name="UCSDped2")
    assert root.endswith("UCSDped2")
    back = load_ucsd(str(tmp_path), "ped2")
    assert [c.clip_id for c in back.train] == [c.clip_id for c in ds.train]
    assert [c.clip_id for c in back.test] == [c.clip_id for c in ds.test]
    for a, b in zip(ds.train + ds.test, back.train + back.test):
        assert (a.num_frames, a.height, a.width) == (b.num_frames, b.height, b.width)
        for fa, fb in zip(a.frames(), b.frames()):
            assert np.array_equal(fa, fb)
    for a, b in zip(ds.test, back.test):
        assert np.array_equal(a.gt.frame_labels, b.gt.frame_labels)
        for i in range(a.num_frames):
            assert np.array_equal(a.gt.mask(i), b.gt.mask(i))
    assert any(c.gt.frame_labels.any() for c in back.test)


def test_rendering_a_window_mid_clip_at_both_scales():
    """Sequential rendering of a window far into the clip gives the frames random access gives, at the small and
    the large scale (its speed is measured by benchmarks/synthetic_render_bench.py, not asserted here)."""
    for h, w in ((120, 180), (480, 856)):
        c = SyntheticGenerator(seed=0, num_train_clips=0, num_test_clips=1, num_frames=400, height=h,
                               width=w).clip("test", 0)
        window = list(c.frames(100, 110))
        assert len(window) == 10 and all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in window)
        for i, f in zip(range(100, 110), window):
            assert np.array_equal(f, c.frame(i))
        assert not np.array_equal(window[0], window[-1])  # the people move


@pytest.mark.slow
def test_scale_clip_thousands_of_frames():
    c = SyntheticGenerator(seed=0, num_train_clips=0, num_test_clips=1, num_frames=3000, height=480,
                           width=856).clip("test", 0)
    assert c.gt.frame_labels.any()
    n = sum(1 for _ in c.frames())
    assert n == 3000


def test_hydra_instantiates_the_factories(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"_target_": "tao_lab.dataset.make_synthetic", "seed": 1, "num_train_clips": 1,
                            "num_test_clips": 1, "num_frames": 20, "height": 64, "width": 96,
                            "anomaly_kinds": ["rider", "loiter"], "pedestrians": [2, 3], "walk_speed": [1.0, 1.5]})
    ds = instantiate(cfg)
    ref = make_synthetic(seed=1, num_train_clips=1, num_test_clips=1, num_frames=20, height=64, width=96,
                         anomaly_kinds=("rider", "loiter"), pedestrians=(2, 3), walk_speed=(1.0, 1.5))
    assert ds.test[0].source == ref.test[0].source
    assert np.array_equal(ds.test[0].frame(10), ref.test[0].frame(10))
    write_ucsd_layout(ds, str(tmp_path))
    cfg = OmegaConf.create({"_target_": "tao_lab.dataset.load_ucsd", "data_dir": str(tmp_path), "subset": "ped2",
                            "max_frames": 5, "clip_ids": ["Test001"]})
    back = instantiate(cfg)
    assert back.train == [] and back.test[0].num_frames == 5
