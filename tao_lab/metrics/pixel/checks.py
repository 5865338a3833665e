"""The input contract of the pixel metrics: one frame's score map and GT mask, checked and the mask made boolean."""
from __future__ import annotations

import numpy as np


def check_frame(score_map, gt_mask, where: str) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score_map)
    mask = np.asarray(gt_mask)
    if score.ndim != 2:
        raise ValueError(f"{where}: score map must be 2-D (H, W), got shape {score.shape}")
    if mask.shape != score.shape:
        raise ValueError(f"{where}: GT mask shape {mask.shape} != score map shape {score.shape}")
    if score.dtype.kind not in "fiub":
        raise ValueError(f"{where}: score map must be real-valued, got dtype {score.dtype}")
    if score.dtype.kind == "f" and not np.isfinite(score).all():
        raise ValueError(f"{where}: score map contains NaN or inf values")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iub":
            raise ValueError(f"{where}: GT mask must be boolean (or integer, nonzero = anomalous), "
                             f"got dtype {mask.dtype}")
        mask = mask != 0
    return score, mask
