"""Pixel-level metrics as streaming accumulators: standard protocol (:class:`PixelMetrics`) and TAO's
(:class:`TaoPixelMetrics`).

Standard protocol (REFERENCE.md §3): every pixel of every test frame is pooled, scores stay continuous, and
AUROC, AP, AUPRO@limit (MVTec AD), max-F1 and F1 at an operating threshold are computed *exactly*.

How the exact mode streams (no dataset-wide concatenation, no dataset-wide sort)
------------------------------------------------------------------------------
All five metrics depend only on, for each distinct score ``u`` of an anomalous (positive) pixel, how many
normal (negative) pixels score below ``u`` and how many equal ``u`` (see :mod:`tao_lab.metrics._core`). So:

- *Anomalous pixels* (about 1 % of Ped2) are kept per frame as sorted (distinct score, count, sum of
  1/region-area) runs, merged as they grow; the region weights turn AUPRO into a weighted cumulative sum, with
  no loop over thresholds or regions. Regions are the 8-connected components of each frame's GT mask (OpenCV,
  run on the mask's bounding box).
- *Normal pixels* are reduced per frame to an exact histogram of their values:
    * values that are float32 numbers with at most 10 explicit mantissa bits (every float16 value, which is what
      tao_lab's segmenters emit; bfloat16, uint8 and bool maps too) are counted in one dense 2**19-bin array
      indexed by their float32 bit pattern: exact, 4 MB whatever the dataset size (ShanghaiTech included),
      ~2 ns per pixel;
    * a frame whose values repeat (judged on a 1,024-value sample) becomes a sorted run of (distinct value,
      count), in float32 when that is lossless, else float64; runs that share values across frames are merged
      (detected on a sample), so quantised maps stay small;
    * a frame whose values are (nearly) all distinct is its own histogram: its values are kept as they are
      (4 bytes per normal pixel for float32 scores, ~0.7 GB for Ped2's 171 M normal pixels; 8 for float64), and
      sorted only as far as compute() needs.
- ``compute()`` walks the distinct positive scores in slabs of 32k values. Each unsorted run is grouped by slab
  in place (slab ids from an exact bucket table, then a radix argsort on 16-bit ids: ~3x cheaper than sorting the
  frame); sorted runs are cut at the slab heads by binary search. Per slab, the matching segments of all runs are
  ranked against the slab's values with an exact bucket table (:class:`tao_lab.metrics._core.SortedLookup`,
  sized to stay in cache) and the ranks are histogrammed. A k-way merge done by counting: nothing is concatenated
  beyond one ~1e5-value batch and nothing is sorted globally.

Results equal scikit-learn's ``roc_auc_score`` / ``average_precision_score`` on the pooled arrays up to float64
rounding of the final sums (~1e-15), including tied scores (one operating point per distinct value). Scores are
compared exactly as float64; integer scores above 2**53 are not supported exactly.

Binned mode (``binned=True``) for very large sets: scores are rounded to float32 and bucketed by the top
``log2(num_bins)`` bits of their order-preserving bit pattern (scale-free, relative resolution
2^-(log2(num_bins) - 9); the default 2^20 bins resolve ~5e-4 of a value). Memory is fixed (24 bytes per bin).
Every metric is then reported with a *certified* error bound computed from the histogram itself
(``<key>_error_bound``): the exact metric of the unrounded scores lies within ``value +- bound``.
Derivation: bucket edges are realisable thresholds, so only the unknown order inside a bucket matters;
AUROC: at most half of the pos x neg pairs that share a bucket can flip, bound = sum_b p_b n_b / (2 P N);
AP: the precision of each positive in bucket b lies between (A+j)/(A+j+F+n_b) and (A+p_b)/(A+p_b+F)
(A, F = positives, negatives above the bucket), summed in closed form; max-F1: the best threshold inside a
bucket has at most TP = A + p_b and FP = F; AUPRO: inside a bucket the true PRO curve is monotone between the
bucket's two corners, so it differs from the chord by at most half the box (the whole box if the FPR limit cuts
it).

TAO protocol (REFERENCE.md §2): only frames whose GT mask is non-empty are scored; the prediction is
max(0, score) divided by the frame maximum; AUROC, AP, PR-AUC and F1 at 0.5 x the frame maximum are computed per
frame and averaged over frames; a frame with an all-zero prediction scores 0 on every metric. TAO's column
"AUPRO" is this PR-AUC (no region overlap, no FPR limit): the key ``aupro_tao`` keeps TAO's name so tables line
up, and this docstring is the place that says it is a mislabel.
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from tao_lab.metrics._core import (NAN, RankCounts, SortedLookup, _run_starts, aupro, auroc, average_precision,
                                   f1_from_counts, f1_max, pr_auc_trapezoid, rank_counts_from_arrays)

__all__ = ["PixelMetrics", "TaoPixelMetrics", "aupro_key"]

_COMPACT_MIN = 1 << 22       # normal-pixel run entries between two merge attempts
_POS_COMPACT_MIN = 1 << 20   # anomalous-pixel run entries before they are merged
_SLAB = 1 << 15              # distinct anomalous scores per slab when ranking (its lookup table fits in L2)
_CHUNK = 1 << 17             # values ranked per batch (temporaries stay in cache)
# Dense exact path: float32 values whose 13 lowest mantissa bits are zero (every float16, bfloat16 and small-integer
# value) are counted in one 2**19-bin histogram indexed by their bit pattern >> 13.
_DENSE_SHIFT = 13
_DENSE_LOW = np.uint32((1 << _DENSE_SHIFT) - 1)
_DENSE_FLUSH = 1 << 22


def aupro_key(fpr_limit: float) -> str:
    """The metric key for AUPRO at an FPR limit: ``aupro@0.3``, ``aupro@0.05``, ..."""
    return f"aupro@{fpr_limit:g}"


# ----------------------------------------------------------------------------------------------------------------
# input checks and exact dtype narrowing
# ----------------------------------------------------------------------------------------------------------------
def _check_frame(score_map, gt_mask, where: str) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score_map)
    mask = np.asarray(gt_mask)
    if score.ndim != 2:
        raise ValueError(f"{where}: score map must be 2-D (H, W), got shape {score.shape}")
    if mask.shape != score.shape:
        raise ValueError(f"{where}: GT mask shape {mask.shape} != score map shape {score.shape}")
    if score.dtype.kind not in "fiub":
        raise ValueError(f"{where}: score map must be real-valued, got dtype {score.dtype}")
    if score.dtype.kind == "f" and not np.isfinite(score).all():
        raise ValueError(f"{where}: score map contains NaN or inf values")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iub":
            raise ValueError(f"{where}: GT mask must be boolean (or integer, nonzero = anomalous), "
                             f"got dtype {mask.dtype}")
        mask = mask != 0
    return score, mask


def _sample(x: np.ndarray, k: int = 64) -> np.ndarray:
    return x[:: max(1, len(x) // k)]


def _exact_as(x: np.ndarray, dtype) -> Optional[np.ndarray]:
    """x converted to ``dtype`` if that loses nothing (checked on a sample first, then on everything)."""
    if x.dtype == dtype:
        return x
    if x.dtype.kind == "f" and np.dtype(dtype).itemsize >= x.dtype.itemsize:
        return x.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        s = _sample(x)
        if not np.array_equal(s.astype(dtype).astype(x.dtype), s):
            return None
        y = x.astype(dtype)
        if not np.array_equal(y.astype(x.dtype), x):
            return None
    return y


def _f32_keys(x: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of values rounded to float32 (-0.0 folded onto +0.0)."""
    with np.errstate(over="ignore"):
        b = np.asarray(x, np.float32).reshape(-1).view(np.uint32)
    b = np.where(b == 0x80000000, np.uint32(0), b)
    return b ^ np.where(b >> 31, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))


