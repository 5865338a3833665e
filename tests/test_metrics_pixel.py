"""Pixel metrics: scikit-learn for AUROC/AP, brute-force threshold sweeps written here for AUPRO and F1, per-frame
scikit-learn for the TAO protocol, and hand-computed edge cases."""
import pickle

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import (auc, average_precision_score, f1_score, precision_recall_curve, roc_auc_score)

import tao_lab.metrics.pixel.exact_store as exact_store
from tao_lab.metrics import PixelMetrics, TaoPixelMetrics


# ---------------------------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------------------------
def brute_pro_curve(scores, masks):
    """(fpr, pro) at every distinct threshold, by explicit per-region counting (MVTec AD definition), from
    threshold +inf (0, 0) to -inf (1, 1). Regions: 8-connected components per frame (scipy, not OpenCV)."""
    region_scores = []
    for s, m in zip(scores, masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        region_scores += [s[lab == k].astype(np.float64) for k in range(1, n + 1)]
    s_all, m_all = pooled(scores, masks)
    neg = s_all[~m_all]
    fpr, pro = [0.0], [0.0]
    for t in np.unique(s_all)[::-1]:
        fpr.append(np.mean(neg >= t))
        pro.append(np.mean([np.mean(r >= t) for r in region_scores]))
    fpr.append(1.0)
    pro.append(1.0)
    return np.array(fpr), np.array(pro)


def integrate_to(fpr, pro, limit):
    area = 0.0
    for i in range(len(fpr) - 1):
        x0, x1, y0, y1 = fpr[i], fpr[i + 1], pro[i], pro[i + 1]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def brute_f1(s, m, t=None):
    thresholds = np.unique(s) if t is None else [t]
    best = 0.0
    for th in thresholds:
        pred = s >= th
        tp, fp = np.sum(pred & m), np.sum(pred & ~m)
        best = max(best, 2 * tp / (tp + fp + m.sum()))
    return best


def random_frames(rng, n=6, dtype=np.float32, kind="continuous"):
    scores, masks = [], []
    for _ in range(n):
        h, w = rng.integers(6, 25, 2)
        m = np.zeros((h, w), bool)
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
            m[y:y + rng.integers(1, 6), x:x + rng.integers(1, 7)] = True
        s = rng.random((h, w)) + 0.4 * m * rng.random((h, w))
        if kind == "ties":
            s = np.round(s * 8) / 8
        scores.append(s.astype(dtype))
        masks.append(m)
    return scores, masks


def pooled(scores, masks):
    return (np.concatenate([s.ravel() for s in scores]).astype(np.float64),
            np.concatenate([m.ravel() for m in masks]))


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("seed", range(3))
def test_standard_matches_references(dtype, kind, seed):
    rng = np.random.default_rng(seed)
    scores, masks = random_frames(rng, dtype=dtype, kind=kind)
    masks[0][1:3, 1:4] = True                       # at least one region
    pm = PixelMetrics()
    for s, m in zip(scores, masks):
        pm.update(s, m)
    r = pm.compute(fpr_limit=0.3, threshold=0.6)
    s_all, m_all = pooled(scores, masks)
    assert abs(r["auroc"] - roc_auc_score(m_all, s_all)) < 1e-9
    assert abs(r["ap"] - average_precision_score(m_all, s_all)) < 1e-9
    assert r["f1_max"] == pytest.approx(brute_f1(s_all, m_all), abs=1e-12)
    assert r["f1@thr"] == pytest.approx(brute_f1(s_all, m_all, 0.6), abs=1e-12)
    fpr, pro = brute_pro_curve(scores, masks)
    for limit in (0.3, 0.05, 1.0):
        got = pm.compute(fpr_limit=limit)[f"aupro@{limit:g}"]
        assert got == pytest.approx(integrate_to(fpr, pro, limit), abs=1e-12)
    assert r["num_regions"] == sum(ndimage.label(m, structure=np.ones((3, 3)))[1] for m in masks)


@pytest.mark.parametrize("small", [False, True])
def test_streaming_internals_slabs_chunks_compaction(monkeypatch, small):
    """Many frames through every internal path: tiny slabs/batches/flushes force multi-slab ranking, run merging
    (values shared across frames) and dense flushes; results stay exact."""
    if small:
        monkeypatch.setattr(exact_store, "_SLAB", 5)
        monkeypatch.setattr(exact_store, "_CHUNK", 37)
        monkeypatch.setattr(exact_store, "_COMPACT_MIN", 200)
        monkeypatch.setattr(exact_store, "_DENSE_FLUSH", 300)
        monkeypatch.setattr(exact_store, "_POS_COMPACT_MIN", 50)
    rng = np.random.default_rng(3)
    pm = PixelMetrics(num_threads=2)
    pm1 = PixelMetrics(num_threads=1)
    scores, masks = [], []
    for i in range(30):
        m = rng.random((12, 15)) < 0.2
        if i % 3 == 0:
            s = np.round(rng.random((12, 15)) * 20) / 20            # shared values across frames: merged runs
        elif i % 3 == 1:
            s = rng.random((12, 15)).astype(np.float16).astype(np.float32)   # dense path
        else:
            s = rng.random((12, 15)) * 3 - 1                        # float64 continuous, negative values too
        s = s + 0.3 * m
        pm.update(s, m)
        pm1.update(s, m)
        scores.append(s)
        masks.append(m)
    s_all, m_all = pooled(scores, masks)
    for acc in (pm, pm1):
        r = acc.compute(threshold=0.5)
        assert abs(r["auroc"] - roc_auc_score(m_all, s_all)) < 1e-9
        assert abs(r["ap"] - average_precision_score(m_all, s_all)) < 1e-9
        assert r["f1@thr"] == pytest.approx(brute_f1(s_all, m_all, 0.5), abs=1e-12)
        again = acc.compute(threshold=0.5)           # stored runs were regrouped in place: same answer
        assert all(again[k] == r[k] for k in ("auroc", "ap", "aupro@0.3", "f1_max", "f1@thr"))
    if small:
        assert len(pm1._neg.runs) < 10          # the repeated-value runs were merged


def test_dense_path_keeps_memory_fixed():
    pm = PixelMetrics(num_threads=1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.random((30, 40)).astype(np.float16)                  # the segmenters' output dtype
        pm.update(s.astype(np.float32), rng.random((30, 40)) < 0.1)  # also when cast to float32
        pm.update((s * 255).astype(np.uint8), np.zeros((30, 40), bool))
    pm.compute()
    assert pm._neg.runs == [] and pm._neg.dense is not None


def test_never_modifies_the_callers_arrays():
    rng = np.random.default_rng(8)
    frames = [rng.random((10, 12)).astype(np.float32) for _ in range(4)]
    copies = [f.copy() for f in frames]
    pm = PixelMetrics()
    for i, f in enumerate(frames):
        m = np.zeros((10, 12), bool)
        m[i, :3] = i % 2 == 0                      # frames without any anomalous pixel too
        pm.update(f, m)
    pm.compute(threshold=0.5)
    assert all(np.array_equal(f, c) for f, c in zip(frames, copies))


def test_merge_and_pickle():
    rng = np.random.default_rng(1)
    scores, masks = random_frames(rng, n=8)
    whole, a, b = PixelMetrics(), PixelMetrics(), PixelMetrics()
    for i, (s, m) in enumerate(zip(scores, masks)):
        whole.update(s, m)
        (a if i % 2 else b).update(s, m)
    b = pickle.loads(pickle.dumps(b))
    merged = a.merge(b).compute(threshold=0.7)
    ref = whole.compute(threshold=0.7)
    for k in ("auroc", "ap", "aupro@0.3", "f1_max", "f1@thr"):
        assert merged[k] == pytest.approx(ref[k], abs=1e-12, nan_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# hand-computed edge cases
# ---------------------------------------------------------------------------------------------------------------
def _one(scores, mask, **kw):
    pm = PixelMetrics()
    pm.update(np.asarray(scores, np.float32), np.asarray(mask, bool))
    return pm.compute(**kw)


def test_no_anomalous_pixel():
    r = _one([[0.1, 0.5], [0.2, 0.9]], [[0, 0], [0, 0]], threshold=0.5)
    for k in ("auroc", "ap", "aupro@0.3", "f1_max", "f1@thr"):
        assert np.isnan(r[k]), k
    assert r["num_regions"] == 0


def test_all_anomalous():
    r = _one([[0.1, 0.5], [0.2, 0.9]], [[1, 1], [1, 1]], threshold=0.5)
    assert np.isnan(r["auroc"]) and np.isnan(r["aupro@0.3"])
    assert r["ap"] == 1.0 and r["f1_max"] == 1.0
    assert r["f1@thr"] == pytest.approx(2 * 2 / (2 + 0 + 4))


def test_constant_scores():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:3] = True                         # P = 4, N = 16, one region
    r = _one(np.full((4, 5), 0.3), mask, threshold=0.3)
    assert r["auroc"] == 0.5
    assert r["ap"] == pytest.approx(4 / 20)
    assert r["f1_max"] == pytest.approx(2 * 4 / (4 + 16 + 4))
    # the PRO curve is the diagonal (0,0)-(1,1): area to 0.3 = 0.045, normalised 0.15
    assert r["aupro@0.3"] == pytest.approx(0.15)
    assert r["f1@thr"] == pytest.approx(r["f1_max"])
    assert _one(np.full((4, 5), 0.3), mask, threshold=0.31)["f1@thr"] == 0.0


def test_region_entirely_above_the_fpr_limit():
    # 10 normal pixels scored 0.0..0.9; region A (2 px) scores above every normal pixel, region B (2 px, separate)
    # is only reached once half of the normal pixels are false positives: inside FPR <= 0.3 the PRO is exactly 0.5
    m = np.zeros((2, 7), bool)
    m[0, 0:2] = True
    m[0, 4:6] = True
    s = np.zeros((2, 7), np.float32)
    s[0, 0:2] = 0.95
    s[0, 4:6] = 0.45
    s[~m] = np.arange(10) / 10
    r = _one(s, m)
    assert r["num_regions"] == 2
    assert r["aupro@0.3"] == pytest.approx(0.5)
    # up to FPR 1: 0.5 until FPR 0.5 (B reached at 0.45 with FPR 0.5), then 1.0: area 0.25 + 0.5
    assert _one(s, m, fpr_limit=1.0)["aupro@1"] == pytest.approx(0.75)


def test_empty_prediction_standard():
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    r = _one(np.zeros((3, 3)), mask)
    assert r["auroc"] == 0.5 and r["ap"] == pytest.approx(1 / 9)


def test_rejects_bad_frames():
    pm = PixelMetrics()
    with pytest.raises(ValueError, match="NaN"):
        pm.update(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match="shape"):
        pm.update(np.zeros((2, 3)), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="2-D"):
        pm.update(np.zeros(3), np.zeros(3, bool))


# ---------------------------------------------------------------------------------------------------------------
# binned mode: certified error bounds
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_bins", [1 << 10, 1 << 14, 1 << 20])
def test_binned_bounds_contain_exact(num_bins):
    rng = np.random.default_rng(7)
    scores, masks = random_frames(rng, n=12, dtype=np.float64)
    masks[0][1:3, 1:4] = True
    exact, binned = PixelMetrics(), PixelMetrics(binned=True, num_bins=num_bins)
    for s, m in zip(scores, masks):
        exact.update(s, m)
        binned.update(s, m)
    e = exact.compute(threshold=0.55)
    b = binned.compute(threshold=0.55)
    for k in ("auroc", "ap", "aupro@0.3", "f1_max", "f1@thr"):
        bound = b[f"{k}_error_bound"]
        assert abs(b[k] - e[k]) <= bound + 1e-12, (k, b[k], e[k], bound)
    if num_bins == 1 << 20:
        assert b["auroc_error_bound"] < 1e-3 and abs(b["auroc"] - e["auroc"]) < 1e-3


def test_binned_is_exact_on_coarse_values():
    # values on a grid coarser than the bins: no bucket mixes distinct values -> bounds reflect only true ties
    rng = np.random.default_rng(2)
    scores, masks = random_frames(rng, n=6, kind="ties")
    masks[0][0, 0] = True
    exact, binned = PixelMetrics(), PixelMetrics(binned=True)
    for s, m in zip(scores, masks):
        exact.update(s, m)
        binned.update(s, m)
    e, b = exact.compute(), binned.compute()
    for k in ("auroc", "ap", "aupro@0.3", "f1_max"):
        assert b[k] == pytest.approx(e[k], abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# TAO protocol
# ---------------------------------------------------------------------------------------------------------------
def test_tao_protocol_matches_per_frame_sklearn():
    rng = np.random.default_rng(4)
    scores, masks = random_frames(rng, n=10, dtype=np.float32)
    scores[2] = np.zeros_like(scores[2])               # empty prediction
    masks[2][0, 0] = True
    scores[3] = scores[3] - 2.0                        # negative logits only: empty after max(0, .)
    masks[3][0, 0] = True
    masks[4][:] = False                                # empty GT: skipped
    tao = TaoPixelMetrics()
    for s, m in zip(scores, masks):
        tao.update(s, m)
    r = tao.compute()
    rows = []
    for s, m in zip(scores, masks):
        if not m.any():
            continue
        p = np.maximum(s.astype(np.float64), 0)
        if p.max() <= 0:
            rows.append((0, 0, 0, 0))
            continue
        p = (p / p.max()).ravel()
        y = m.ravel()
        prec, rec, _ = precision_recall_curve(y, p)
        rows.append((roc_auc_score(y, p) if (~y).any() else np.nan, average_precision_score(y, p),
                     auc(rec, prec), f1_score(y, p >= 0.5)))
    ref = np.nanmean(np.array(rows, float), axis=0)
    assert r["auroc_tao"] == pytest.approx(ref[0], abs=1e-12)
    assert r["ap_tao"] == pytest.approx(ref[1], abs=1e-12)
    assert r["aupro_tao"] == pytest.approx(ref[2], abs=1e-12)
    assert r["f1_tao"] == pytest.approx(ref[3], abs=1e-12)
    assert r["frames_scored"] == len(rows)
    assert r["frames_empty_prediction"] == 2
    assert r["frames_skipped_empty_gt"] == sum(not m.any() for m in masks)


def test_tao_hand_computed():
    s = np.array([[0.0, 2.0], [1.0, 0.5]])
    m = np.array([[False, True], [False, True]])
    tao = TaoPixelMetrics()
    tao.update(s, m)
    tao.update(s, np.zeros_like(m))                   # skipped
    r = tao.compute()
    # normalised: [[0, 1], [.5, .25]]; positives 1 and .25, negatives 0 and .5
    assert r["auroc_tao"] == pytest.approx(0.75)      # pairs: (1>0)(1>.5)(.25>0)(.25<.5) -> 3/4
    assert r["ap_tao"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # PR points (0,1) (.5,1) (.5,.5) (1,2/3): area .5 + 0 + .5*(.5+2/3)/2
    assert r["aupro_tao"] == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert r["f1_tao"] == pytest.approx(2 * 1 / (1 + 1 + 2))   # >= .5: {1 (tp), .5 (fp)}
    assert r["frames_scored"] == 1 and r["frames_skipped_empty_gt"] == 1
    # a frame without normal pixels has no AUROC: left out of that mean only
    tao.update(np.array([[1.0, 3.0]]), np.array([[True, True]]))
    r = tao.compute()
    assert r["frames_without_normal_pixels"] == 1 and r["frames_scored"] == 2
    assert r["auroc_tao"] == pytest.approx(0.75) and r["ap_tao"] == pytest.approx((0.5 + 1 / 3 + 1) / 2)
