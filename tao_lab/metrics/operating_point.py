"""The operating point: how the alarm does at its threshold (AUC says how well scores rank; users live here).

Frame level: precision, recall and false-alarm rate (share of normal frames flagged) of the flagged frames.
Event level: an anomalous interval (a run of GT-anomalous frames of one clip) counts as found when an event of
that clip (:mod:`tao_lab.events`) overlaps it; event recall = found intervals / intervals. Events that overlap no
anomalous interval are counted as false events.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def intervals(labels) -> list[tuple[int, int]]:
    """[(start, end)] inclusive runs of True in a boolean sequence."""
    x = np.concatenate([[False], np.asarray(labels, bool), [False]])
    d = np.flatnonzero(np.diff(x.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(d[::2], d[1::2])]


def operating_point(flags: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                    events: Sequence[Sequence[tuple[int, int]]]) -> dict[str, float]:
    """Per-clip flags (bool per frame), GT labels (bool per frame) and events [(start, end)] inclusive, pooled.

    Returns precision, recall, false_alarm_rate (flagged normal frames / normal frames), event_recall,
    anomalous_intervals, intervals_found, events, false_events. Undefined ratios (no flagged frame, no anomalous
    or no normal frame) are NaN.
    """
    tp = fp = fn = tn = 0
    n_int = found = n_ev = false_ev = 0
    for f, y, ev in zip(flags, labels, events):
        f, y = np.asarray(f, bool), np.asarray(y, bool)
        if f.shape != y.shape:
            raise ValueError(f"flags ({f.shape}) and labels ({y.shape}) of a clip differ in length")
        tp += int((f & y).sum())
        fp += int((f & ~y).sum())
        fn += int((~f & y).sum())
        tn += int((~f & ~y).sum())
        gt = intervals(y)
        n_int += len(gt)
        found += sum(any(s <= b and e >= a for s, e in ev) for a, b in gt)
        n_ev += len(ev)
        false_ev += sum(not any(s <= b and e >= a for a, b in gt) for s, e in ev)
    nan = float("nan")
    # nothing flagged: precision 0 (scikit-learn's zero_division=0), so metrics.json stays valid JSON and a run that
    # never raises an alarm is not mistaken for a perfect one; the flagged-frame count says why
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else nan,
            "false_alarm_rate": fp / (fp + tn) if fp + tn else nan,
            "event_recall": found / n_int if n_int else nan, "anomalous_intervals": float(n_int),
            "intervals_found": float(found), "events": float(n_ev), "false_events": float(false_ev)}
