"""Binary mask agreement with the GT masks: mask IoU and boundary F1, per frame and pooled over a test set.

These judge the *masks* (which pixels a segmenter calls the object), not the pixel scores: the pixel metrics
(:mod:`tao_lab.metrics.pixel`) rank continuous scores; these compare the binary masks (e.g. a Segmentation's
``instance_maps > 0``) with the GT masks.

Definitions (one frame, ``pred`` and ``gt`` (H, W) bool):
- mask IoU = |pred & gt| / |pred | gt|; undefined (NaN) when both are empty.
- boundary of a mask = its pixels with at least one 4-neighbour outside the mask; the image border does not
  count as outside (an object cut by the frame edge has no boundary along it).
- boundary F1 at tolerance ``tol`` px (the DAVIS "F" measure with a fixed pixel tolerance): precision = share of
  the predicted boundary pixels within Euclidean distance <= tol of a GT boundary pixel, recall = share of the GT
  boundary pixels within tol of a predicted boundary pixel, F1 = 2PR / (P + R) (0 when P + R = 0); 0 when exactly
  one of the two boundaries is empty, NaN when both are.

:class:`MaskAgreement` pools over frames (say which pooling when quoting a number):
- ``mask_iou``: mean of the per-frame IoU over the GT-anomalous frames (non-empty GT mask); a frame with no
  predicted pixel scores 0;
- ``mask_iou_pooled``: sum of |pred & gt| over all frames / sum of |pred | gt| over all frames (masks on normal
  frames count against it);
- ``mask_precision`` / ``mask_recall``: sum of |pred & gt| / sum of |pred| (resp. |gt|), all frames pooled;
- ``boundary_f1``: mean of the per-frame boundary F1 over the GT-anomalous frames (no predicted pixel -> 0).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mask_iou", "mask_boundary", "boundary_f1", "MaskAgreement"]

NAN = float("nan")
_CROSS = ndimage.generate_binary_structure(2, 1)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gt)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(f"pred and gt masks must be (H, W) of one shape, got {p.shape} and {g.shape}")
    return (p if p.dtype == bool else p != 0), (g if g.dtype == bool else g != 0)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|pred & gt| / |pred | gt| of two (H, W) masks; NaN when both are empty."""
    p, g = _pair(pred, gt)
    union = int(np.count_nonzero(p | g))
    return NAN if union == 0 else int(np.count_nonzero(p & g)) / union


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the mask's pixels with a 4-neighbour outside the mask (the image border is not outside)."""
    m = np.asarray(mask, bool)
    if not m.any():
        return np.zeros_like(m)
    return m & ~ndimage.binary_erosion(m, structure=_CROSS, border_value=1)


def boundary_f1(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0) -> float:
    """Boundary F1 of two (H, W) masks at ``tolerance`` pixels (see the module docstring)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    p, g = _pair(pred, gt)
    pb, gb = mask_boundary(p), mask_boundary(g)
    has_p, has_g = bool(pb.any()), bool(gb.any())
    if not has_p and not has_g:
        return NAN
    if not has_p or not has_g:
        return 0.0
    # every boundary pixel lies in the bounding box of the two boundaries, so distances computed inside it are the
    # distances in the full frame (and far cheaper)
    either = pb | gb
    rows, cols = np.flatnonzero(either.any(axis=1)), np.flatnonzero(either.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pb, gb = pb[window], gb[window]
    to_gt = ndimage.distance_transform_edt(~gb)
    to_pred = ndimage.distance_transform_edt(~pb)
    precision = float(np.mean(to_gt[pb] <= tolerance))
    recall = float(np.mean(to_pred[gb] <= tolerance))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


class MaskAgreement:
    """Streams (pred, gt) frame pairs and pools mask IoU, precision, recall and boundary F1 (module docstring).

    tolerance: the boundary F1 tolerance in pixels.
    """

    def __init__(self, tolerance: float = 2.0):
        self.tolerance = float(tolerance)
        self.ious: list[float] = []       # per GT-anomalous frame
        self.bf1: list[float] = []        # per GT-anomalous frame
        self.intersection = self.union = self.predicted = self.positive = 0
        self.num_frames = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        p, g = _pair(pred, gt)
        self.num_frames += 1
        inter = int(np.count_nonzero(p & g))
        n_pred, n_gt = int(np.count_nonzero(p)), int(np.count_nonzero(g))
        union = n_pred + n_gt - inter
        self.intersection += inter
        self.union += union
        self.predicted += n_pred
        self.positive += n_gt
        if n_gt:
            self.ious.append(inter / union)
            self.bf1.append(boundary_f1(p, g, self.tolerance) if n_pred else 0.0)

    def compute(self) -> dict:
        def ratio(a: int, b: int) -> float:
            return a / b if b else NAN

        return {"mask_iou": float(np.mean(self.ious)) if self.ious else NAN,
                "mask_iou_pooled": ratio(self.intersection, self.union),
                "mask_precision": ratio(self.intersection, self.predicted),
                "mask_recall": ratio(self.intersection, self.positive),
                "boundary_f1": float(np.nanmean(self.bf1)) if self.bf1 else NAN,
                "mask_frames_scored": len(self.ious), "mask_num_frames": self.num_frames}
