"""Cross-check of a clip's frame labels against its pixel masks (both are ground truth; they must agree).

A frame is anomalous exactly when its mask is non-empty, in every dataset this project reads (UCSD's .m ranges
and TestNNN_gt masks agree on all 2010 Ped2 test frames; Avenue and ShanghaiTech derive one from the other). A
disagreement means labels and masks were edited or copied separately, so the metrics would mix two different
ground truths: refuse by default, or warn when the user says the difference is known (``on_mismatch='warn'``).
"""
from __future__ import annotations

import logging

import numpy as np

from tao_lab.dataset.errors import DataError

log = logging.getLogger(__name__)

MODES = ("error", "warn")


def check_mode(on_mismatch: str) -> str:
    mode = str(on_mismatch).lower()
    if mode not in MODES:
        raise ValueError(f"metrics.label_mask_mismatch must be one of {MODES}, got {on_mismatch!r}")
    return mode


def check_labels_match_masks(labels: np.ndarray, mask_nonempty: np.ndarray, where: str,
                             on_mismatch: str = "error") -> int:
    """Compares (T,) frame labels with (T,) "mask has a pixel" flags; returns the number of disagreeing frames.

    Raises DataError naming ``where`` (the clip and its label/mask files) and the first disagreeing frames when
    ``on_mismatch='error'``; logs a warning instead with ``'warn'``.
    """
    mode = check_mode(on_mismatch)
    labels = np.asarray(labels, bool).reshape(-1)
    nonempty = np.asarray(mask_nonempty, bool).reshape(-1)
    if len(labels) != len(nonempty):
        raise DataError(f"{where}: {len(labels)} frame labels but {len(nonempty)} masks")
    bad = np.flatnonzero(labels != nonempty)
    if not len(bad):
        return 0
    only_label = int(np.sum(labels & ~nonempty))
    only_mask = int(np.sum(~labels & nonempty))
    first = ", ".join(f"{i} ({'labelled anomalous, empty mask' if labels[i] else 'labelled normal, mask not empty'})"
                      for i in bad[:3])
    msg = (f"{where}: frame labels and pixel masks disagree on {len(bad)} of {len(labels)} frames "
           f"({only_label} labelled anomalous with an empty mask, {only_mask} labelled normal with a non-empty mask; "
           f"first, 0-based: {first}). Fix the label file or the masks so they describe the same frames")
    if mode == "error":
        raise DataError(msg + ", or set metrics.label_mask_mismatch=warn to evaluate anyway")
    log.warning("%s (metrics.label_mask_mismatch=warn: evaluating anyway; frame metrics use the labels, pixel "
                "and object metrics the masks)", msg)
    return len(bad)
