"""Self-paced refinement (after SPR, Yu et al., CVPR 2022) for training on unlabeled video.

Normal events dominate unlabeled surveillance video, so a model fitted on everything reconstructs them best
("normality advantage"). Self-paced refinement then repeatedly ranks every training sample by its loss under the
current model, drops the worst ones (likely anomalies) and refits. ``drop`` is the schedule: before refit round
r (1-based) the ``drop[r-1]`` fraction of *all* samples with the largest loss is excluded (re-ranked from the whole
pool each round, so a sample dropped early can come back once the model has improved).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def check_schedule(drop: Sequence[float]) -> list[float]:
    """The drop schedule as floats in [0, 1), validated."""
    out = [float(f) for f in (drop or [])]
    for f in out:
        if not 0.0 <= f < 1.0:
            raise ValueError(f"self-paced drop fractions must be in [0, 1), got {out}")
    return out


def keep_lowest(losses: np.ndarray, drop_fraction: float) -> np.ndarray:
    """(N,) bool: True for the samples kept, i.e. all but the ``drop_fraction`` with the largest loss.

    Non-finite losses are dropped first; ties are broken by index (stable), so the selection is deterministic.
    """
    losses = np.asarray(losses, np.float64)
    n = len(losses)
    n_drop = int(np.floor(float(drop_fraction) * n + 1e-9))
    keep = np.ones(n, bool)
    if n_drop <= 0:
        return keep
    key = np.where(np.isfinite(losses), losses, np.inf)
    order = np.argsort(-key, kind="stable")
    keep[order[:min(n_drop, n - 1)]] = False
    return keep
