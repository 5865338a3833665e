"""Frame-level metrics against scikit-learn (micro AUC, AP) and per-video scikit-learn (macro AUC)."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tao_lab.metrics import frame_metrics


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for v in range(6):
        n = int(rng.integers(5, 60))
        y = rng.random(n) < (0.0 if v == 0 else 1.0 if v == 1 else 0.4)   # two single-class videos
        s = rng.random(n) + 0.5 * y
        if seed % 2:
            s = np.round(s * 5) / 5                                        # many tied scores
        scores.append(s.astype(np.float32) if v % 2 else s)
        labels.append(y.astype(int) if v == 3 else y)
    r = frame_metrics(scores, labels)
    s_all = np.concatenate(scores).astype(np.float64)
    y_all = np.concatenate(labels).astype(bool)
    assert abs(r["auc_micro"] - roc_auc_score(y_all, s_all)) < 1e-9
    assert abs(r["ap"] - average_precision_score(y_all, s_all)) < 1e-9
    per = [roc_auc_score(np.asarray(y, bool), np.asarray(s, np.float64)) for s, y in zip(scores, labels)
           if 0 < np.sum(y) < len(y)]
    assert r["auc_macro"] == pytest.approx(np.mean(per), abs=1e-12)
    assert r["macro_videos_skipped"] == 2 and r["macro_videos"] == 4


def test_hand_computed_and_edge_cases():
    r = frame_metrics([np.array([0.1, 0.4, 0.35, 0.8])], [np.array([0, 0, 1, 1])])
    assert r["auc_micro"] == pytest.approx(0.75)
    assert r["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert r["auc_macro"] == pytest.approx(0.75)
    # constant scores: one operating point
    r = frame_metrics([np.ones(4)], [np.array([0, 1, 0, 1])])
    assert r["auc_micro"] == 0.5 and r["ap"] == 0.5
    # single-class data: undefined
    r = frame_metrics([np.ones(3)], [np.zeros(3)])
    assert np.isnan(r["auc_micro"]) and np.isnan(r["ap"]) and np.isnan(r["auc_macro"])
    assert r["macro_videos_skipped"] == 1
    r = frame_metrics([], [])
    assert np.isnan(r["auc_micro"]) and r["macro_videos"] == 0


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        frame_metrics([np.array([0.1, np.nan])], [np.array([0, 1])])
    with pytest.raises(ValueError, match="labels"):
        frame_metrics([np.array([0.1, 0.2])], [np.array([0, 1, 1])])
    with pytest.raises(ValueError, match="0/1"):
        frame_metrics([np.array([0.1, 0.2])], [np.array([0, 2])])
    with pytest.raises(ValueError, match="label arrays"):
        frame_metrics([np.array([0.1])], [])
