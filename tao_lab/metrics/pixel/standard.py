"""The standard pixel protocol (REFERENCE.md §3): every pixel of every test frame is pooled, scores stay
continuous, and AUROC, AP, AUPRO@limit (MVTec AD), max-F1 and F1 at an operating threshold are computed *exactly*
and streaming, from the stores of :mod:`tao_lab.metrics.pixel.exact_store` (no dataset-wide concatenation, no
dataset-wide sort). GT regions are the 8-connected components of each frame's GT mask (OpenCV, run on the mask's
bounding box).

Results equal scikit-learn's ``roc_auc_score`` / ``average_precision_score`` on the pooled arrays up to float64
rounding of the final sums (~1e-15), including tied scores (one operating point per distinct value). Scores are
compared exactly as float64; integer scores above 2**53 are not supported exactly.

Binned mode (``binned=True``, :mod:`tao_lab.metrics.pixel.binned_store`) for very large sets: memory is fixed and
every metric is reported with a *certified* error bound computed from the histogram itself
(``<key>_error_bound``): the exact metric of the unrounded scores lies within ``value +- bound``.
Derivation: bucket edges are realisable thresholds, so only the unknown order inside a bucket matters;
AUROC: at most half of the pos x neg pairs that share a bucket can flip, bound = sum_b p_b n_b / (2 P N);
AP: the precision of each positive in bucket b lies between (A+j)/(A+j+F+n_b) and (A+p_b)/(A+p_b+F)
(A, F = positives, negatives above the bucket), summed in closed form; max-F1: the best threshold inside a
bucket has at most TP = A + p_b and FP = F; AUPRO: inside a bucket the true PRO curve is monotone between the
bucket's two corners, so it differs from the chord by at most half the box (the whole box if the FPR limit cuts
it).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from tao_lab.metrics._core import NAN, RankCounts, aupro, auroc, average_precision, f1_from_counts, f1_max
from tao_lab.metrics.pixel.binned_store import BinnedHistogram
from tao_lab.metrics.pixel.checks import check_frame
from tao_lab.metrics.pixel.exact_store import ExactMultiset, WeightedRuns


def aupro_key(fpr_limit: float) -> str:
    """The metric key for AUPRO at an FPR limit: ``aupro@0.3``, ``aupro@0.05``, ..."""
    return f"aupro@{fpr_limit:g}"


def _regions(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray]:
    """Number of connected GT regions of a frame and, for each anomalous pixel (row-major), 1 / its region area.

    Labels only the bounding box of the mask (faster; the row-major order of the pixels is the same).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    sub = np.ascontiguousarray(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sub.view(np.uint8), connectivity=connectivity,
                                                           ltype=cv2.CV_32S)
    inv_area = 1.0 / np.maximum(stats[:, cv2.CC_STAT_AREA], 1).astype(np.float64)
    return n - 1, inv_area[labels[sub]]