def _f32_from_keys(keys: np.ndarray) -> np.ndarray:
    k = np.asarray(keys, np.uint32)
    b = np.where(k >> 31, k ^ np.uint32(0x80000000), ~k)
    return b.view(np.float32)


def _sorted_run(x: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A frame's values as a sorted run: (sorted values, None) when nearly all are distinct (duplicates are then
    kept, which is cheaper than counting them), else (sorted distinct values, counts). Sorts ``x`` in place."""
    v = x
    v.sort()
    if len(v) < 2:
        return v, None
    change = np.empty(len(v), bool)
    change[0] = True
    np.not_equal(v[1:], v[:-1], out=change[1:])
    n_distinct = int(np.count_nonzero(change))
    if n_distinct > 0.75 * len(v):
        return v, None
    starts = np.flatnonzero(change)
    counts = np.diff(starts, append=len(v))
    return v[starts], counts.astype(np.uint32 if len(v) < 2 ** 32 else np.int64)


def _repeats(x: np.ndarray) -> bool:
    """Whether a frame's values repeat enough for sorting and counting them to save memory (on a sample)."""
    smp = _sample(x, 1024)
    return len(np.unique(smp)) < 0.9 * len(smp)


def _run_count(counts: Optional[np.ndarray], i: int, j: int) -> int:
    return int(j - i) if counts is None else int(counts[i:j].sum(dtype=np.int64))


