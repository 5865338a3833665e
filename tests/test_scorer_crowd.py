"""Frame scores against crowds as large (AttributeScorer(frame_crowd_baseline=...), tao_lab.scorer.attribute
.crowd_levels): levels against an independent computation, the frame score's definition, a known answer, the
checkpoint and the refusals."""
import numpy as np
import pytest

from tao_lab.scorer.attribute import crowd_levels
from tao_lab.types import ObjectTable

W, H = 320, 240


def _random_frames(seed, frames=600, max_count=12):
    rng = np.random.default_rng(seed)
    video, frame, score = [], [], []
    for f in range(frames):
        n = int(rng.integers(1, max_count + 1))
        video += [f % 3] * n
        frame += [f // 3] * n
        score += list(rng.gamma(1.0, 0.2 + 0.1 * n, n))
    return np.array(video), np.array(frame), np.array(score)


def test_crowd_levels_match_a_direct_computation():
    """Frames grouped with a dict; counts pooled in order until a bin holds 50 frames (the short rest joins the last
    bin); each bin's 90th percentile; a non-decreasing fit by scikit-learn's isotonic regression weighted by frames."""
    from sklearn.isotonic import IsotonicRegression

    video, frame, score = _random_frames(0)
    per_frame: dict = {}
    for v, f, s in zip(video, frame, score):
        per_frame.setdefault((v, f), []).append(s)
    count = np.array([len(x) for x in per_frame.values()])
    top = np.array([max(x) for x in per_frame.values()])
    bins, current = [], []
    for c in sorted(set(count)):
        current.append(c)
        if np.isin(count, current).sum() >= 50:
            bins.append(current)
            current = []
    if current:
        bins[-1] += current
    raw = [np.percentile(top[np.isin(count, b)], 90) for b in bins]
    weight = [np.isin(count, b).sum() for b in bins]
    fitted = IsotonicRegression().fit(np.arange(len(bins)), raw, sample_weight=weight).predict(np.arange(len(bins)))
    expected = np.empty(count.max() + 1)
    expected[0] = fitted[0]
    for b, v in zip(bins, fitted):
        expected[b] = v
    got = crowd_levels(score, video, frame, 90.0)
    assert np.allclose(got, expected)
    assert np.all(np.diff(got) >= 0) and got[-1] > got[1]  # more objects, higher normal maxima


def test_crowd_levels_pool_a_crowd_that_scores_lower_with_the_one_before_weighted_by_frames():
    """Known answer of the non-decreasing fit: 50 frames of 1 object scoring 1, 50 of 2 scoring 3 and 150 of 3
    scoring 2. The 3-object level is below the 2-object one, so the two pool into their frame-weighted mean,
    (50 x 3 + 150 x 2) / 200 = 2.25; the 1-object level (and count 0) stays 1."""
    video, frame, score = [], [], []
    for f, (n, value) in enumerate([(1, 1.0)] * 50 + [(2, 3.0)] * 50 + [(3, 2.0)] * 150):
        video += [0] * n
        frame += [f] * n
        score += [value] * n
    got = crowd_levels(np.array(score), np.array(video), np.array(frame), 90.0)
    assert np.allclose(got, [1.0, 1.0, 2.25, 2.25])


def test_crowd_levels_pool_sparse_counts_and_fill_unseen_ones():
    """40 frames of 1 object and 40 of 6: the first bin (counts 0-1) has too few frames and pools up to 6; with
    min_frames 40 each count is its own bin and the counts between take the next seen count's bin."""
    video = np.zeros(40 + 240, np.int64)
    frame = np.r_[np.arange(40), np.repeat(np.arange(40, 80), 6)]
    score = np.r_[np.linspace(0, 1, 40), np.repeat(np.linspace(2, 3, 40), 6)]
    one = crowd_levels(score, video, frame, 50.0)
    pooled = np.percentile(np.r_[np.linspace(0, 1, 40), np.linspace(2, 3, 40)], 50)
    assert one.shape == (7,) and np.allclose(one, pooled)
    two = crowd_levels(score, video, frame, 50.0, min_frames=40)
    assert np.allclose(two[:2], 0.5) and np.allclose(two[2:], 2.5)
    with pytest.raises(ValueError, match="at least one object"):
        crowd_levels(np.zeros(0), np.zeros(0), np.zeros(0), 90.0)


def _clip(seed, walkers, frames=100, fast=None):
    """Walkers standing in for a camera's objects: one speed attribute; each walker's speed is noisy (a crowd's max
    over more walkers reaches higher). fast: (frame range, speed) of one extra object."""
    rng = np.random.default_rng(seed)
    f = np.repeat(np.arange(frames), walkers)
    speed = rng.gamma(4.0, 0.5, len(f))
    track = np.tile(np.arange(walkers), frames)
    if fast is not None:
        (a, b), v = fast
        f = np.r_[f, np.arange(a, b)]
        speed = np.r_[speed, np.full(b - a, v)]
        track = np.r_[track, np.full(b - a, walkers)]
    x = rng.uniform(0, W - 20, len(f))
    xyxy = np.stack([x, np.full(len(f), 100.0), x + 20, np.full(len(f), 150.0)], 1)
    objs = ObjectTable.build(f, xyxy, track_id=track)
    return objs, {"velocity": speed[:, None].astype(np.float32)}, frames


ATTRS = {"speed": {"feature": "velocity", "columns": [0], "model": "gmm", "tail": "upper",
                   "calibration": "in_sample", "track_window": 1}}


def test_crowd_baseline_is_the_held_out_level_per_count_and_the_frame_score_subtracts_it(tmp_path):
    """The fitted levels equal crowd_levels of the training objects' held-out scores, recomputed here by scorers
    fitted on the other clips (mapped onto the full fit's calibration); a scored clip's frame scores are the plain
    scorer's minus the level of each frame's count (the last level for larger crowds, the first for an empty frame);
    object scores do not change; the levels and scores round-trip through the checkpoint."""
    from tao_lab.scorer import AttributeScorer

    train = [_clip(s, n) for s, n in zip(range(4), (2, 3, 12, 14))]
    plain = AttributeScorer(attributes=ATTRS, frame_sigma=0).fit_clips(train)
    crowd = AttributeScorer(attributes=ATTRS, frame_sigma=0, frame_crowd_baseline=90.0).fit_clips(train)
    flo, fhi = crowd.speed__calib.numpy()
    held, video, frame = [], [], []
    for v, (o, f, _) in enumerate(train):
        sub = AttributeScorer(attributes=ATTRS, frame_sigma=0).fit_clips([c for u, c in enumerate(train) if u != v])
        lo, hi = sub.speed__calib.numpy()
        part = sub.object_parts(o, f)["speed"].astype(np.float64)
        held.append(((part * (hi - lo) + lo) - flo) / (fhi - flo))
        video.append(np.full(len(o), v))
        frame.append(o.frame)
    expected = crowd_levels(np.concatenate(held), np.concatenate(video), np.concatenate(frame), 90.0)
    level = crowd.frame__crowd_level.numpy()
    assert np.allclose(level, expected, atol=1e-5) and level[14] > level[2]
    objs, feats, n = _clip(9, 20, frames=30)  # 20 walkers: more than any training frame
    keep = ~((objs.frame == 3) | ((objs.frame == 4) & (objs.track_id > 0)))  # frame 3 empty, frame 4 one walker
    objs = ObjectTable.build(objs.frame[keep], objs.xyxy[keep], track_id=objs.track_id[keep])
    feats = {"velocity": feats["velocity"][keep]}
    a, b = plain.score_clip(objs, feats, n), crowd.score_clip(objs, feats, n)
    assert np.array_equal(a.objects.score, b.objects.score)
    count = np.bincount(objs.frame, minlength=n)
    assert count[3] == 0 and count[4] == 1 and count[0] == 20
    expected_frames = a.frame_scores - level[np.minimum(count, len(level) - 1)]
    assert np.allclose(b.frame_scores, expected_frames, atol=1e-6)
    assert b.frame_scores[3] == pytest.approx(0.0 - level[0]) and level[0] == level[1]
    path = tmp_path / "crowd.ckpt"
    crowd.save_checkpoint(path)
    loaded = AttributeScorer.load_from_checkpoint(path)
    assert loaded.frame_crowd_baseline == 90.0 and np.array_equal(loaded.frame__crowd_level.numpy(), level)
    assert np.array_equal(loaded.score_clip(objs, feats, n).frame_scores, b.frame_scores)


def test_a_sparse_frames_fast_object_outranks_a_crowds_normal_maximum_only_against_crowds_as_large():
    """Fitted on sparse (2-3 walkers) and crowded (12-14) clips. Scored: a crowded normal clip and a sparse clip
    with one object a little faster than the walkers' usual top speed. Plain max: the crowd's normal frames reach
    the fast object's frames (pooled AUC 0.77); against crowds as large (0.93), the fast
    object's frames rank above most normal frames."""
    from sklearn.metrics import roc_auc_score

    from tao_lab.scorer import AttributeScorer

    train = [_clip(s, n) for s, n in zip(range(6), (2, 3, 2, 12, 14, 13))]
    crowded = _clip(20, 13)
    sparse = _clip(21, 2, fast=((40, 70), 4.0))
    label = np.r_[np.zeros(100), (np.arange(100) >= 40) & (np.arange(100) < 70)]
    auc = {}
    for name, kw in (("plain", {}), ("crowd", {"frame_crowd_baseline": 90.0})):
        scorer = AttributeScorer(attributes=ATTRS, frame_sigma=0, **kw).fit_clips(train)
        scores = np.r_[scorer.score_clip(*crowded).frame_scores, scorer.score_clip(*sparse).frame_scores]
        auc[name] = roc_auc_score(label, scores)
    assert auc["plain"] < 0.8 and auc["crowd"] > 0.9, auc


@pytest.mark.parametrize("kwargs, match", [({"frame_crowd_baseline": 0.0}, "percentile"),
                                           ({"frame_crowd_baseline": 101.0}, "percentile"),
                                           ({"frame_crowd_baseline": 90.0, "frame_reduce": "sum_of_max"},
                                            "frame_reduce='max'")])
def test_bad_crowd_baselines_are_refused(kwargs, match):
    from tao_lab.scorer import AttributeScorer

    with pytest.raises(ValueError, match=match):
        AttributeScorer(attributes=ATTRS, **kwargs)


def test_one_training_clip_fits_levels_in_sample_with_a_warning(caplog):
    from tao_lab.scorer import AttributeScorer

    with caplog.at_level("WARNING"):
        scorer = AttributeScorer(attributes=ATTRS, frame_sigma=0, frame_crowd_baseline=90.0).fit_clips([_clip(0, 3)])
    assert "one training clip" in caplog.text
    assert len(scorer.frame__crowd_level) == 4 and np.isfinite(scorer.frame__crowd_level.numpy()).all()
