"""Exact ranking statistics shared by the frame, pixel (standard and TAO) metrics.

Every threshold metric used here (AUROC, AP, max-F1, PR-AUC, AUPRO) is a function of one small table: for each
*distinct score of a positive sample* ``u[i]`` (ascending), how many positives equal it and how many negatives lie
strictly below it or are equal to it. Thresholds that hold only negatives never change recall, so they add
nothing to AP or max-F1, and they only move the curves horizontally for ROC and PRO. That table is
:class:`RankCounts`; the accumulators build it without ever sorting a dataset's pixels together.

Conventions (the same as scikit-learn's ``roc_auc_score`` / ``average_precision_score``):
- a sample is predicted positive at threshold ``t`` when ``score >= t``;
- tied scores form one operating point (one threshold), so a tie between a positive and a negative counts 1/2
  in AUROC, and AP gives every positive of a tied group the precision at the end of the group;
- metrics that are undefined because a class is absent are NaN (scikit-learn returns NaN for AUROC and 0.0 with
  a warning for AP without positives; here AP is NaN too).

Only numpy is used, so this module is cheap to import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

NAN = float("nan")


@dataclass
class RankCounts:
    """Counts at every distinct positive score, ascending.

    u: (m,) float64 distinct scores of positive samples, ascending.
    pos: (m,) int64 number of positives with score == u[i].
    neg_lt: (m,) int64 number of negatives with score < u[i].
    neg_eq: (m,) int64 number of negatives with score == u[i].
    n_pos, n_neg: totals (n_neg also counts negatives above the largest positive score).
    pos_weight: optional (m,) float64 per-value sum of a per-positive weight (AUPRO: 1 / region area).
    """

    u: np.ndarray
    pos: np.ndarray
    neg_lt: np.ndarray
    neg_eq: np.ndarray
    n_pos: int
    n_neg: int
    pos_weight: Optional[np.ndarray] = None

    def __post_init__(self):
        self.pos = np.asarray(self.pos, np.int64)
        self.neg_lt = np.asarray(self.neg_lt, np.int64)
        self.neg_eq = np.asarray(self.neg_eq, np.int64)
        self.n_pos = int(self.n_pos)
        self.n_neg = int(self.n_neg)

    # Cumulative counts at threshold u[i] ("ge": predicted positive when score >= u[i]; "gt": score > u[i]).
    @property
    def pos_ge(self) -> np.ndarray:
        return self.n_pos - (np.cumsum(self.pos) - self.pos)

    @property
    def pos_gt(self) -> np.ndarray:
        return self.pos_ge - self.pos

    @property
    def neg_ge(self) -> np.ndarray:
        return self.n_neg - self.neg_lt

    @property
    def neg_gt(self) -> np.ndarray:
        return self.n_neg - self.neg_lt - self.neg_eq


def rank_counts_from_arrays(pos_scores, neg_scores, pos_weight=None) -> RankCounts:
    """RankCounts of two in-memory score arrays (any real dtype; compared exactly in float64; finite values).

    pos_weight: optional per-positive weights, summed per distinct positive score.
    The negatives are not sorted: each is ranked among the distinct positive scores with :class:`SortedLookup`
    and the ranks are histogrammed (O(n_neg + n_pos log n_pos)).
    """
    pos = np.asarray(pos_scores).reshape(-1).astype(np.float64, copy=False)
    neg = np.asarray(neg_scores).reshape(-1)
    order = np.argsort(pos, kind="stable")
    sp = pos[order]
    starts = _run_starts(sp)
    u = sp[starts]
    counts = np.diff(np.append(starts, len(sp)))
    w = None
    if pos_weight is not None:
        w = np.add.reduceat(np.asarray(pos_weight, np.float64).reshape(-1)[order], starts) if len(sp) else \
            np.zeros(0)
    m = len(u)
    if m == 0 or len(neg) == 0:
        return RankCounts(u, counts, np.zeros(m, np.int64), np.zeros(m, np.int64), len(pos), len(neg), w)
    r, eq = SortedLookup(u).rank_eq(neg)
    e = np.bincount(r[eq], minlength=m)
    h = np.bincount(r, minlength=m + 1)[:m]
    h -= e
    return RankCounts(u, counts, np.cumsum(h) + (np.cumsum(e) - e), e, len(pos), len(neg), w)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Indices where a new distinct value starts in a sorted 1-D array (empty for an empty array)."""
    n = len(sorted_values)
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=change[1:])
    return np.flatnonzero(change)