# ----------------------------------------------------------------------------------------------------------------
# exact stores
# ----------------------------------------------------------------------------------------------------------------
class _ExactMultiset:
    """Exact multiset of scores: a dense histogram of short-mantissa float32 values plus sorted runs.

    A run is (values, counts, is_sorted): with counts=None every entry counts once (values may repeat); otherwise
    the values are sorted and distinct and ``counts`` says how often each occurs. Frames whose values are (nearly)
    all distinct are kept unsorted; the others are sorted and counted, on a small thread pool (numpy releases the
    GIL while sorting) when ``num_threads > 1``.
    """

    def __init__(self, num_threads: int = 1):
        self.dense: Optional[np.ndarray] = None   # (2**19,) int64 counts per float32 bit pattern >> 13
        self._dense_buf: list = []
        self._dense_pending = 0
        self.runs: list[tuple[np.ndarray, Optional[np.ndarray], bool]] = []   # (values, counts, sorted)
        self.n = 0
        self.num_threads = num_threads
        self._since_compact = 0
        self._next_compact = _COMPACT_MIN
        self._shared = 0.0                         # running share of a new run's values seen in earlier runs
        self._probe = np.zeros(0)                  # sorted sample of earlier runs' values
        self._pool = None
        self._futures: list = []

    def __getstate__(self):
        self.drain()
        state = dict(self.__dict__)
        state["_pool"], state["_futures"] = None, []
        return state

    def add(self, x: np.ndarray, owned: bool) -> None:
        """Adds a 1-D array of finite values; ``owned``: the caller will not modify ``x`` afterwards."""
        x = x.reshape(-1)
        if len(x) == 0:
            return
        self.n += len(x)
        original = x
        x32 = _exact_as(x, np.float32)
        if x32 is not None:
            bits = x32.view(np.uint32)
            if not (_sample(bits) & _DENSE_LOW).any() and not (bits & _DENSE_LOW).any():
                self._dense_buf.append(bits >> _DENSE_SHIFT)
                self._dense_pending += len(bits)
                if self._dense_pending >= _DENSE_FLUSH:
                    self._flush_dense()
                return
        x = x32 if x32 is not None else x.astype(np.float64, copy=False)
        if x is original and not owned:     # kept or sorted in place: never the caller's buffer
            x = x.copy()
        if not _repeats(x):
            # (nearly) all values distinct: the exact histogram is the values themselves; keep them unsorted and
            # let compute() group them by slab (a radix pass, cheaper than sorting every frame)
            self._add_run(x, None, False)
            return
        if self.num_threads <= 1:
            self._add_run(*_sorted_run(x), True)
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="tao_lab-metrics")
        self._futures.append(self._pool.submit(_sorted_run, x))
        while len(self._futures) > 2 * self.num_threads:
            self._add_run(*self._futures.pop(0).result(), True)

    def _flush_dense(self) -> None:
        if self._dense_buf:
            counts = np.bincount(np.concatenate(self._dense_buf), minlength=1 << (32 - _DENSE_SHIFT))
            self.dense = counts if self.dense is None else self.dense + counts
        self._dense_buf, self._dense_pending = [], 0

    def drain(self) -> None:
        """Waits for pending sorts and folds buffered dense keys into the histogram."""
        self._flush_dense()
        while self._futures:
            self._add_run(*self._futures.pop(0).result(), True)

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _add_run(self, v: np.ndarray, c: Optional[np.ndarray], is_sorted: bool) -> None:
        if len(v):
            # how many of this run's values were seen before, measured on a sample against a probe of earlier
            # samples: high for quantised maps (merging runs then saves memory), ~0 for continuous ones
            smp = _sample(v, 256)
            i = np.minimum(np.searchsorted(self._probe, smp), max(len(self._probe) - 1, 0))
            seen = float(np.mean(self._probe[i] == smp)) if len(self._probe) else 0.0
            self._shared = 0.8 * self._shared + 0.2 * seen
            if len(self._probe) < 4096:            # the probe is filled from the first runs, then kept
                self._probe = np.union1d(self._probe, smp)
        self.runs.append((v, c, is_sorted))
        self._since_compact += len(v)
        if self._since_compact >= self._next_compact and self._shared > 0.3:
            self.compact()

    def compact(self) -> None:
        """Merges all runs into one run of distinct values (worth it when values repeat across frames)."""
        self._since_compact = 0
        if len(self.runs) < 2 and (not self.runs or self.runs[0][1] is not None):
            return
        v = np.concatenate([r[0] for r in self.runs])
        c = np.concatenate([np.ones(len(r[0]), np.int64) if r[1] is None else r[1].astype(np.int64)
                            for r in self.runs])
        order = np.argsort(v, kind="stable")
        v, c = v[order], c[order]
        starts = _run_starts(v)
        self.runs = [(v[starts], np.add.reduceat(c, starts), True)]
        # geometric schedule: the merged run is re-sorted at most O(log n) times
        self._next_compact = max(_COMPACT_MIN, len(starts))

    def merge(self, other: "_ExactMultiset") -> None:
        self.drain()
        other.drain()
        if other.dense is not None:
            self.dense = other.dense.copy() if self.dense is None else self.dense + other.dense
        self.runs.extend(other.runs)
        self.n += other.n

    def all_runs(self) -> list:
        """Every (sorted values, counts or None) run, the dense histogram included."""
        self.drain()
        runs = list(self.runs)
        if self.dense is not None:
            nz = np.flatnonzero(self.dense)
            if len(nz):
                v = (nz.astype(np.uint32) << np.uint32(_DENSE_SHIFT)).view(np.float32)
                order = np.argsort(v, kind="stable")
                v, c = v[order], self.dense[nz][order]
                starts = _run_starts(v)                     # -0.0 and +0.0 have two bit patterns, one value
                runs.insert(0, (v[starts], np.add.reduceat(c, starts), True))
        return runs

    def count_ge(self, t: float) -> int:
        n = 0
        for v, c, is_sorted in self.all_runs():
            if is_sorted:
                n += _run_count(c, int(np.searchsorted(v, t, side="left")), len(v))
            else:
                n += int(np.count_nonzero(v >= t))
        return n

    def rank_counts(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(below, equal): for each u[i] (sorted distinct float64), how many stored values are < u[i] and == u[i].

        Works slab by slab over u (a slab = ``K`` consecutive u, whose lookup table fits in the CPU cache): the
        segment of every sorted run that falls in the slab is cut with two binary searches, the segments are
        ranked together against the slab, and the ranks are histogrammed. Exact; ~10 ns per stored value.
        """
        runs = self.all_runs()
        m = len(u)
        h = np.zeros(m + 1, np.int64)    # h[j]: values strictly between u[j-1] and u[j] (h[m]: above u[-1])
        e = np.zeros(m, np.int64)        # e[j]: values equal to u[j]
        if not runs:
            return h[:m], e
        K = max(_SLAB, -(-m // 256))
        n_slabs = -(-m // K)
        heads = u[::K]                   # slab s holds heads[s] <= x < heads[s + 1] (the last one x <= u[-1])
        head_lookup = SortedLookup(heads, buckets_per_value=256)   # ~1 head per bucket: a single walk step
        cuts = np.empty((len(runs), n_slabs + 1), np.int64)

        def cut(i: int):
            v, c, is_sorted = runs[i]
            if is_sorted:
                a = int(np.searchsorted(v, u[0], side="left"))
                z = int(np.searchsorted(v, u[-1], side="right"))
                cuts[i, 1:-1] = np.searchsorted(v, heads[1:], side="left")
                cuts[i, 0], cuts[i, -1] = a, z
                return _run_count(c, 0, a), _run_count(c, z, len(v))
            # unsorted run (counts None): group its values by slab, in place (their order is irrelevant)
            r, eq = head_lookup.rank_eq(v)
            slab = r + eq                       # 1 + index of the slab, 0 below u[0]
            slab[v > u[-1]] = n_slabs + 1
            slab = slab.astype(np.uint16)
            v[:] = v[np.argsort(slab, kind="stable")]    # radix sort on 16-bit keys
            bounds = np.cumsum(np.bincount(slab, minlength=n_slabs + 2))
            cuts[i] = bounds[:n_slabs + 1]
            return int(bounds[0]), int(len(v) - bounds[n_slabs])

        if self.num_threads > 1 and len(runs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.num_threads) as ex:
                ends = list(ex.map(cut, range(len(runs))))
        else:
            ends = [cut(i) for i in range(len(runs))]
        h[0] += sum(a for a, _ in ends)
        h[m] += sum(z for _, z in ends)
        plain = [i for i, r in enumerate(runs) if r[1] is None]
        counted = [i for i, r in enumerate(runs) if r[1] is not None]
        runs = [r[:2] for r in runs]

        def slab(s: int):
            us = u[s * K:(s + 1) * K]
            lookup = SortedLookup(us)
            hs = np.zeros(len(us) + 1, np.int64)
            es = np.zeros(len(us), np.int64)
            for group, weighted in ((plain, False), (counted, True)):
                # segments of every run inside the slab, ranked in cache-sized batches
                batch, size = [], 0
                for i in group:
                    lo, hi = cuts[i, s], cuts[i, s + 1]
                    if hi > lo:
                        batch.append((runs[i], lo, hi))
                        size += hi - lo
                    if batch and (size >= _CHUNK or i == group[-1]):
                        x = np.concatenate([r[0][a:b] for r, a, b in batch])
                        w = np.concatenate([r[1][a:b] for r, a, b in batch]).astype(np.float64) if weighted \
                            else None
                        batch, size = [], 0
                        r, eq = lookup.rank_eq(x)
                        hs += np.bincount(r, w, minlength=len(us) + 1).astype(np.int64, copy=False)
                        if eq.any():                # values equal to u[r] were counted in hs[r]: move them
                            we = None if w is None else w[eq]
                            at = np.bincount(r[eq], we, minlength=len(us)).astype(np.int64)
                            es += at
                            hs[:-1] -= at
            return s, hs, es

        if self.num_threads > 1 and n_slabs > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.num_threads) as ex:
                parts = list(ex.map(slab, range(n_slabs)))
        else:
            parts = [slab(s) for s in range(n_slabs)]
        for s, hs, es in parts:
            lo = s * K
            h[lo:lo + len(hs)] += hs
            e[lo:lo + len(es)] += es
        below = np.cumsum(h[:m]) + (np.cumsum(e) - e)
        return below, e


class _WeightedRuns:
    """Exact multiset of positive scores with a weight per value (sum of 1/region area), as sorted runs."""

    def __init__(self):
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n = 0
        self._base = 0
        self._pending = 0

    def add(self, x: np.ndarray, w: np.ndarray) -> None:
        if len(x) == 0:
            return
        self.n += len(x)
        self.runs.append(_weighted_distinct(x.astype(np.float64, copy=False), w))
        self._pending += len(self.runs[-1][0])
        if self._pending > max(_POS_COMPACT_MIN, 2 * self._base):
            self.runs = [self.merged()]
            self._base = len(self.runs[0][0])
            self._pending = 0

    def merge(self, other: "_WeightedRuns") -> None:
        self.runs.extend(other.runs)
        self.n += other.n

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.runs:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
        if len(self.runs) == 1:
            return self.runs[0]
        v = np.concatenate([r[0] for r in self.runs])
        c = np.concatenate([r[1] for r in self.runs])
        w = np.concatenate([r[2] for r in self.runs])
        order = np.argsort(v, kind="stable")
        v, c, w = v[order], c[order], w[order]
        starts = _run_starts(v)
        return v[starts], np.add.reduceat(c, starts), np.add.reduceat(w, starts)


def _weighted_distinct(x: np.ndarray, w: np.ndarray):
    order = np.argsort(x, kind="stable")
    v = x[order]
    starts = _run_starts(v)
    counts = np.diff(np.append(starts, len(v)))
    return v[starts], counts.astype(np.int64), np.add.reduceat(w[order], starts)


def _regions(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray]:
    """Number of connected GT regions of a frame and, for each anomalous pixel (row-major), 1 / its region area.

    Labels only the bounding box of the mask (8x faster on Ped2; the row-major order of the pixels is the same).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    sub = np.ascontiguousarray(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sub.view(np.uint8), connectivity=connectivity,
                                                           ltype=cv2.CV_32S)
    inv_area = 1.0 / np.maximum(stats[:, cv2.CC_STAT_AREA], 1).astype(np.float64)
    return n - 1, inv_area[labels[sub]]


# ----------------------------------------------------------------------------------------------------------------
# binned store
# ----------------------------------------------------------------------------------------------------------------
class _BinnedHist:
    """Fixed-size histograms over the top bits of the order-preserving float32 key."""

    FLUSH = 1 << 22

    def __init__(self, num_bins: int):
        bits = int(round(math.log2(num_bins))) if num_bins > 0 else -1
        if num_bins != 1 << max(bits, 0) or not 8 <= bits <= 26:
            raise ValueError(f"num_bins must be a power of two between 2**8 and 2**26, got {num_bins}")
        self.num_bins = num_bins
        self.shift = 32 - bits
        self.neg = np.zeros(num_bins, np.int64)
        self.pos = np.zeros(num_bins, np.int64)
        self.w = np.zeros(num_bins, np.float64)
        self._nb, self._pb, self._pw = [], [], []
        self._pending = 0

    def bins(self, x: np.ndarray) -> np.ndarray:
        return (_f32_keys(x) >> np.uint32(self.shift)).astype(np.int64)

    def lower_edges(self, b: np.ndarray) -> np.ndarray:
        keys = (np.asarray(b, np.uint64) << np.uint64(self.shift)).astype(np.uint32)
        v = _f32_from_keys(keys).astype(np.float64)
        bad = ~np.isfinite(v)
        v[bad] = np.where(keys[bad] >= 0x80000000, np.inf, -np.inf)
        return v

    def add(self, neg: np.ndarray, pos: np.ndarray, w: np.ndarray) -> None:
        if len(neg):
            self._nb.append(self.bins(neg))
        if len(pos):
            self._pb.append(self.bins(pos))
            self._pw.append(w)
        self._pending += len(neg) + len(pos)
        if self._pending >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._nb:
            self.neg += np.bincount(np.concatenate(self._nb), minlength=self.num_bins)
        if self._pb:
            b = np.concatenate(self._pb)
            self.pos += np.bincount(b, minlength=self.num_bins)
            self.w += np.bincount(b, weights=np.concatenate(self._pw), minlength=self.num_bins)
        self._nb, self._pb, self._pw = [], [], []
        self._pending = 0

    def merge(self, other: "_BinnedHist") -> None:
        if other.num_bins != self.num_bins:
            raise ValueError("cannot merge binned accumulators with different num_bins")
        other.flush()
        self.flush()
        self.neg += other.neg
        self.pos += other.pos
        self.w += other.w


# ----------------------------------------------------------------------------------------------------------------
# standard protocol
# ----------------------------------------------------------------------------------------------------------------
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
    repeated values), float64 maps 8 bytes (see the module docstring). NaN or inf scores raise ``ValueError``.
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
            self._hist = _BinnedHist(self.num_bins)
        else:
            self._neg = _ExactMultiset(self.num_threads)
            self._pos = _WeightedRuns()
        self._n_pos = 0
        self._n_neg = 0

    def update(self, score_map: np.ndarray, gt_mask: np.ndarray) -> None:
        """Adds one frame: ``score_map`` (H, W) real, ``gt_mask`` (H, W) bool (nonzero integers accepted)."""
        score, mask = _check_frame(score_map, gt_mask, f"PixelMetrics frame {self.num_frames}")
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


