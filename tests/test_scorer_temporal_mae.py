"""The temporal MAE scorer: masking, windows, training (loss, validation, early stopping/checkpointing, self-paced
refinement), scoring (fast tracks, short and untracked objects) and checkpoints. Tiny models, a few epochs."""
import functools

import numpy as np
import pytest
import torch

from tao_lab.scorer.mae_windows import interleaved_masks, make_windows, track_sequences
from tao_lab.types import ObjectTable

# small enough for seconds-long fits on one core
TINY = dict(window=8, stride=2, d_model=16, depth=1, heads=2, ff_mult=2, dropout=0.0, pool_queries=2, proj_dim=8,
            batch_size=32, max_epochs=6, patience=3, lr=3e-3, track_window=3, frame_sigma=1.0,
            inputs={"velocity": {"tokens": 1}, "geometry": {"tokens": 1}, "appearance": {"tokens": 2}})


def _clip_items(dataset_kwargs: dict, split: str):
    """[(objects, features, num_frames)] and clips, from the real weight-free detector, tracker and features."""
    from tao_lab.dataset import make_synthetic
    from tao_lab.detector.subtraction import BackgroundSubtractionDetector
    from tao_lab.features.appearance import CropAppearanceFeature
    from tao_lab.features.base import extract_features
    from tao_lab.features.geometry import BoxGeometryFeature
    from tao_lab.features.velocity import VelocityFeature
    from tao_lab.tracker.bytetrack import ByteTracker

    ds = make_synthetic(**dataset_kwargs)
    det, trk = BackgroundSubtractionDetector(), ByteTracker()
    exts = [VelocityFeature(bins=4), BoxGeometryFeature(), CropAppearanceFeature(size=8)]
    items = []
    for clip in ds.split(split):
        tracks = trk.track(det.detect(clip), clip)
        items.append((tracks, extract_features(clip, tracks, exts, progress=False), clip.num_frames))
    return items, ds.split(split)


SYNTH = dict(seed=3, num_train_clips=4, num_test_clips=2, num_frames=80, anomaly_kinds=["rider"],
             anomalies_per_clip=[2, 2], anomaly_start=[0.05, 0.3])


@pytest.fixture(scope="module")
def synth():
    torch.set_num_threads(1)
    train, _ = _clip_items(SYNTH, "train")
    test, test_clips = _clip_items(SYNTH, "test")
    return train, test, test_clips


@pytest.fixture(scope="module")
def fitted(synth):
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    train, _, _ = synth
    return TemporalMaeScorer(**TINY).fit_clips(train)


# ------------------------------------------------------------------------------------------------ masks, windows
def test_random_mask_covers_the_configured_ratio():
    from tao_lab.scorer.mae_modules import random_mask

    valid = torch.ones(4000, 16, dtype=torch.bool)
    m = random_mask(valid, 0.75, torch.Generator().manual_seed(0))
    assert (m.sum(1) == 12).all()                      # exactly round(0.75 * 16) per full window
    per_position = m.float().mean(0)
    assert torch.allclose(per_position, torch.full((16,), 0.75), atol=0.03)  # uniform over positions
    # short windows: round(ratio * L) masked, at least one visible; a lone row is masked (predicted from nothing)
    lengths = torch.tensor([5, 2, 1, 16])
    valid = torch.arange(16)[None, :] < lengths[:, None]
    m = random_mask(valid, 0.75)
    assert m.sum(1).tolist() == [4, 1, 1, 12]
    assert not (m & ~valid).any()
    m = random_mask(torch.ones(1000, 20, dtype=torch.bool), 0.5)
    assert (m.sum(1) == 10).all()


def test_scoring_patterns_match_the_ratio_and_mask_every_position():
    pats = interleaved_masks(16, 0.75)
    assert pats.shape == (4, 16)
    assert np.allclose(pats.mean(1), 0.75)
    assert (pats.sum(0) == 3).all()


