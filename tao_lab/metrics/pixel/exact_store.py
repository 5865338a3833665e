"""Exact streaming stores of the standard pixel protocol (:mod:`tao_lab.metrics.pixel.standard`).

Every standard metric depends only on, for each distinct score ``u`` of an anomalous (positive) pixel, how many
normal (negative) pixels score below ``u`` and how many equal ``u`` (see :mod:`tao_lab.metrics._core`). So:

- *Anomalous pixels* (a small fraction of a frame) are kept per frame as sorted (distinct score, count, sum of
  1/region-area) runs, merged as they grow (:class:`WeightedRuns`); the region weights turn AUPRO into a weighted
  cumulative sum, with no loop over thresholds or regions.
- *Normal pixels* are reduced per frame to an exact histogram of their values (:class:`ExactMultiset`):
    * values that are float32 numbers with at most 10 explicit mantissa bits (every float16 value, which is what
      tao_lab's segmenters emit; bfloat16, uint8 and bool maps too) are counted in one dense 2**19-bin array
      indexed by their float32 bit pattern: exact, 4 MB whatever the dataset size;
    * a frame whose values repeat (judged on a 1,024-value sample) becomes a sorted run of (distinct value,
      count), in float32 when that is lossless, else float64; runs that share values across frames are merged
      (detected on a sample), so quantised maps stay small;
    * a frame whose values are (nearly) all distinct is its own histogram: its values are kept as they are
      (4 bytes per normal pixel for float32 scores, 8 for float64), and sorted only as far as compute() needs.
- ``rank_counts()`` walks the distinct positive scores in slabs of 32k values. Each unsorted run is grouped by
  slab in place (slab ids from an exact bucket table, then a radix argsort on 16-bit ids, cheaper than sorting the
  frame); sorted runs are cut at the slab heads by binary search. Per slab, the matching segments of all runs are
  ranked against the slab's values with an exact bucket table (:class:`tao_lab.metrics._core.SortedLookup`,
  sized to stay in cache) and the ranks are histogrammed. A k-way merge done by counting: nothing is concatenated
  beyond one ~1e5-value batch and nothing is sorted globally.

Measured speeds and memory of these paths: docs/MEASUREMENTS.md (``benchmarks/metrics_bench.py`` reproduces them).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_lab.metrics._core import SortedLookup, _run_starts

_COMPACT_MIN = 1 << 22       # normal-pixel run entries between two merge attempts
_POS_COMPACT_MIN = 1 << 20   # anomalous-pixel run entries before they are merged
_SLAB = 1 << 15              # distinct anomalous scores per slab when ranking (its lookup table fits in L2)
_CHUNK = 1 << 17             # values ranked per batch (temporaries stay in cache)
# Dense exact path: float32 values whose 13 lowest mantissa bits are zero (every float16, bfloat16 and small-integer
# value) are counted in one 2**19-bin histogram indexed by their bit pattern >> 13.
_DENSE_SHIFT = 13
_DENSE_LOW = np.uint32((1 << _DENSE_SHIFT) - 1)
_DENSE_FLUSH = 1 << 22


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


class ExactMultiset:
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

    def merge(self, other: "ExactMultiset") -> None:
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
        ranked together against the slab, and the ranks are histogrammed. Exact.
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


class WeightedRuns:
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

    def merge(self, other: "WeightedRuns") -> None:
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