def auroc(rc: RankCounts) -> float:
    """Area under the ROC curve (Mann-Whitney U / (P N), ties count 1/2); NaN if a class is absent."""
    if rc.n_pos == 0 or rc.n_neg == 0:
        return NAN
    u_stat = np.dot(rc.pos.astype(np.float64), rc.neg_lt + 0.5 * rc.neg_eq)
    return float(u_stat / rc.n_pos / rc.n_neg)


def average_precision(rc: RankCounts) -> float:
    """AP = sum over thresholds of (recall step) x precision, scikit-learn's definition; NaN without positives."""
    if rc.n_pos == 0:
        return NAN
    tp = rc.pos_ge.astype(np.float64)
    precision = tp / (tp + rc.neg_ge)
    return float(np.dot(rc.pos / rc.n_pos, precision))


def f1_max(rc: RankCounts) -> tuple[float, float]:
    """Max over thresholds of F1 = 2 TP / (2 TP + FP + FN), and the threshold reaching it.

    Only thresholds at positive scores can be optimal (between two of them TP is constant and FP only grows as
    the threshold drops). Among equal maxima the highest threshold is reported. NaN, NaN without positives.
    """
    if rc.n_pos == 0:
        return NAN, NAN
    tp = rc.pos_ge.astype(np.float64)
    f1 = 2 * tp / (tp + rc.neg_ge + rc.n_pos)
    i = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return float(f1[i]), float(rc.u[i])


def f1_from_counts(tp: int, fp: int, n_pos: int) -> float:
    """F1 = 2 TP / (TP + FP + P); NaN when there are no positives."""
    if n_pos == 0:
        return NAN
    return float(2 * tp / (tp + fp + n_pos))


def pr_auc_trapezoid(rc: RankCounts) -> float:
    """Area under the precision-recall curve by the trapezoidal rule (``auc(recall, precision)`` of
    scikit-learn's ``precision_recall_curve``: points at every distinct threshold down to full recall, plus the
    point (recall 0, precision 1)). This is what TAO's "AUPRO" column holds. NaN without positives.

    Between two positive scores only negatives change, so the segment into u[i] starts at the operating point
    just above u[i] (``score > u[i]``), which is (0, 1) when nothing scores above u[i].
    """
    if rc.n_pos == 0:
        return NAN
    tp_ge = rc.pos_ge.astype(np.float64)
    prec_ge = tp_ge / (tp_ge + rc.neg_ge)
    tp_gt = rc.pos_gt.astype(np.float64)
    tot_gt = tp_gt + rc.neg_gt
    with np.errstate(invalid="ignore", divide="ignore"):
        prec_gt = np.where(tot_gt > 0, tp_gt / np.maximum(tot_gt, 1), 1.0)
    return float(np.dot(rc.pos / rc.n_pos, (prec_ge + prec_gt) / 2))