def test_windows_cover_every_row_short_and_untracked_included():
    frame = np.r_[np.arange(21), np.arange(3), [5, 9]]
    track = np.r_[np.full(21, 7), np.full(3, 2), [-1, -1]]
    rng = np.random.default_rng(0)
    perm = rng.permutation(26)                              # row order must not matter
    objects = ObjectTable.build(frame[perm], np.tile([0, 0, 10, 10], (26, 1)), track_id=track[perm])
    frame = frame[perm]
    seqs = track_sequences(objects)
    assert sorted(len(s) for s in seqs) == [1, 1, 3, 21]
    win, seq = make_windows(seqs, 8, 4)
    covered = np.unique(win[win >= 0])
    assert covered.tolist() == list(range(26))
    assert len(win) == 5 + 1 + 2                            # long track, short track, two untracked rows
    long_windows = win[(win >= 0).sum(1) == 8]
    assert len(long_windows) == 5                           # starts 0, 4, 8, 12 and the end-aligned 13
    for w in long_windows:                                 # consecutive frames of one track, in order
        assert np.all(np.diff(frame[w]) == 1)


# ------------------------------------------------------------------------------------------------ training
def test_loss_decreases_on_a_tiny_synthetic_set(synth, tmp_path):
    import lightning
    from lightning.pytorch.callbacks import Callback

    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    class Record(Callback):
        def __init__(self):
            self.train, self.val = [], []

        def on_train_epoch_end(self, trainer, module):
            self.train.append(float(trainer.callback_metrics["train/loss"]))
            self.val.append(float(trainer.callback_metrics["val/loss"]))

    rec = Record()
    factory = functools.partial(lightning.Trainer, accelerator="cpu", devices=1, max_epochs=6, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[rec],
                                default_root_dir=str(tmp_path))
    scorer = TemporalMaeScorer(**{**TINY, "patience": 10})
    scorer.fit_clips(synth[0], trainer=factory)
    assert len(rec.train) == 6
    assert rec.train[-1] < 0.8 * rec.train[0], rec.train
    assert min(rec.val) < rec.val[0], rec.val


def test_validation_uses_held_out_clips_and_best_weights_are_restored(synth, tmp_path):
    import lightning

    from tao_lab.scorer.mae_training import split_clips
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    train = synth[0]
    scorer = TemporalMaeScorer(**TINY)
    fit_part, val_part = split_clips(train, scorer.val_fraction, scorer.seed)
    assert len(val_part) == 1 and len(fit_part) == 3
    assert not any(v[0] is f[0] for v in val_part for f in fit_part)
    # one clip only: the last val_fraction of its frames is held out
    [(a, _, cut)], [(b, _, _)] = split_clips(train[:1], scorer.val_fraction, scorer.seed)
    assert a.frame.max() < cut <= b.frame.min()

    trainers = []

    def factory():
        trainers.append(lightning.Trainer(accelerator="cpu", devices=1, max_epochs=6, logger=False,
                                          enable_progress_bar=False, enable_model_summary=False,
                                          default_root_dir=str(tmp_path)))
        return trainers[-1]

    scorer.fit_clips(train, trainer=factory)
    tr = trainers[0]
    names = {type(c).__name__ for c in tr.callbacks}
    assert {"EarlyStopping", "ModelCheckpoint"} <= names
    best = tr.checkpoint_callback.best_model_path
    assert best and best.endswith(".ckpt")
    # the restored weights are the best epoch's: validating again gives the best val/loss
    val = scorer._windows(val_part, scorer.stride)
    check = lightning.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                              enable_model_summary=False, default_root_dir=str(tmp_path))
    out = check.validate(scorer, scorer.loader(val, np.ones(len(val["windows"]), bool), False), verbose=False)
    assert out[0]["val/loss"] == pytest.approx(scorer.fit_metrics["best_val_loss"], rel=1e-4)


