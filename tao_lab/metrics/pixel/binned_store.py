"""The fixed-memory store of the standard pixel protocol's binned mode (``PixelMetrics(binned=True)``).

Scores are rounded to float32 and bucketed by the top ``log2(num_bins)`` bits of their order-preserving bit
pattern (scale-free, relative resolution 2^-(log2(num_bins) - 9); the default 2^20 bins resolve ~5e-4 of a
value). Memory is fixed (24 bytes per bin). :class:`tao_lab.metrics.pixel.standard.PixelMetrics` turns the
histograms into metrics with certified error bounds.
"""
from __future__ import annotations

import math

import numpy as np


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


class BinnedHistogram:
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

    def merge(self, other: "BinnedHistogram") -> None:
        if other.num_bins != self.num_bins:
            raise ValueError("cannot merge binned accumulators with different num_bins")
        other.flush()
        self.flush()
        self.neg += other.neg
        self.pos += other.pos
        self.w += other.w
