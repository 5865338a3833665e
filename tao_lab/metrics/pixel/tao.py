"""TAO's pixel protocol (REFERENCE.md §2): only frames whose GT mask is non-empty are scored; the prediction is
max(0, score) divided by the frame maximum; AUROC, AP, PR-AUC and F1 at 0.5 x the frame maximum are computed per
frame and averaged over frames; a frame with an all-zero prediction scores 0 on every metric. TAO's column
"AUPRO" is this PR-AUC (no region overlap, no FPR limit): the key ``aupro_tao`` keeps TAO's name so tables line
up, and this docstring is the place that says it is a mislabel.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_lab.metrics._core import (NAN, auroc, average_precision, f1_from_counts, pr_auc_trapezoid,
                                   rank_counts_from_arrays)
from tao_lab.metrics.pixel.checks import check_frame


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
        score, mask = check_frame(score_map, gt_mask, f"TaoPixelMetrics frame {self.num_frames}")
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