class PixelMetrics:
    """Streaming pixel-level metrics, standard protocol (all test frames pooled, continuous scores, exact).

    Usage::

        pm = PixelMetrics()
        for score_map, gt_mask in frames:      # (H, W) real scores (higher = more anomalous), (H, W) bool
            pm.update(score_map, gt_mask)
        pm.compute(fpr_limit=0.3, threshold=0.5)
        # {'auroc': ..., 'ap': ..., 'aupro@0.3': ..., 'f1_max': ..., 'f1@thr': ..., ...}

    Args:
        binned: use fixed-size histograms (bounded memory for ShanghaiTech-sized continuous float32 maps) and
            report a certified ``<key>_error_bound`` next to every metric; default exact.
        num_bins: histogram size in binned mode, a power of two in [2**8, 2**26] (24 bytes per bin).
        connectivity: 8 (MVTec AD definition) or 4, for the GT regions of AUPRO.

    Frames may differ in size. Scores may be any real dtype: float16-valued / uint8 / bool maps (also when passed as
    float32) take an exact fixed-memory path, other float32 maps cost at most 4 bytes per normal pixel (less with
    repeated values), float64 maps 8 bytes (see :mod:`tao_lab.metrics.pixel.exact_store`). NaN or inf scores raise
    ``ValueError``.
    num_threads: threads for the per-frame sorts and the final ranking (default 1: on a busy machine, threads
        that hand the GIL to each other lose more than they gain; 2 helps on idle cores).
    """

    def __init__(self, binned: bool = False, num_bins: int = 1 << 20, connectivity: int = 8,
                 num_threads: Optional[int] = None):
        if connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
        self.num_threads = 1 if num_threads is None else max(1, int(num_threads))
        self.binned = bool(binned)
        self.num_bins = int(num_bins)
        self.connectivity = connectivity
        self.reset()

    def reset(self) -> None:
        self.num_frames = 0
        self.num_regions = 0
        if self.binned:
            self._hist = BinnedHistogram(self.num_bins)
        else:
            self._neg = ExactMultiset(self.num_threads)
            self._pos = WeightedRuns()
        self._n_pos = 0
        self._n_neg = 0

    def update(self, score_map: np.ndarray, gt_mask: np.ndarray) -> None:
        """Adds one frame: ``score_map`` (H, W) real, ``gt_mask`` (H, W) bool (nonzero integers accepted)."""
        score, mask = check_frame(score_map, gt_mask, f"PixelMetrics frame {self.num_frames}")
        self.num_frames += 1
        if mask.any():
            n_regions, weights = _regions(mask, self.connectivity)
            pos, neg, owned = score[mask], score[~mask], True
        else:
            n_regions, weights = 0, np.zeros(0)
            pos, neg, owned = score[:0].reshape(-1), score.reshape(-1), False
        self.num_regions += n_regions
        self._n_pos += pos.size
        self._n_neg += neg.size
        if self.binned:
            self._hist.add(neg, pos, weights)
        else:
            self._neg.add(neg, owned)
            self._pos.add(pos, weights)

    def update_clip(self, score_maps, gt_masks) -> None:
        """Adds every frame of a clip: iterables of (H, W) score maps and masks of the same length."""
        for s, m in zip(score_maps, gt_masks, strict=True):
            self.update(s, m)

    def merge(self, other: "PixelMetrics") -> "PixelMetrics":
        """Adds another accumulator's frames (e.g. from a parallel worker); returns self."""
        if other.binned != self.binned:
            raise ValueError("cannot merge exact and binned PixelMetrics")
        self.num_frames += other.num_frames
        self.num_regions += other.num_regions
        self._n_pos += other._n_pos
        self._n_neg += other._n_neg
        if self.binned:
            self._hist.merge(other._hist)
        else:
            self._neg.merge(other._neg)
            self._pos.merge(other._pos)
        return self

    # -------------------------------------------------------------------------------------------------------------
    def rank_counts(self) -> RankCounts:
        """The exact (or binned) RankCounts of everything seen so far, with AUPRO weights."""
        if self.binned:
            return self._binned_rank_counts()[0]
        u, pos, w = self._pos.merged()
        if len(u):
            below, equal = self._neg.rank_counts(u)
        else:
            below = equal = np.zeros(0, np.int64)
        self._neg.close()          # stop the sorting threads (restarted if more frames come)
        return RankCounts(u, pos, below, equal, self._n_pos, self._n_neg, w)

    def compute(self, fpr_limit: float = 0.3, threshold: Optional[float] = None) -> dict:
        """All standard-protocol metrics.

        Returns a dict with ``auroc``, ``ap``, ``aupro@<fpr_limit>`` (e.g. ``aupro@0.3``), ``f1_max``,
        ``f1_max_threshold`` (the score threshold reaching it, predicted positive when score >= threshold),
        ``f1@thr`` and ``f1@thr_threshold`` when ``threshold`` is given, and the counts ``num_frames``, ``num_regions``,
        ``num_anomalous_pixels``, ``num_normal_pixels``. Binned mode adds ``<key>_error_bound`` for each metric.
        Metrics that are undefined (no anomalous or no normal pixel) are NaN.
        """
        if not 0 < fpr_limit <= 1:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        if self.binned:
            rc, bounds_input = self._binned_rank_counts()
        else:
            rc, bounds_input = self.rank_counts(), None
        key = aupro_key(fpr_limit)
        f1, f1_thr = f1_max(rc)
        out = {"auroc": auroc(rc), "ap": average_precision(rc), key: aupro(rc, self.num_regions, fpr_limit),
               "f1_max": f1, "f1_max_threshold": f1_thr}
        if threshold is not None:
            out["f1@thr"], out["f1@thr_threshold"] = self._f1_at(rc, float(threshold)), float(threshold)
        out.update(num_frames=self.num_frames, num_regions=self.num_regions, num_anomalous_pixels=self._n_pos,
                   num_normal_pixels=self._n_neg)
        if self.binned:
            out.update(self._bounds(rc, bounds_input, out, fpr_limit, threshold))
        return out

    def _f1_at(self, rc: RankCounts, t: float) -> float:
        """F1 of ``score >= t`` (binned mode: of ``score >= lower edge of t's bucket``)."""
        if self.binned:
            h = self._hist
            b = int(h.bins(np.array([t]))[0])
            tp, fp = int(h.pos[b:].sum()), int(h.neg[b:].sum())
        else:
            tp = int(rc.pos[int(np.searchsorted(rc.u, t, side="left")):].sum())
            fp = self._neg.count_ge(t)
        return f1_from_counts(tp, fp, self._n_pos)

    # binned ------------------------------------------------------------------------------------------------------
    def _binned_rank_counts(self):
        h = self._hist
        h.flush()
        pb = np.flatnonzero(h.pos)
        cum = np.cumsum(h.neg)
        n_eq = h.neg[pb]
        rc = RankCounts(h.lower_edges(pb), h.pos[pb], cum[pb] - n_eq, n_eq, self._n_pos, self._n_neg, h.w[pb])
        return rc, pb

    def _bounds(self, rc: RankCounts, pb: np.ndarray, out: dict, fpr_limit: float, threshold) -> dict:
        P, N = self._n_pos, self._n_neg
        key = aupro_key(fpr_limit)
        b = {f"{k}_error_bound": NAN for k in ("auroc", "ap", key, "f1_max")}
        if threshold is not None:
            b["f1@thr_error_bound"] = NAN
        if P == 0:
            return b
        p = rc.pos.astype(np.float64)
        n = rc.neg_eq.astype(np.float64)
        A = rc.pos_gt.astype(np.float64)
        F = rc.neg_gt.astype(np.float64)
        if N > 0:
            b["auroc_error_bound"] = float(np.dot(p, n) / (2.0 * P * N))
        # AP: per bucket, precision of each positive within [(A+j)/(A+j+F+n), (A+p)/(A+p+F)]
        hi = p * (A + p) / (A + p + F)
        D = F + n
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = p - np.where(D > 0, D * np.log1p(p / np.where(A + D > 0, A + D, 1.0)), 0.0)
        lo = np.where((A + D) == 0, p, lo)
        ap = out["ap"]
        b["ap_error_bound"] = float(max(ap - lo.sum() / P, hi.sum() / P - ap, 0.0) + 1e-12)
        f1_hi = float(np.max(2 * (A + p) / (A + p + F + P)))
        b["f1_max_error_bound"] = max(f1_hi - out["f1_max"], 0.0)
        if N > 0 and self.num_regions > 0:
            w = rc.pos_weight
            w_ge = np.cumsum(w[::-1])[::-1]
            w_gt = np.append(w_ge[1:], 0.0)
            x0, x1 = F / N, (F + n) / N
            dy = (w_ge - w_gt) / self.num_regions
            inside = x0 < fpr_limit
            width = np.minimum(x1, fpr_limit) - x0
            factor = np.where(x1 <= fpr_limit, 0.5, 1.0)
            b[f"{key}_error_bound"] = float(np.sum((width * dy * factor)[inside]) / fpr_limit)
        if threshold is not None:
            h = self._hist
            t = float(threshold)
            bt = int(h.bins(np.array([t]))[0])
            tp_hi, fp_hi = int(h.pos[bt:].sum()), int(h.neg[bt:].sum())
            tp_lo, fp_lo = int(h.pos[bt + 1:].sum()), int(h.neg[bt + 1:].sum())
            v = out["f1@thr"]
            lo_v, hi_v = f1_from_counts(tp_lo, fp_hi, P), f1_from_counts(tp_hi, fp_lo, P)
            exact_edge = float(h.lower_edges(np.array([bt]))[0]) == t
            b["f1@thr_error_bound"] = 0.0 if exact_edge else float(max(v - lo_v, hi_v - v))
        return b
