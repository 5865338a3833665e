"""Decision thresholds on anomaly scores, fitted on training (normal) scores only.

Interface: ``Threshold.fit(train_scores) -> self``; attribute ``tau`` (float); ``__call__(scores) -> bool array``
flagging ``scores > tau`` (strictly above, so a constant training set never flags its own value; NaN scores are
never flagged). Fit them on the scorer's calibrated training object scores (``scorer.train_object_scores()``),
never on test scores.

Degenerate inputs fall back loudly: NaN/inf training scores are dropped with a warning; constant scores, too few
tail points or a failed tail fit log a warning that names the fallback; an empty (or all-NaN) training set raises.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)


def _finite_scores(scores, who: str) -> np.ndarray:
    x = np.asarray(scores, np.float64).reshape(-1)
    ok = np.isfinite(x)
    if not ok.all():
        log.warning("%s: dropping %d non-finite training scores of %d (NaN/inf)", who, int((~ok).sum()), len(x))
        x = x[ok]
    if len(x) == 0:
        raise ValueError(f"{who}: no finite training scores to fit the threshold on")
    if x.max() == x.min():
        log.warning("%s: all %d training scores equal %.6g; tau falls back to that value (only scores strictly "
                    "above it are flagged)", who, len(x), x[0])
    return x


class Threshold:
    """Base class; subclasses set ``self.tau`` in ``fit``."""

    tau: Optional[float] = None

    def fit(self, train_scores) -> "Threshold":  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, scores) -> np.ndarray:
        if self.tau is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train_scores) first")
        s = np.asarray(scores, np.float64)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(s, nan=-np.inf) > self.tau

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tau={self.tau})"


class FixedThreshold(Threshold):
    """A fixed tau (e.g. TAO's hand-set tau; 1.0 = the top of the calibrated training range). ``fit`` ignores
    the scores (it only checks them), so the same config works with or without training scores."""

    def __init__(self, tau: float = 1.0):
        if not math.isfinite(float(tau)):
            raise ValueError(f"FixedThreshold needs a finite tau, got {tau}")
        self.tau = float(tau)

    def fit(self, train_scores=None) -> "FixedThreshold":
        return self


class PercentileThreshold(Threshold):
    """tau = the q-th percentile (0..100) of the training scores."""

    def __init__(self, q: float = 99.0):
        if not 0.0 <= float(q) <= 100.0:
            raise ValueError(f"percentile q must be in [0, 100], got {q}")
        self.q = float(q)
        self.tau = None

    def fit(self, train_scores) -> "PercentileThreshold":
        x = _finite_scores(train_scores, "PercentileThreshold")
        self.tau = float(np.percentile(x, self.q))
        return self


class RunningThreshold(Threshold):
    """tau = mean + k * std of running statistics, for online use.

    ``fit`` initialises the statistics from the training scores; ``update(scores)`` folds new scores in one by
    one (Welford's algorithm, or exponential forgetting with ``decay``), returning each score's flag against the
    tau *before* that score was added. Flagged scores are not folded in unless ``update_on_flagged`` (so a long
    anomaly does not raise the threshold over itself). ``__call__`` only applies the current tau.

    Args:
        k: number of standard deviations above the mean.
        decay: None = cumulative statistics; a value in (0, 1) = exponential forgetting per score (e.g. 0.001
            gives an effective memory of about 1000 scores).
        update_on_flagged: also fold flagged scores into the statistics.
        min_std: floor of the standard deviation (constant training scores otherwise give tau = their value).
    """

    def __init__(self, k: float = 3.0, decay: Optional[float] = None, update_on_flagged: bool = False,
                 min_std: float = 0.0):
        if decay is not None and not 0.0 < float(decay) < 1.0:
            raise ValueError(f"decay must be in (0, 1) or None, got {decay}")
        self.k = float(k)
        self.decay = None if decay is None else float(decay)
        self.update_on_flagged = bool(update_on_flagged)
        self.min_std = float(min_std)
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations (cumulative) or the variance (with decay)
        self.tau = None

    @property
    def std(self) -> float:
        var = self.m2 if self.decay is not None else (self.m2 / self.count if self.count else 0.0)
        return max(math.sqrt(max(var, 0.0)), self.min_std)

    def _refresh(self):
        self.tau = self.mean + self.k * self.std

    def fit(self, train_scores) -> "RunningThreshold":
        x = _finite_scores(train_scores, "RunningThreshold")
        self.count = len(x)
        self.mean = float(x.mean())
        var = float(x.var())
        self.m2 = var if self.decay is not None else var * len(x)
        self._refresh()
        return self

    def _add(self, v: float):
        self.count += 1
        if self.decay is None:
            d = v - self.mean
            self.mean += d / self.count
            self.m2 += d * (v - self.mean)
        else:
            a = self.decay
            d = v - self.mean
            self.mean += a * d
            self.m2 = (1 - a) * (self.m2 + a * d * d)

    def update(self, scores) -> np.ndarray:
        """Flags each new score against the current tau, then folds it into the statistics (see class doc)."""
        if self.tau is None:
            raise RuntimeError("RunningThreshold is not fitted: call fit(train_scores) first")
        s = np.asarray(scores, np.float64).reshape(-1)
        flags = np.zeros(len(s), bool)
        for i, v in enumerate(s):
            if not math.isfinite(v):
                continue
            flags[i] = v > self.tau
            if not flags[i] or self.update_on_flagged:
                self._add(float(v))
                self._refresh()
        return flags


class EvtThreshold(Threshold):
    """Peaks over threshold: a generalised Pareto tail fitted above a high training quantile.

    With u = the ``tail_quantile`` quantile of the training scores and the exceedances x - u > 0 fitted by
    ``scipy.stats.genpareto`` (location 0), tau is the score exceeded with probability ``exceedance``:
    P(X > tau) = (1 - tail_quantile) * GPD.sf(tau - u) = exceedance.

    Args:
        exceedance: target probability that a normal score exceeds tau (e.g. 1e-3); must be < 1 - tail_quantile
            for the tail model to be used (else the empirical quantile is returned, with a warning).
        tail_quantile: the POT threshold quantile u (0..1).
        min_tail: fewest exceedances for a GPD fit; fewer -> fallback to the empirical (1 - exceedance) quantile
            (i.e. the training maximum when exceedance is below 1/n), logged.
    Fallbacks (each logs a warning naming it): too few tail points, constant tail, or a failed/non-finite fit
    -> the empirical quantile.
    """

    def __init__(self, exceedance: float = 1e-3, tail_quantile: float = 0.98, min_tail: int = 20):
        if not 0.0 < float(exceedance) < 1.0:
            raise ValueError(f"exceedance must be in (0, 1), got {exceedance}")
        if not 0.0 < float(tail_quantile) < 1.0:
            raise ValueError(f"tail_quantile must be in (0, 1), got {tail_quantile}")
        self.exceedance = float(exceedance)
        self.tail_quantile = float(tail_quantile)
        self.min_tail = int(min_tail)
        self.tau = None
        self.u: Optional[float] = None
        self.shape: Optional[float] = None  # GPD shape xi (c in scipy)
        self.scale: Optional[float] = None
        self.fallback: Optional[str] = None  # None when the GPD tail was used, else why it was not

    def _empirical(self, x: np.ndarray, why: str) -> float:
        q = 1.0 - self.exceedance
        tau = float(np.quantile(x, q))
        log.warning("EvtThreshold: %s; falling back to the empirical %.6g quantile of the training scores "
                    "(tau = %.6g)", why, q, tau)
        self.fallback = why
        return tau

    def fit(self, train_scores) -> "EvtThreshold":
        x = _finite_scores(train_scores, "EvtThreshold")
        self.fallback = None
        self.shape = self.scale = None
        p_tail = 1.0 - self.tail_quantile
        u = float(np.quantile(x, self.tail_quantile))
        self.u = u
        y = x[x > u] - u
        if self.exceedance >= p_tail:
            self.tau = self._empirical(x, f"exceedance {self.exceedance} is not below the tail mass {p_tail:.4g}")
            return self
        if len(y) < self.min_tail:
            self.tau = self._empirical(x, f"only {len(y)} training scores above the {self.tail_quantile} quantile "
                                          f"(min_tail={self.min_tail})")
            return self
        if np.ptp(y) <= 0:
            self.tau = self._empirical(x, "the tail exceedances are constant")
            return self
        try:
            from scipy.stats import genpareto

            c, _, scale = genpareto.fit(y, floc=0.0)
        except Exception as e:  # noqa: BLE001 - any fit failure falls back, loudly
            self.tau = self._empirical(x, f"the generalised Pareto fit failed ({e})")
            return self
        if not (math.isfinite(c) and math.isfinite(scale) and scale > 0):
            self.tau = self._empirical(x, f"the generalised Pareto fit is degenerate (shape={c}, scale={scale})")
            return self
        # empirical tail mass above u (ties at u make it differ from 1 - tail_quantile)
        p_u = len(y) / len(x)
        r = p_u / self.exceedance
        tau = u + (scale * math.log(r) if abs(c) < 1e-6 else scale / c * (r ** c - 1.0))
        if not math.isfinite(tau):
            self.tau = self._empirical(x, f"the tail quantile is not finite (shape={c}, scale={scale})")
            return self
        self.shape, self.scale, self.tau = float(c), float(scale), float(tau)
        return self


class ConformalThreshold(Threshold):
    """tau = the split-conformal (1 - rate) quantile of held-out normal scores.

    With n held-out scores, tau is the k-th smallest, k = ceil((n + 1) * (1 - rate)): for a new score exchangeable
    with the held-out ones, P(score > tau) <= rate (the finite-sample guarantee of split conformal prediction;
    time series are only roughly exchangeable, so it is a target, not a promise). When k > n (too few scores for
    the rate), tau is the maximum and a warning says the target cannot be guaranteed.

    When most held-out scores equal the minimum (e.g. frames without any object score 0) the quantile can land on
    that minimum, which would flag every frame with any object; the quantile is then taken over the scores above
    the minimum (a stricter tau, logged).
    """

    def __init__(self, rate: float = 0.01):
        if not 0.0 < float(rate) < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        self.rate = float(rate)
        self.tau = None
        self.fallback: Optional[str] = None

    def _order_statistic(self, x: np.ndarray) -> float:
        n = len(x)
        k = math.ceil((n + 1) * (1.0 - self.rate))
        if k > n:
            self.fallback = (f"{n} held-out scores are too few for a guaranteed rate {self.rate:g} (need at least "
                             f"{math.ceil(1.0 / self.rate) - 1}); tau = their maximum")
            log.warning("ConformalThreshold: %s", self.fallback)
            k = n
        return float(np.sort(x)[k - 1])

    def fit(self, train_scores) -> "ConformalThreshold":
        x = _finite_scores(train_scores, "ConformalThreshold")
        self.fallback = None
        tau = self._order_statistic(x)
        lo = float(x.min())
        if tau <= lo and (x > lo).any():
            above = x[x > lo]
            tau = self._order_statistic(above)
            self.fallback = (f"the {1 - self.rate:g} quantile equals the minimum score {lo:.4g} "
                             f"({int((x <= lo).sum())} of {len(x)} scores); tau taken over the {len(above)} "
                             f"scores above it")
            log.warning("ConformalThreshold: %s", self.fallback)
        self.tau = tau
        return self
