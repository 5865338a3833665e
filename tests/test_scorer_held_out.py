"""Scoring the clips a scorer was fitted on (training.mode=unsupervised): each clip's own objects are held out of
the k-NN memory banks, as in the leave-one-video-out calibration, so no object matches itself at distance 0."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, compose, make_clip
from tao_lab.scorer import AttributeScorer

KNN = {"appearance": {"model": "knn", "k": 1, "calibration": "loo", "track_window": 1}}


@pytest.fixture(scope="module")
def contaminated():
    """Four unlabeled clips; the last holds an odd object (unusual appearance) on frames 10-19."""
    rng = np.random.default_rng(1)
    items = [make_clip(rng) for _ in range(3)] + [make_clip(rng, fast=set(range(10, 20)))]
    return AttributeScorer(KNN, frame_sigma=0.0, fusion="sum").fit_clips(items), items


def test_held_out_scores_equal_the_fits_leave_one_clip_out_scores(contaminated):
    # independent paths: the fit's one distance pass with group exclusion vs score_clip from the stored buffers
    scorer, items = contaminated
    train = scorer.train_object_scores()
    start = 0
    for v, (objects, feats, n) in enumerate(items):
        out = scorer.score_clip(objects, feats, n, held_out=v)
        np.testing.assert_allclose(out.objects.score, train[start:start + len(objects)], rtol=1e-5, atol=1e-6)
        start += len(objects)


def test_a_contaminating_object_is_found_only_when_its_clip_is_held_out(contaminated):
    scorer, items = contaminated
    objects, feats, n = items[3]
    odd = objects.track_id == 99
    plain = scorer.score_clip(objects, feats, n).parts["appearance"]
    held = scorer.score_clip(objects, feats, n, held_out=3).parts["appearance"]
    assert np.ptp(plain) < 1e-6 and plain.max() <= 0.0  # every object is its own nearest neighbour (distance 0)
    assert held[odd].min() > held[~odd].max()  # held out, the odd object stands out


def test_bank_clips_round_trip_and_an_old_fit_asks_for_a_refit(contaminated, tmp_path):
    import torch

    scorer, items = contaminated
    objects, feats, n = items[0]
    path = tmp_path / "s.ckpt"
    scorer.save_checkpoint(path)
    restored = AttributeScorer.load_from_checkpoint(path)
    np.testing.assert_array_equal(restored.appearance__bank_clip.numpy(), scorer.appearance__bank_clip.numpy())
    np.testing.assert_array_equal(restored.score_clip(objects, feats, n, held_out=0).objects.score,
                                  scorer.score_clip(objects, feats, n, held_out=0).objects.score)
    # a fit written before bank_clip existed: loads and scores as before; held-out scoring names the fix
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["appearance__bank_clip"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = AttributeScorer.load_from_checkpoint(tmp_path / "old.ckpt")
    np.testing.assert_array_equal(old.score_clip(objects, feats, n).objects.score,
                                  scorer.score_clip(objects, feats, n).objects.score)
    with pytest.raises(ValueError, match="refit"):
        old.score_clip(objects, feats, n, held_out=0)


def test_unsupervised_pipeline_scores_each_fit_clip_held_out(tmp_path):
    from tao_lab.pipeline import Pipeline, load_dataset, training_clips

    cfg = compose("eval", [*TINY_SYNTHETIC, "training.mode=unsupervised", "progress=false"], tmp_path)
    pipe = Pipeline(cfg)
    ds = load_dataset(cfg, ["test"])
    clips = training_clips(cfg, ds)
    pipe.fit_scorer(clips)
    for v, clip in enumerate(clips):
        got = pipe.scores(clip)
        want = pipe.scorer.score_clip(pipe.tracks(clip), pipe.features(clip), clip.num_frames, held_out=v)
        np.testing.assert_array_equal(got.objects.score, want.objects.score)
        assert got.parts["appearance"].max() > 0  # not every object matched itself
    assert pipe.caches["score"].spec.get("fit_clips_held_out") is True


def test_a_single_fit_clip_held_out_says_its_knn_attribute_is_blind(caplog):
    import logging

    rng = np.random.default_rng(2)
    item = make_clip(rng)
    scorer = AttributeScorer(KNN, frame_sigma=0.0, fusion="sum").fit_clips([item])
    with caplog.at_level(logging.WARNING):
        out = scorer.score_clip(*item, held_out=0)
    assert "every memory-bank row comes from the clip being scored" in caplog.text
    assert np.isfinite(out.objects.score).all() and np.all(out.parts["appearance"] <= 0.0)