# ----------------------------------------------------------------------------------------------------------------
# TAO protocol
# ----------------------------------------------------------------------------------------------------------------
class TaoPixelMetrics:
    """Pixel metrics exactly as TAO's evaluation computes them (REFERENCE.md §2); keys end in ``_tao``.

    Per frame with a non-empty GT mask: the prediction is ``max(0, score)`` (``clip_negative``) divided by the
    frame maximum (float64); if that maximum is <= 0 the prediction is empty and the frame scores 0 on all four
    metrics; otherwise AUROC, AP (scikit-learn definitions), PR-AUC (trapezoid over scikit-learn's
    precision-recall curve) and F1 of ``prediction >= f1_threshold`` (0.5 = half the frame maximum) are computed.
    The outputs are means over the scored frames. Frames with an empty GT mask are skipped (counted). A frame whose
    pixels are all anomalous has no AUROC; it is left out of that mean only (counted in
    ``frames_without_normal_pixels``).

    Keys: ``auroc_tao``, ``ap_tao``, ``aupro_tao`` (TAO's name for the PR-AUC: *not* a region-overlap AUPRO),
    ``f1_tao``, plus ``frames_scored``, ``frames_skipped_empty_gt``, ``frames_empty_prediction``,
    ``frames_without_normal_pixels``.
    """

    def __init__(self, clip_negative: bool = True, f1_threshold: float = 0.5):
        self.clip_negative = clip_negative
        self.f1_threshold = float(f1_threshold)
        self.reset()

    def reset(self) -> None:
        self.per_frame: list[tuple[float, float, float, float]] = []   # (auroc, ap, pr_auc, f1) per scored frame
        self.num_frames = 0
        self.skipped_empty_gt = 0
        self.empty_prediction = 0

    def update(self, score_map: np.ndarray, gt_mask: np.ndarray) -> None:
        score, mask = _check_frame(score_map, gt_mask, f"TaoPixelMetrics frame {self.num_frames}")
        self.num_frames += 1
        if not mask.any():
            self.skipped_empty_gt += 1
            return
        top = float(score.max())
        if self.clip_negative:
            top = max(top, 0.0)
        if top <= 0:
            self.empty_prediction += 1
            self.per_frame.append((0.0, 0.0, 0.0, 0.0))
            return
        pos, neg = self._normalise(score[mask], top), self._normalise(score[~mask], top)
        rc = rank_counts_from_arrays(pos, neg)
        tp = int(np.count_nonzero(pos >= self.f1_threshold))
        fp = int(np.count_nonzero(neg >= self.f1_threshold))
        self.per_frame.append((auroc(rc), average_precision(rc), pr_auc_trapezoid(rc),
                               f1_from_counts(tp, fp, len(pos))))

    def _normalise(self, x: np.ndarray, top: float) -> np.ndarray:
        x = x.astype(np.float64)
        if self.clip_negative:
            np.maximum(x, 0.0, out=x)
        x /= top
        return x

    def update_clip(self, score_maps, gt_masks) -> None:
        for s, m in zip(score_maps, gt_masks, strict=True):
            self.update(s, m)

    def merge(self, other: "TaoPixelMetrics") -> "TaoPixelMetrics":
        self.per_frame.extend(other.per_frame)
        self.num_frames += other.num_frames
        self.skipped_empty_gt += other.skipped_empty_gt
        self.empty_prediction += other.empty_prediction
        return self

    def compute(self, fpr_limit: Optional[float] = None, threshold: Optional[float] = None) -> dict:
        """Means over scored frames. ``fpr_limit`` and ``threshold`` exist for interface parity with
        :meth:`PixelMetrics.compute` and are ignored: the TAO protocol has no FPR limit and fixes its threshold
        at ``f1_threshold`` x the frame maximum."""
        a = np.array(self.per_frame, np.float64).reshape(-1, 4)
        no_normal = int(np.isnan(a[:, 0]).sum())

        def mean(col):
            v = a[:, col]
            v = v[~np.isnan(v)]
            return float(v.mean()) if len(v) else NAN

        return {"auroc_tao": mean(0), "ap_tao": mean(1), "aupro_tao": mean(2), "f1_tao": mean(3),
                "frames_scored": len(a), "frames_skipped_empty_gt": self.skipped_empty_gt,
                "frames_empty_prediction": self.empty_prediction, "frames_without_normal_pixels": no_normal}

