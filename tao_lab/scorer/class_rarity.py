"""Class rarity: how unusual an object's detected class is among the training objects (no labels needed).

A class-aware detector (``detector=yolo`` / ``hybrid``) says what each object is. In a pedestrian scene nearly
every training object is a person (or, with ``hybrid``, an ``unknown`` blob); a bicycle, car or truck in a test
clip is then rare by construction. The raw score of an object is the negative log of its class's training
frequency with add-one (Laplace) smoothing, so a class never seen in training gets a finite, highest score:

    nll(c) = -log((n_c + 1) / (N + K + 1)),   unseen: -log(1 / (N + K + 1))

with n_c the training objects of class c, N all training objects, K the classes seen. The attribute scorer
calibrates it like any attribute, and its ``track_window`` (running median along the track) turns it into the
rarity of the track's class history: a walker mislabelled "truck" in one frame keeps the walker's score, a cart
seen as "truck" in most frames scores high on all of them.

The fitted table is two arrays (stored by the scorer as buffers): the sorted class ids seen in training and their
nll, with the unseen-class nll appended.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def fit_class_table(cls: np.ndarray) -> dict[str, np.ndarray]:
    """{"classes": (K,) int64 sorted class ids, "nll": (K+1,) float64 (last = a class unseen in training)}."""
    cls = np.asarray(cls).reshape(-1)
    cls = cls[np.isfinite(cls)].astype(np.int64)
    if len(cls) == 0:
        raise ValueError("class attribute: no training objects to count classes on")
    classes, counts = np.unique(cls, return_counts=True)
    denom = float(len(cls) + len(classes) + 1)
    nll = -np.log(np.append(counts + 1.0, 1.0) / denom)
    return {"classes": classes.astype(np.int64), "nll": nll.astype(np.float64)}


def class_rarity(cls: np.ndarray, classes: np.ndarray, nll: np.ndarray) -> np.ndarray:
    """Raw rarity (N,) float64 of objects of class ``cls`` under a table from :func:`fit_class_table`."""
    cls = np.asarray(cls).reshape(-1).astype(np.int64)
    classes = np.asarray(classes, np.int64).reshape(-1)
    nll = np.asarray(nll, np.float64).reshape(-1)
    if len(classes) == 0:
        return np.full(len(cls), nll[-1] if len(nll) else np.nan)
    idx = np.clip(np.searchsorted(classes, cls), 0, len(classes) - 1)
    seen = classes[idx] == cls
    return np.where(seen, nll[idx], nll[-1])


def class_attributes(scorer_cfg: Mapping[str, Any]) -> list[str]:
    """Names of the scorer config's attributes that use the class model (``model: class``)."""
    attrs = (scorer_cfg or {}).get("attributes") or {}
    return [str(n) for n, spec in attrs.items() if spec is not None and (spec or {}).get("model") == "class"]


def check_detector_has_classes(scorer_cfg: Mapping[str, Any], detector_cfg: Mapping[str, Any]) -> None:
    """Refuses a ``class`` attribute with a class-agnostic detector (whose ``cls`` is always 0, so every object
    would be the same class and the attribute would silently score nothing). Call before fitting."""
    names = class_attributes(scorer_cfg)
    if not names:
        return
    from hydra.utils import get_class

    target = str(detector_cfg.get("_target_", ""))
    if not getattr(get_class(target), "has_classes", False):
        raise ValueError(
            f"scorer attribute(s) {names} score the object's class, but the detector {target} is class-agnostic "
            f"(every box has class 0). Use a detector that knows classes: detector=yolo or detector=hybrid (with "
            f"paths.weights_dir=../shared/weights), or drop the attribute (~scorer.attributes.{names[0]}).")