def pro_curve(rc: RankCounts, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """The PRO-vs-FPR polyline (MVTec AD): ``fpr`` and ``pro`` arrays from threshold +inf to -inf.

    Needs ``rc.pos_weight`` = per-value sums of 1 / area(region of the pixel). PRO(t) = mean over GT regions of
    the fraction of the region's pixels with score >= t = (sum of weights of positives >= t) / n_regions;
    FPR(t) = negatives >= t / all negatives. Around every positive score u[i] the polyline has the point just
    above it (score > u[i]) and at it (score >= u[i]); points with only negatives in between lie on horizontal
    segments and are implied. Starts at (0, 0), ends at (1, 1).
    """
    if rc.pos_weight is None:
        raise ValueError("pro_curve needs RankCounts.pos_weight (per-value sums of 1/region area)")
    w_ge = np.cumsum(rc.pos_weight[::-1])[::-1]
    w_gt = np.append(w_ge[1:], 0.0)
    n = float(rc.n_neg)
    c = float(n_regions)
    # descending thresholds: i = m-1 .. 0, each contributing (gt point, ge point)
    fpr = np.empty(2 * len(rc.u) + 2)
    pro = np.empty_like(fpr)
    fpr[0] = pro[0] = 0.0
    fpr[1:-1:2] = (rc.neg_gt / n)[::-1]
    fpr[2:-1:2] = (rc.neg_ge / n)[::-1]
    pro[1:-1:2] = (w_gt / c)[::-1]
    pro[2:-1:2] = (w_ge / c)[::-1]
    fpr[-1] = 1.0
    pro[-1] = (w_ge[0] / c) if len(w_ge) else 0.0
    return fpr, pro


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under the polyline (x non-decreasing) from x[0] to ``limit``, interpolating at the limit."""
    k = int(np.searchsorted(x, limit, side="left"))      # x[:k] < limit <= x[k:]
    if k == 0:
        return 0.0
    area = float(np.dot(np.diff(x[:k]), (y[1:k] + y[:k - 1]) / 2))
    if k < len(x):                                       # the segment that crosses the limit
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        ye = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + ye) / 2
    return float(area)


def aupro(rc: RankCounts, n_regions: int, fpr_limit: float = 0.3) -> float:
    """Normalised AUPRO: area under PRO(FPR) from FPR 0 to ``fpr_limit`` divided by ``fpr_limit`` (range [0, 1]).

    NaN when there is no GT region or no normal pixel.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if n_regions == 0 or rc.n_neg == 0 or rc.n_pos == 0:
        return NAN
    # only positive scores whose "just above" point is within the limit matter (neg_gt grows as u drops); past
    # the last one the curve is horizontal, so the end point (1, PRO there) closes it exactly
    keep = rc.neg_gt <= fpr_limit * rc.n_neg
    lo = int(np.argmax(keep)) if keep.any() else len(rc.u)
    sub = RankCounts(rc.u[lo:], rc.pos[lo:], rc.neg_lt[lo:], rc.neg_eq[lo:], rc.n_pos, rc.n_neg,
                     rc.pos_weight[lo:])
    fpr, pro = pro_curve(sub, n_regions)
    if lo > 0:
        fpr[-1], pro[-1] = 1.0, pro[-2]
    return float(area_up_to(fpr, pro, fpr_limit) / fpr_limit)


class SortedLookup:
    """Fast exact ``searchsorted(u, x, 'left')`` for a fixed sorted array ``u`` of distinct finite values.

    A value-uniform bucket table (~4 buckets per value) gives, for each query x, the number of u in lower
    buckets; a short walk over the u of x's own bucket (usually none or one) finishes the count, and the rare x
    still unresolved after ``STEPS`` steps fall back to ``np.searchsorted``. The bucket function is monotone in x
    (correctly rounded float subtraction and multiplication, then clipping and truncation), so every u in a
    lower bucket is < x and every u in a higher bucket is > x: the result is exact. Buckets are computed in
    float32 when every u is a float32 value (queries are then rounded to float32 first, still monotone).
    Use it on batches of ~1e5 queries against ~1e4-1e5 values so the table stays in cache.
    """

    STEPS = 2

    def __init__(self, u: np.ndarray, buckets_per_value: int = 4):
        self.u = np.asarray(u, np.float64)
        m = len(self.u)
        if m == 0:
            raise ValueError("SortedLookup needs at least one value")
        if not np.isfinite(self.u[[0, -1]]).all():
            raise ValueError("SortedLookup needs finite values")
        u32 = self.u.astype(np.float32)
        self.dtype = np.float32 if np.array_equal(u32, self.u) and np.isfinite(u32).all() else np.float64
        # u[m] = +inf stops every walk; float32 storage when exact (half the memory traffic, float32 compares)
        self.upad = np.append(self.u.astype(self.dtype), self.dtype(np.inf))
        self.nb = 1 << int(min(24, max(4, np.ceil(np.log2(buckets_per_value * m)))))
        self.lo = self.dtype(self.u[0])
        with np.errstate(over="ignore", divide="ignore"):
            span = float(self.dtype(self.u[-1]) - self.lo)
            scale = self.nb / span if span > 0 else 0.0
        self.scale = self.dtype(scale if np.isfinite(scale) else 0.0)
        occ = np.bincount(self.bucket(self.u), minlength=self.nb)
        self.base = np.zeros(self.nb, np.int64)
        np.cumsum(occ[:-1], out=self.base[1:])
        self.max_occupancy = int(occ.max())

    def bucket(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.asarray(x, self.dtype) - self.lo
            t *= self.scale
        np.clip(t, 0, self.nb - 1, out=t)
        return t.astype(np.int32)

    def rank(self, x: np.ndarray) -> np.ndarray:
        """Number of u strictly below each x (int64), for any finite x (x above u[-1] gives len(u))."""
        return self.rank_eq(x)[0]

    def rank_eq(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rank, equal): ``rank`` as :meth:`rank`; ``equal[i]`` is True when x[i] is one of the u."""
        r = self.base[self.bucket(x)]
        up = self.upad
        steps = min(self.STEPS, self.max_occupancy)
        for _ in range(steps):
            r += up[r] < x                            # walking on while u[r] < x never overshoots
        at = up[r]
        if self.max_occupancy > steps:                # some bucket holds more u than the walk covered
            left = np.flatnonzero(at < x)
            if len(left):
                r[left] = np.searchsorted(self.u, x[left], side="left")
                at[left] = up[r[left]]
        return r, at == x