# ------------------------------------------------------------------------------------------------ scoring
def _gt_overlap(objects: ObjectTable, gt: ObjectTable, thr: float = 0.3) -> np.ndarray:
    out = np.zeros(len(objects), bool)
    for i in range(len(objects)):
        g = gt.xyxy[gt.frame == objects.frame[i]]
        if not len(g):
            continue
        b = objects.xyxy[i]
        iw = np.clip(np.minimum(b[2], g[:, 2]) - np.maximum(b[0], g[:, 0]), 0, None)
        ih = np.clip(np.minimum(b[3], g[:, 3]) - np.maximum(b[1], g[:, 1]), 0, None)
        inter = iw * ih
        union = (b[2] - b[0]) * (b[3] - b[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
        out[i] = (inter / union).max() >= thr
    return out


def test_fast_tracks_score_higher_than_normal_tracks(synth, fitted):
    from sklearn.metrics import roc_auc_score

    _, test, clips = synth
    scores, labels, frame_s, frame_l = [], [], [], []
    for (objects, feats, n), clip in zip(test, clips):
        out = fitted.score_clip(objects, feats, n)
        scores.append(out.objects.score)
        labels.append(_gt_overlap(objects, clip.gt.tracks))
        frame_s.append(out.frame_scores)
        frame_l.append(clip.gt.frame_labels)
        assert set(out.parts) == {"reconstruction", "consistency"}
        assert out.frame_scores.shape == (n,)
    s, lab = np.concatenate(scores), np.concatenate(labels)
    assert lab.sum() >= 10 and (~lab).sum() >= 50
    assert roc_auc_score(lab, s) > 0.85
    assert np.median(s[lab]) > np.percentile(s[~lab], 90)
    assert roc_auc_score(np.concatenate(frame_l), np.concatenate(frame_s)) > 0.8
    # calibrated on held-out training clips: training objects sit around [0, 1]
    train = fitted.train_object_scores()
    assert len(train) > 0 and np.median(train) < 0.5 and np.percentile(train, 99.9) == pytest.approx(1.0, abs=0.2)


def test_short_and_untracked_objects_get_scores(synth, fitted):
    objects, feats, n = synth[1][0]
    rows = np.flatnonzero(objects.track_id >= 0)[:40]
    sub = objects.take(rows)
    track = sub.track_id.copy()
    track[:5] = -1                       # untracked
    track[5:8] = 10 ** 6                 # a 3-row track (shorter than the window)
    sub = ObjectTable(sub.frame, sub.xyxy, sub.score, track, sub.cls)
    sub_feats = {k: v[rows] for k, v in feats.items()}
    out = fitted.score_clip(sub, sub_feats, n)
    assert np.isfinite(out.objects.score).all()
    assert np.isfinite(out.frame_scores).all()
    empty = fitted.score_clip(ObjectTable.empty(), {k: v[:0] for k, v in feats.items()}, n)
    assert len(empty.objects) == 0 and (empty.frame_scores == 0).all()


def test_missing_or_changed_features_fail_clearly(synth, fitted):
    objects, feats, n = synth[1][0]
    with pytest.raises(KeyError, match="appearance"):
        fitted.score_clip(objects, {k: v for k, v in feats.items() if k != "appearance"}, n)
    with pytest.raises(ValueError, match="velocity"):
        fitted.score_clip(objects, {**feats, "velocity": feats["velocity"][:, :2]}, n)


def test_checkpoint_round_trip_gives_identical_scores(synth, fitted, tmp_path):
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    objects, feats, n = synth[1][0]
    before = fitted.score_clip(objects, feats, n)
    path = tmp_path / "scorer.ckpt"
    fitted.save_checkpoint(path)
    loaded = TemporalMaeScorer.load_from_checkpoint(str(path))
    assert loaded.is_fitted and loaded.input_dims == fitted.input_dims
    after = loaded.score_clip(objects, feats, n)
    np.testing.assert_array_equal(before.objects.score, after.objects.score)
    np.testing.assert_array_equal(before.frame_scores, after.frame_scores)
    np.testing.assert_array_equal(fitted.train_object_scores(), loaded.train_object_scores())
    assert loaded.fit_metrics == fitted.fit_metrics
    # the learned pooling is part of the checkpoint
    assert any(k.startswith("net.pool.") for k in torch.load(path, weights_only=True)["state_dict"])


# ------------------------------------------------------------------------------------------------ self-paced
def test_keep_lowest_drops_the_largest_losses():
    from tao_lab.scorer.spr import check_schedule, keep_lowest

    losses = np.array([0.1, 5.0, 0.2, np.nan, 0.3, 4.0, 0.0, 0.5, 0.6, 0.7])
    keep = keep_lowest(losses, 0.3)
    assert keep.tolist() == [True, False, True, False, True, False, True, True, True, True]
    assert keep_lowest(losses, 0.0).all()
    with pytest.raises(ValueError):
        check_schedule([0.1, 1.0])


def test_unlabeled_fit_refines_in_rounds(synth, tmp_path):
    import lightning

    from tao_lab.scorer.mae_training import split_clips
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    _, test, _ = synth
    factory = functools.partial(lightning.Trainer, accelerator="cpu", devices=1, max_epochs=2, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    scorer = TemporalMaeScorer(**{**TINY, "self_paced": {"drop": [0.1, 0.25]}, "val_fraction": 0.5})
    scorer.fit_clips(test, trainer=factory, unlabeled=True)
    m = scorer.fit_metrics
    total = m["train_windows"]
    assert m["round0_train_windows"] == total
    assert m["round1_train_windows"] == total - int(0.1 * total)
    assert m["round2_train_windows"] == total - int(0.25 * total)
    # the calibration clips are unlabeled too: the rows with the largest errors do not set the scale
    n_val = sum(len(v[0]) for v in split_clips(test, scorer.val_fraction, scorer.seed)[1])
    assert len(scorer.train_object_scores()) == n_val - int(0.25 * n_val)
    # a single Trainer cannot fit several rounds: the error says what to pass instead
    one = factory()
    with pytest.raises(ValueError, match="factory"):
        TemporalMaeScorer(**{**TINY, "self_paced": {"drop": [0.1]}}).fit_clips(test, trainer=one, unlabeled=True)


# ------------------------------------------------------------------------------------------------ normalisation
def test_std_floor_keeps_rare_columns_from_exploding():
    from tao_lab.scorer.mae_inputs import fit_standardisation
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(1, 0.2, 5000), rng.normal(0, 0.2, 5000), rng.normal(0, 0.002, 5000)], 1)
    x[0] = np.nan                                           # non-finite values are ignored
    for floor, expect in ((0.0, 0.002), (0.5, 0.5 * np.sqrt((0.04 + 0.04 + 0.002 ** 2) / 3))):
        s = TemporalMaeScorer(inputs={"velocity": {"optional": False, "std_floor": floor}}, input_dims={"velocity": 3},
                              d_model=8, heads=2, depth=1)
        mean, std = fit_standardisation(x, s.specs, s.input_dims)
        assert std[2] == pytest.approx(expect, rel=0.05)
        assert std[0] == pytest.approx(0.2, rel=0.05)
        assert mean[0] == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="std_floor"):
        TemporalMaeScorer(inputs={"velocity": {"std_floor": 2.0}})


