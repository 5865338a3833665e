"""Which kinds of anomaly a run catches: frame-level figures per GT object class (e.g. the synthetic set's rider,
vehicle, wrong_way and loiter), a diagnostic read next to the pooled frame AUC."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from tao_lab.types import ObjectTable


def per_kind_frame_table(frame_scores: Sequence[np.ndarray], frame_labels: Sequence[np.ndarray],
                         gt_tracks: Sequence[Optional[ObjectTable]],
                         kind_names: Optional[Mapping[int, str]] = None, max_fpr: float = 0.05) -> list[dict]:
    """One row per GT object class present in ``gt_tracks`` (per clip, aligned with the scores and labels).

    For kind k, its frames are the frames where a GT object of class k is present; each row gives
    - ``frames``: how many;
    - ``frame_auc``: ROC AUC of the frame scores of those frames against all normal frames (pooled over clips);
    - ``recall@fpr{max_fpr}``: the fraction of its frames scoring above the (1 - max_fpr) quantile of the normal
      frames' scores (how many it catches when 5% of normal frames raise a false alarm).
    Empty when there are no GT tracks, no normal frames, or only one class without a name.
    """
    from sklearn.metrics import roc_auc_score

    normal, kinds_scores = [], {}
    for scores, labels, tracks in zip(frame_scores, frame_labels, gt_tracks):
        scores = np.asarray(scores, np.float64)
        labels = np.asarray(labels, bool)
        normal.append(scores[~labels])
        if tracks is None or len(tracks) == 0:
            continue
        for k in np.unique(tracks.cls):
            frames = np.unique(tracks.frame[tracks.cls == k])
            frames = frames[(frames >= 0) & (frames < len(scores))]
            kinds_scores.setdefault(int(k), []).append(scores[frames])
    normal_all = np.concatenate(normal) if normal else np.zeros(0)
    if not len(normal_all) or not kinds_scores or (len(kinds_scores) == 1 and not kind_names):
        return []
    cut = float(np.quantile(normal_all, 1.0 - max_fpr))
    rows = []
    for k in sorted(kinds_scores):
        pos = np.concatenate(kinds_scores[k])
        y = np.concatenate([np.zeros(len(normal_all)), np.ones(len(pos))])
        auc = float(roc_auc_score(y, np.concatenate([normal_all, pos]))) if len(pos) else float("nan")
        name = (kind_names or {}).get(k, f"class {k}")
        rows.append({"kind": name, "frames": int(len(pos)), "frame_auc": auc,
                     f"recall@fpr{max_fpr:g}": float((pos > cut).mean()) if len(pos) else float("nan")})
    return rows
