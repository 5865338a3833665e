"""Frame-level metrics: micro AUC (all test frames pooled, what papers report), frame AP, macro AUC.

Conventions as scikit-learn (``roc_auc_score``, ``average_precision_score``): a frame is predicted anomalous
when ``score >= threshold``; tied scores form one operating point. Values are exact (see
:mod:`tao_lab.metrics._core`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tao_lab.metrics._core import NAN, auroc, average_precision, rank_counts_from_arrays

__all__ = ["frame_metrics", "check_scores_labels"]


def check_scores_labels(scores, labels, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validates one video's frame scores and labels: 1-D, same length, finite scores, binary labels.

    Returns (scores float64, labels bool). Labels may be bool or integers in {0, 1}.
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    where = f"{where}: " if where else ""
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{where}scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if len(s) != len(y):
        raise ValueError(f"{where}{len(s)} scores but {len(y)} labels")
    if s.dtype.kind not in "fiub":
        raise ValueError(f"{where}scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.isfinite(s).all():
        raise ValueError(f"{where}scores contain NaN or inf (first at index {int(np.flatnonzero(~np.isfinite(s))[0])})")
    if y.dtype != bool:
        if y.dtype.kind not in "iuf" or not np.isin(y, (0, 1)).all():
            raise ValueError(f"{where}labels must be 0/1 or boolean")
        y = y != 0
    return s, y


def frame_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict:
    """Frame-level AUROC and AP.

    Args:
        scores: one (T_v,) array of frame anomaly scores per test video (higher = more anomalous).
        labels: one (T_v,) array per video, True / 1 = anomalous frame.

    Returns:
        ``auc_micro``: AUROC of all test frames pooled; ``ap``: average precision of the pooled frames
        (area under the precision-recall curve, step-wise like scikit-learn); ``auc_macro``: mean of the per-video
        AUROCs over videos that contain both classes; ``macro_videos_skipped``: videos left out of the macro mean
        because they hold a single class; ``macro_videos``: videos averaged. Undefined values are NaN.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score arrays but {len(labels)} label arrays")
    checked = [check_scores_labels(s, y, f"video {i}") for i, (s, y) in enumerate(zip(scores, labels))]
    if checked:
        s_all = np.concatenate([s for s, _ in checked])
        y_all = np.concatenate([y for _, y in checked])
    else:
        s_all, y_all = np.zeros(0), np.zeros(0, bool)
    rc = rank_counts_from_arrays(s_all[y_all], s_all[~y_all])
    per_video = []
    skipped = 0
    for s, y in checked:
        if y.all() or not y.any():
            skipped += 1
            continue
        per_video.append(auroc(rank_counts_from_arrays(s[y], s[~y])))
    return {"auc_micro": auroc(rc), "ap": average_precision(rc),
            "auc_macro": float(np.mean(per_video)) if per_video else NAN,
            "macro_videos_skipped": skipped, "macro_videos": len(per_video)}
