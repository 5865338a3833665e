"""Box IoU, the one implementation every stage uses (detectors, prompt filters, segmenters, object metrics).

Boxes are ``xyxy`` arrays in original-frame pixels. The project convention is exclusive (x2/y2 past the last
pixel: area ``(x2 - x1) * (y2 - y1)``); ``convention="inclusive"`` is AED's ``(x2 - x1 + 1) * (y2 - y1 + 1)``,
which the object metrics offer for comparison with its published numbers.
"""
from __future__ import annotations

import numpy as np

CONVENTIONS = ("exclusive", "inclusive")


def box_iou(a, b, *, pairwise: bool = False, convention: str = "exclusive", dtype=np.float64) -> np.ndarray:
    """IoU of xyxy boxes: the (N, M) matrix of every box of ``a`` (N, 4) against every box of ``b`` (M, 4), or with
    ``pairwise=True`` the (N,) IoUs of ``a[i]`` with ``b[i]`` (a and b of equal length).

    An empty or inverted box has area 0; a pair whose union is empty has IoU 0. ``dtype`` is the arithmetic's
    precision (float64; the YOLO key-frame pairing keeps float32, as its detections are).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"box convention must be 'exclusive' or 'inclusive', got {convention!r}")
    pad = 1.0 if convention == "inclusive" else 0.0
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    if pairwise:
        if len(a) != len(b):
            raise ValueError(f"pairwise IoU needs as many boxes in a as in b, got {len(a)} and {len(b)}")
        bb = b
    else:
        a, bb = a[:, None, :], b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], bb[..., 2]) - np.maximum(a[..., 0], bb[..., 0]) + pad, 0, None)
    ih = np.clip(np.minimum(a[..., 3], bb[..., 3]) - np.maximum(a[..., 1], bb[..., 1]) + pad, 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0] + pad, 0, None) * np.clip(a[..., 3] - a[..., 1] + pad, 0, None)
    area_b = np.clip(bb[..., 2] - bb[..., 0] + pad, 0, None) * np.clip(bb[..., 3] - bb[..., 1] + pad, 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
