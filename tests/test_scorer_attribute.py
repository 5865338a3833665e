"""Attribute scorer: ranking of planted anomalies, calibration, frame scores, checkpoint round-trip."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from helpers import CONFIG_DIR, make_clip
from tao_lab.scorer import AttributeScorer, frame_scores_from_objects, smooth_along_tracks
from tao_lab.types import ObjectTable

ATTRS = {
    "velocity": {"columns": [0], "model": "gmm", "components": 2, "tail": "upper", "calibration": "in_sample",
                 "track_window": 3},
    "appearance": {"model": "knn", "k": 1, "calibration": "loo", "weight": 0.5},
}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    train = [make_clip(rng) for _ in range(4)]
    return AttributeScorer(ATTRS, frame_sigma=1.0).fit_clips(train), rng


def test_planted_fast_objects_rank_above_normal(fitted):
    scorer, rng = fitted
    fast = set(range(15, 25))
    objects, feats, n = make_clip(rng, fast=fast)
    out = scorer.score_clip(objects, feats, n)
    is_fast = objects.track_id == 99
    assert out.objects.score[is_fast].min() > out.objects.score[~is_fast].max()
    assert set(out.parts) == {"velocity", "appearance"}
    assert out.parts["velocity"][is_fast].min() > 2.0  # far above the calibrated training range [0, 1]
    labels = np.isin(np.arange(n), list(fast))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, out.frame_scores) > 0.95
    assert out.frame_scores.shape == (n,) and out.frame_scores.dtype == np.float32


def test_training_scores_are_calibrated(fitted):
    scorer, _ = fitted
    s = scorer.train_object_scores()
    assert len(s) == 4 * 40 * 3
    # each attribute maps its training scores onto [0, ~1]: min exactly 0, 99.9th percentile 1 (weighted sum)
    assert s.min() >= -1e-6
    assert 0.5 < np.percentile(s, 99.9) <= 1.5 + 1e-6


def test_checkpoint_round_trip_gives_identical_scores(fitted, tmp_path):
    import torch

    scorer, rng = fitted
    path = tmp_path / "ckpt" / "attribute.ckpt"
    scorer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # tensors and plain values only
    assert {"state_dict", "hyper_parameters", "pytorch-lightning_version"} <= set(ckpt)
    restored = AttributeScorer.load_from_checkpoint(path)
    objects, feats, n = make_clip(rng, fast={3, 4})
    a, b = scorer.score_clip(objects, feats, n), restored.score_clip(objects, feats, n)
    np.testing.assert_array_equal(a.objects.score, b.objects.score)
    np.testing.assert_array_equal(a.frame_scores, b.frame_scores)
    np.testing.assert_array_equal(scorer.train_object_scores(), restored.train_object_scores())
    assert restored.appearance__bank.shape == scorer.appearance__bank.shape


def test_checkpoint_written_before_the_package_rename_loads(fitted, tmp_path):
    """Scorers lived in tao_lab.scorers before the package took its config group's name (tao_lab.scorer): a checkpoint
    of that time names its class by the old path, and still loads, to the same scores."""
    import torch

    from tao_lab.checkpoints import CheckpointError

    scorer, rng = fitted
    path = tmp_path / "before_rename.ckpt"
    scorer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["tao_lab_scorer"] == "tao_lab.scorer.attribute.AttributeScorer"
    ckpt["tao_lab_scorer"] = "tao_lab.scorers.attribute.AttributeScorer"  # what the old code wrote
    torch.save(ckpt, path)
    restored = AttributeScorer.load_from_checkpoint(path)
    objects, feats, n = make_clip(rng, fast={3, 4})
    np.testing.assert_array_equal(restored.score_clip(objects, feats, n).objects.score,
                                  scorer.score_clip(objects, feats, n).objects.score)
    # the old path of another scorer class is still another class
    ckpt["tao_lab_scorer"] = "tao_lab.scorers.temporal_mae.TemporalMaeScorer"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"checkpoint of tao_lab\.scorer\.temporal_mae\.TemporalMaeScorer, "
                                              r"not of tao_lab\.scorer\.attribute\.AttributeScorer"):
        AttributeScorer.load_from_checkpoint(path)


def test_unfitted_and_bad_input_errors():
    scorer = AttributeScorer(ATTRS)
    objects, feats, n = make_clip(np.random.default_rng(1))
    with pytest.raises(RuntimeError, match="not fitted"):
        scorer.score_clip(objects, feats, n)
    with pytest.raises(ValueError, match="unknown keys"):
        AttributeScorer({"velocity": {"modle": "gmm"}})
    with pytest.raises(KeyError, match="needs feature"):
        AttributeScorer({"pose": {"model": "knn"}}).fit_clips([(objects, feats, n)])


def test_default_scorer_and_empty_frames():
    rng = np.random.default_rng(2)
    train = []
    for _ in range(3):
        o, f, n = make_clip(rng)
        train.append((o, {"velocity": np.repeat(f["velocity"][:, :1], 3, axis=1), "appearance": f["appearance"]}, n))
    # the default: velocity columns 2 and 0 (two attributes) + appearance 1-NN
    scorer = AttributeScorer(frame_sigma=0).fit_clips(train)
    objects, f, n = make_clip(rng, num_frames=10)
    keep = objects.frame < 8  # frames 8, 9 have no object
    feats = {"velocity": np.repeat(f["velocity"][keep][:, :1], 3, axis=1), "appearance": f["appearance"][keep]}
    out = scorer.score_clip(objects.take(keep), feats, n)
    assert set(out.parts) == {"velocity", "velocity_mean", "appearance"}
    assert out.frame_scores[8] == 0.0 and out.frame_scores[9] == 0.0  # the calibrated training minimum


@pytest.mark.parametrize("calibration", ["loo", "in_sample"])
def test_nan_features_score_zero_for_that_attribute(calibration):
    rng = np.random.default_rng(3)
    train = [make_clip(rng) for _ in range(3)]
    for o, f, n in train:  # e.g. pose: no person found in some boxes
        f["appearance"][::7] = np.nan
    scorer = AttributeScorer({"appearance": {"model": "knn", "calibration": calibration}}).fit_clips(train)
    s = scorer.train_object_scores()
    assert np.isfinite(s).all() and s.min() == pytest.approx(0.0, abs=1e-6)
    assert 0.5 < np.percentile(s, 99.9) <= 1.0 + 1e-6
    assert len(scorer.appearance__bank) == sum(int(np.isfinite(f["appearance"]).all(1).sum()) for _, f, _ in train)
    objects, feats, n = make_clip(rng, num_frames=5)
    feats["appearance"][0] = np.nan
    out = scorer.score_clip(objects, feats, n)
    assert out.parts["appearance"][0] == 0.0 and np.isfinite(out.objects.score).all()


def test_frame_and_track_helpers():
    f = frame_scores_from_objects(np.array([0, 0, 2]), np.array([0.5, 2.0, 1.0]), 4, empty_value=-1.0)
    np.testing.assert_array_equal(f, [2.0, -1.0, 1.0, -1.0])
    objs = ObjectTable.build(np.array([0, 1, 2, 3, 0]), np.zeros((5, 4)), track_id=np.array([1, 1, 1, 1, 2]))
    sm = smooth_along_tracks(objs, np.array([0.0, 10.0, 0.0, 0.0, 5.0]), 3)
    np.testing.assert_array_equal(sm, [0.0, 0.0, 0.0, 0.0, 5.0])  # the spike is removed; track 2 untouched
    # a spike on a track's first or last detection is removed too (the window shifts inwards at the ends), and a
    # window wider than the track shrinks to it: independent check against a direct median over each window
    vals = np.array([9.0, 1.0, 2.0, 1.5, 8.0, 7.0, 3.0])
    objs = ObjectTable.build(np.array([0, 1, 2, 3, 4, 0, 1]), np.zeros((7, 4)),
                             track_id=np.array([1, 1, 1, 1, 1, 2, 2]))
    t1 = vals[:5]
    sm = smooth_along_tracks(objs, vals, 3)
    windows3 = [t1[0:3], t1[0:3], t1[1:4], t1[2:5], t1[2:5]]
    np.testing.assert_array_equal(sm[:5], [np.median(w) for w in windows3])
    assert sm[0] == 2.0 and sm[4] == 2.0  # both end spikes gone
    np.testing.assert_array_equal(sm[5:], [7.0, 3.0])  # a two-detection track has no median: unchanged
    sm9 = smooth_along_tracks(objs, vals, 9)  # wider than track 1 (5 rows): one window of 5
    np.testing.assert_array_equal(sm9[:5], np.full(5, np.median(t1)))


def test_track_quantile_keeps_an_excess_that_lasts_a_quarter_of_the_window():
    """fusion_track_quantile: the window's 75th percentile keeps a run of 4 high detections in 15 that the median
    drops, drops a run of 2, and equals a direct percentile over each (inward-shifted) window; 50 is the median."""
    vals = np.zeros(30)
    vals[5:7] = 3.0  # a 2-detection excess (a merge, a hand-over)
    vals[18:22] = 2.0  # a 4-detection excess
    objs = ObjectTable.build(np.arange(30), np.zeros((30, 4)), track_id=np.ones(30, int))
    q75 = smooth_along_tracks(objs, vals, 15, quantile=75.0)
    starts = np.clip(np.arange(30) - 7, 0, 30 - 15)  # the window shifts inwards at the track's ends
    np.testing.assert_allclose(q75, [np.percentile(vals[s:s + 15], 75) for s in starts], rtol=1e-6)
    assert q75[19] > 0 and q75[5] == 0.0  # the lasting excess survives, the short one does not
    assert smooth_along_tracks(objs, vals, 15)[19] == 0.0  # the median drops both
    np.testing.assert_array_equal(smooth_along_tracks(objs, vals, 15, quantile=50.0),
                                  smooth_along_tracks(objs, vals, 15))
    with pytest.raises(ValueError, match="percentile"):
        AttributeScorer(fusion_track_quantile=120.0)
    # the scorer's object scores are that percentile of its fused scores along each track, and round-trip
    rng = np.random.default_rng(5)
    train = [make_clip(rng) for _ in range(3)]
    plain = AttributeScorer(ATTRS, frame_sigma=0.0).fit_clips(train)
    q = AttributeScorer(ATTRS, frame_sigma=0.0, fusion_track_window=9, fusion_track_quantile=75.0).fit_clips(train)
    objects, feats, n = make_clip(rng, fast=set(range(15, 19)))
    fused = plain.score_clip(objects, feats, n).objects.score
    np.testing.assert_allclose(q.score_clip(objects, feats, n).objects.score,
                               smooth_along_tracks(objects, fused, 9, quantile=75.0), rtol=1e-6)
    assert q.hparams["fusion_track_quantile"] == 75.0


def test_track_level_group_smooths_each_group_before_the_sum():
    """fusion_track_level="group": short excesses of two groups at different detections add up to a lasting fused
    excess that the object level keeps and the group level removes; a lasting excess in one group is kept by both;
    the object scores are the sum of each group's excess smoothed along the track (checked against a direct
    computation), and the option round-trips through the hyperparameters."""
    attrs = {"speed": {"feature": "velocity", "columns": [0], "model": "gmm", "components": 1, "tail": "upper",
                       "calibration": "in_sample", "group": "motion"},
             "look": {"feature": "appearance", "columns": [0], "model": "gmm", "components": 1, "tail": "upper",
                      "calibration": "in_sample", "group": "appearance"}}
    rng = np.random.default_rng(7)
    train = [make_clip(rng) for _ in range(3)]
    kw = dict(frame_sigma=0.0, fusion="sum_excess", fusion_track_window=15, fusion_track_quantile=75.0)
    obj = AttributeScorer(attrs, **kw).fit_clips(train)
    grp = AttributeScorer(attrs, fusion_track_level="group", **kw).fit_clips(train)
    assert grp.hparams["fusion_track_level"] == "group"
    objects, feats, n = make_clip(rng)
    # a walker's track: speed far above normal on 3 detections, then its look on 3 others, then both normal;
    # another walker's track with a lasting speed excess
    speeds = np.asarray(feats["velocity"], np.float64).copy()
    looks = np.asarray(feats["appearance"], np.float64).copy()
    high = speeds[:, 0].max() * 20, np.abs(looks[:, 0]).max() * 20
    rows = np.flatnonzero(objects.track_id == objects.track_id[0])[:30]
    other = np.flatnonzero(objects.track_id == objects.track_id[-1])[:30]
    assert len(rows) >= 15 and len(other) >= 15
    speeds[rows[5:8], 0] = high[0]
    looks[rows[8:11], 0] = high[1]
    speeds[other[2:12], 0] = high[0]
    feats = {**feats, "velocity": speeds.astype(np.float32), "appearance": looks.astype(np.float32)}
    s_obj = obj.score_clip(objects, feats, n).objects.score
    s_grp = grp.score_clip(objects, feats, n).objects.score
    assert s_obj[rows[7]] > 1.0  # six of fifteen high in the fused score: kept
    assert s_grp[rows[7]] < 0.1 * s_obj[rows[7]]  # three of fifteen in each group: removed
    assert s_grp[other[7]] > 1.0 and s_obj[other[7]] > 1.0  # ten of fifteen in one group: kept by both
    excess = grp.group_excess(grp.object_parts(objects, feats)).clip(0.0, None)
    direct = sum(smooth_along_tracks(objects, row.astype(np.float32), 15, quantile=75.0) for row in excess)
    np.testing.assert_allclose(s_grp, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sum_excess"):
        AttributeScorer(attrs, fusion="sum", fusion_track_level="group")
    with pytest.raises(ValueError, match="fusion_track_level"):
        AttributeScorer(attrs, fusion_track_level="track")


def test_single_clip_loo_falls_back_loudly(caplog):
    rng = np.random.default_rng(4)
    with caplog.at_level(logging.WARNING):
        AttributeScorer({"appearance": {"model": "knn", "calibration": "loo"}}).fit_clips([make_clip(rng)])
    assert "falling back to in-sample" in caplog.text


def test_scorer_config_instantiates_with_extra_attribute():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="pipeline", overrides=[
            "scorer=attribute", "+scorer.attributes.appearance={model:knn,k:1,calibration:loo}"])
    scorer = instantiate(cfg.scorer)
    assert isinstance(scorer, AttributeScorer)
    assert scorer.specs["velocity"]["columns"] == [2] and scorer.specs["appearance"]["model"] == "knn"
    assert isinstance(scorer.hparams["attributes"]["appearance"], dict)  # plain containers: checkpoint-safe


@pytest.mark.parametrize("frame_reduce", ["max", "sum_of_max"])
def test_clip_without_objects_scores_at_the_training_minimum(fitted, frame_reduce):
    """An empty scene (zero detections, features of shape (0, D)) is normal input, not a crash."""
    scorer, _ = fitted
    scorer.frame_reduce = frame_reduce
    try:
        feats = {"velocity": np.zeros((0, 2), np.float32), "appearance": np.zeros((0, 4), np.float32)}
        out = scorer.score_clip(ObjectTable.empty(), feats, 12)
    finally:
        scorer.frame_reduce = "max"
    assert len(out.objects) == 0 and len(out.objects.score) == 0
    assert set(out.parts) == {"velocity", "appearance"} and all(len(v) == 0 for v in out.parts.values())
    # frames without objects get 0, the calibrated training minimum: no training object scores below it
    np.testing.assert_array_equal(out.frame_scores, np.zeros(12, np.float32))
    assert scorer.train_object_scores().min() >= -1e-6


# ----- safe checkpoint loading ------------------------------------------------------------------------------------
class _RunsCode:
    """What a malicious checkpoint holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_bad_checkpoints_are_refused_naming_the_file(fitted, tmp_path, monkeypatch):
    import torch

    from tao_lab.checkpoints import CheckpointError
    from tao_lab.scorer import TemporalMaeScorer

    scorer, _ = fitted
    good = tmp_path / "good.ckpt"
    scorer.save_checkpoint(good)
    # even with torch's documented override to unrestricted loading, a pickle that runs code is refused
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"]["payload"] = _RunsCode(marker)
    torch.save(ckpt, evil)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt holds Python objects.*refused"):
        AttributeScorer.load_from_checkpoint(evil)
    assert not marker.exists()

    rand = tmp_path / "random.ckpt"
    rand.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    cases = {rand: "not a file written by torch.save", plain: r"plain dict with keys \['weights'\]",
             empty: "is empty", truncated: "is a truncated torch file"}
    for path, problem in cases.items():
        with pytest.raises(CheckpointError, match=rf"{path.name}.*{problem}.*expected a checkpoint of AttributeScorer"):
            AttributeScorer.load_from_checkpoint(path)
    # another model's file: a scorer of another class (tagged), and an untagged file with foreign hyper-parameters
    with pytest.raises(CheckpointError, match=r"good\.ckpt is a checkpoint of tao_lab\.scorer\.attribute\."
                                              r"AttributeScorer, not of tao_lab\.scorer\.temporal_mae"):
        TemporalMaeScorer.load_from_checkpoint(good)
    foreign = tmp_path / "foreign.ckpt"
    del ckpt["tao_lab_scorer"], ckpt["hyper_parameters"]["payload"]
    ckpt["hyper_parameters"] = {"encoder_layers": 12}
    torch.save(ckpt, foreign)
    with pytest.raises(CheckpointError, match=r"cannot restore AttributeScorer from .*foreign\.ckpt"):
        AttributeScorer.load_from_checkpoint(foreign)
    with pytest.raises(ValueError, match="weights_only=True"):
        AttributeScorer.load_from_checkpoint(good, weights_only=False)
    assert AttributeScorer.load_from_checkpoint(good).is_fitted  # and the real file still loads


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_knn_score_matches_brute_force_distances(k, metric):
    """The chunked matmul k-NN (nearest first, clamped after) against scipy's pairwise distances, with and without
    leaving the query's own group out; chunks smaller than the query set so the chunk seams are crossed."""
    from scipy.spatial.distance import cdist

    from tao_lab.scorer.attribute import _knn_score

    rng = np.random.default_rng(k)
    bank = rng.normal(size=(300, 16)).astype(np.float32)
    x = np.concatenate([rng.normal(size=(70, 16)), bank[:5]]).astype(np.float32)  # 5 queries sit on bank rows
    x_group, bank_group = rng.integers(0, 4, len(x)), rng.integers(0, 4, len(bank))
    d = cdist(x.astype(np.float64), bank.astype(np.float64), metric)
    for exclude in (None, (x_group, bank_group)):
        ref = np.where(x_group[:, None] == bank_group[None, :], np.inf, d) if exclude else d
        expected = np.sort(ref, axis=1)[:, :k].mean(1)
        got = _knn_score(x, bank, k, metric, exclude, chunk=32)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-3 if metric == "euclidean" else 1e-3)
        assert np.all(got >= 0)
    with pytest.raises(ValueError, match="empty k-NN memory bank"):
        _knn_score(x, bank[:0], k, metric)
