"""The inputs of the temporal MAE scorer: which feature groups it reads (input specs), the raw (N, D) row matrix
in the fitted group order, and the per-column standardisation fitted on the training rows.

A group's spec (``inputs.<group>`` of configs/scorer/temporal_mae.yaml) says which entry of the features dict it
reads (``feature``), which ``columns``, how many ``tokens`` the learned pooling splits it into, its ``weight`` in
the reconstruction error, whether it is ``optional`` (skipped when the features stage does not provide it) and its
``std_floor`` (each column is standardised by its training std, but at least std_floor x the root-mean-square std
of the group: for groups in one unit, such as velocity's px/frame columns; 0 = plain per-column std).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import numpy as np

from tao_lab.config import to_plain
from tao_lab.scorer.base import FitItem

#: Default input feature groups. ``optional: true`` groups are used when the features stage provides them.
DEFAULT_INPUTS: dict[str, dict[str, Any]] = {
    "velocity": {"columns": None, "tokens": 1, "weight": 1.0, "optional": False, "std_floor": 0.25},
    "geometry": {"columns": None, "tokens": 1, "weight": 1.0, "optional": True},
    "appearance": {"columns": None, "tokens": 4, "weight": 1.0, "optional": True},
    "deep": {"columns": None, "tokens": 4, "weight": 1.0, "optional": True},
}
#: Every key of a group's spec and its default.
SPEC_DEFAULTS = {"feature": None, "columns": None, "tokens": 1, "weight": 1.0, "optional": True, "std_floor": 0.0}


def input_specs(inputs: Optional[Mapping[str, Mapping[str, Any]]]) -> tuple[dict, dict[str, dict[str, Any]]]:
    """(the inputs as plain dicts, {group: complete spec}) from the ``inputs`` argument (None = the defaults);
    unknown keys and a std_floor outside [0, 1] are refused with the group's name."""
    inputs = copy.deepcopy(DEFAULT_INPUTS) if inputs is None else to_plain(inputs)
    if not inputs:
        raise ValueError("TemporalMaeScorer needs at least one input feature group")
    specs: dict[str, dict[str, Any]] = {}
    for name, spec in inputs.items():
        unknown = set(spec or {}) - set(SPEC_DEFAULTS)
        if unknown:
            raise ValueError(f"input {name!r}: unknown keys {sorted(unknown)}; known: {sorted(SPEC_DEFAULTS)}")
        s = {**SPEC_DEFAULTS, **(spec or {})}
        s["feature"] = s["feature"] or name
        if not 0.0 <= float(s["std_floor"]) <= 1.0:
            raise ValueError(f"input {name!r}: std_floor must be in [0, 1], got {s['std_floor']!r}")
        specs[name] = s
    return inputs, specs


def group_matrix(spec: Mapping[str, Any], features: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
    """(N, D_group) float32 columns of one input group, None when the features dict lacks it."""
    if spec["feature"] not in features:
        return None
    x = np.asarray(features[spec["feature"]], np.float32)
    x = x[:, None] if x.ndim == 1 else x
    return x[:, list(spec["columns"])] if spec["columns"] is not None else x


def discover_dims(specs: Mapping[str, Mapping[str, Any]], items: list[FitItem]) -> dict[str, int]:
    """{group: columns} of the groups the training clips provide (a required group missing is an error)."""
    dims: dict[str, int] = {}
    for name, s in specs.items():
        present = [s["feature"] in it[1] for it in items]
        if not any(present):
            if s["optional"]:
                continue
            raise KeyError(f"input {name!r} needs feature {s['feature']!r}; the features stage gives "
                           f"{sorted(items[0][1])}: add it to the features config or mark it optional")
        if not all(present):
            raise KeyError(f"feature {s['feature']!r} is missing from some training clips")
        dims[name] = int(group_matrix(s, items[0][1]).shape[1])
    if not dims:
        raise ValueError(f"none of the input groups {sorted(specs)} is among the features given")
    return dims


def feature_matrix(specs: Mapping[str, Mapping[str, Any]], dims: Mapping[str, int],
                   features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """(n, D) raw feature matrix of the fitted groups ``dims``, in the fitted order."""
    parts = []
    for name, d in dims.items():
        x = group_matrix(specs[name], features)
        if x is None:
            raise KeyError(f"the scorer was trained with feature {specs[name]['feature']!r} "
                           f"(input {name!r}); features given: {sorted(features)}")
        if x.shape != (n, d):
            raise ValueError(f"feature {specs[name]['feature']!r} has shape {x.shape}, the scorer was "
                             f"trained with {(n, d)}: use the features config it was trained with")
        parts.append(x)
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)


def fit_standardisation(x: np.ndarray, specs: Mapping[str, Mapping[str, Any]],
                        dims: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column of the training rows ``x`` (non-finite values ignored), each std at least
    ``std_floor`` x the root-mean-square std of its group; constant columns get unit scale."""
    x = x.astype(np.float64)
    ok = np.isfinite(x)
    cnt = np.maximum(ok.sum(0), 1)
    mean = np.where(ok, x, 0).sum(0) / cnt
    var = np.where(ok, (x - mean) ** 2, 0).sum(0) / cnt
    start = 0
    for name, d in dims.items():
        floor = float(specs[name]["std_floor"])
        if floor > 0:
            # columns in one unit (e.g. px/frame): a rarely used orientation bin with a tiny spread would
            # otherwise turn every object moving that way into a 100-sigma outlier
            var[start:start + d] = np.maximum(var[start:start + d], floor ** 2 * var[start:start + d].mean())
        start += d
    std = np.sqrt(var)
    # constant columns would divide by ~0: give them unit scale
    std = np.where(std > 1e-6 * max(1.0, float(std.max()) if std.size else 1.0), std, 1.0)
    return mean, std


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std as float32; missing (non-finite) features become the training mean (0)."""
    z = (x - mean) / std
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32)