def test_context_reference_is_relative_to_a_full_window_and_monotone():
    from tao_lab.scorer.calibration import context_reference

    ctx = np.repeat([1, 2, 3, 4], 100)
    err = np.repeat([4.0, 1.5, 2.0, 1.0], 100)             # the 2-row bucket is noisy-low
    assert context_reference(ctx, err, 4).tolist() == [4.0, 2.0, 2.0, 1.0]
    ref = context_reference(np.repeat([1, 4], [5, 100]), np.repeat([9.0, 1.0], [5, 100]), 4)
    assert ref.tolist() == [1.0, 1.0, 1.0, 1.0]            # too few rows with short context: fall back


def test_forecast_head_trains_and_scores(synth, tmp_path):
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    train, test, _ = synth
    scorer = TemporalMaeScorer(**{**TINY, "max_epochs": 2, "loss_weights": {"forecast": 0.5},
                                  "score_weights": {"reconstruction": 0.6, "consistency": 0.2, "forecast": 0.2}})
    scorer.fit_clips(train)
    assert scorer.net.forecast_head is not None
    objects, feats, n = test[0]
    out = scorer.score_clip(objects, feats, n)
    assert set(out.parts) == {"reconstruction", "consistency", "forecast"}
    assert np.isfinite(out.objects.score).all()
    path = tmp_path / "f.ckpt"
    scorer.save_checkpoint(path)
    again = TemporalMaeScorer.load_from_checkpoint(str(path)).score_clip(objects, feats, n)
    np.testing.assert_array_equal(out.objects.score, again.objects.score)
    with pytest.raises(ValueError, match="forecast"):
        TemporalMaeScorer(score_weights={"forecast": 0.3})
