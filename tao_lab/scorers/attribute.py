"""Attribute-based object scorer (after AIVAD, Reiss & Hoshen): one density model per attribute, fitted once.

For every attribute (a feature, optionally a subset of its columns) a density model is fitted on the training
objects, and an object's raw attribute score is
- ``gmm``: Gaussian-mixture negative log-likelihood (``tail="density"``), or, for a 1-D attribute,
  ``tail="upper"``: -log P(X >= x) under the mixture, which is ~0 for anything at or below the bulk of the
  training values and grows only for values above it (e.g. "faster than normal", not "slower than normal");
- ``knn``: mean distance to the k nearest training vectors (exact, squared L2 by default as in AIVAD);
- ``class``: rarity of the object's detected class among the training objects (``tao_lab.scorers.class_rarity``;
  reads the objects' ``cls`` column, not a feature; needs a detector with classes, e.g. ``detector=hybrid``).

Raw scores may be smoothed along each track (running median over ``track_window`` detections), then calibrated
on the training objects: ``(s - min) / (upper - min)`` with ``upper`` the ``upper_percentile`` of the training
scores. ``calibration="loo"`` computes the training scores leave-one-video-out (each training clip scored by
a model fitted without it: required for k-NN, whose in-sample 1-NN distance is 0); ``"in_sample"`` scores the
training objects with the model fitted on all of them (AIVAD's choice for velocity; for k-NN each training vector
then skips its own copy in the bank). So training objects score about [0, 1] per attribute. The object score is
the weighted sum of the calibrated attribute scores.

Frame score (per clip): max over the frame's objects of the object score (``frame_reduce="max"``), or AIVAD's sum
over attributes of the weighted per-attribute max (``"sum_of_max"``); a frame with no object gets 0, the
calibrated training minimum; then Gaussian smoothing along time with ``frame_sigma`` frames.

Every fitted quantity (mixture parameters, memory banks, calibration, the calibrated training object scores) is a
registered buffer: ``save_checkpoint`` / ``load_from_checkpoint`` restore the scorer exactly.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Mapping, Optional

import numpy as np
import torch
from scipy.special import log_ndtr, logsumexp

from tao_lab.scorers.base import FitItem, ObjectScorer
from tao_lab.scorers.common import frame_scores_from_objects, smooth_along_tracks, smooth_frame_scores
from tao_lab.types import ObjectScores, ObjectTable

log = logging.getLogger(__name__)

#: The default attributes (configs/scorer/attribute.yaml documents how they were chosen): velocity = the fastest
#: 8x8 px window of each object's flow (VelocityFeature column 2), a 2-component mixture scored by its upper tail,
#: in-sample calibration (AIVAD's choice for velocity), running median over 3 detections of the track;
#: velocity_mean = the same model over the mean speed of the object's moving pixels (column 0); and
#: appearance = exact 1-NN squared L2 over 16x16 grey thumbnails with leave-one-video-out calibration.
DEFAULT_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "velocity": {"feature": "velocity", "columns": [2], "model": "gmm", "components": 2, "tail": "upper",
                 "calibration": "in_sample", "weight": 1.0, "track_window": 3},
    "velocity_mean": {"feature": "velocity", "columns": [0], "model": "gmm", "components": 2, "tail": "upper",
                      "calibration": "in_sample", "weight": 1.0, "track_window": 3},
    "appearance": {"feature": "appearance", "model": "knn", "k": 1, "calibration": "loo", "weight": 1.0,
                   "track_window": 1},
}

_ATTR_DEFAULTS: dict[str, Any] = {
    "feature": None,            # key of the feature dict (default: the attribute's name)
    "columns": None,            # feature columns used (None = all)
    "model": "knn",             # "gmm" | "knn" | "class"
    "components": 2,            # gmm: mixture components
    "covariance": "full",       # gmm: covariance type ("full" | "diag")
    "tail": "density",          # gmm: "density" (NLL) | "upper" (1-D only: -log P(X >= x))
    "k": 1,                     # knn: neighbours averaged
    "metric": "sqeuclidean",    # knn: "sqeuclidean" | "euclidean"
    "max_bank": None,           # knn: keep at most this many training vectors (random subset, seeded)
    "calibration": "loo",       # "loo" (leave-one-video-out) | "in_sample"
    "upper_percentile": 99.9,   # calibration upper point (percentile of training scores; 100 = max)
    "weight": 1.0,              # weight in the object score
    "track_window": 1,          # running median of the raw score along the track (detections; 1 = off)
}


def _to_plain(obj):
    """OmegaConf containers (from Hydra) -> plain dict/list, so hyper-parameters pickle without omegaconf."""
    if hasattr(obj, "_content") or type(obj).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


class AttributeScorer(ObjectScorer):
    """Density models over per-object attributes with training-only calibration (see the module docstring).

    Args:
        attributes: {name: spec}; spec keys (all optional): feature, columns, model (gmm|knn), components,
            covariance, tail (density|upper), k, metric (sqeuclidean|euclidean), max_bank, calibration
            (loo|in_sample), upper_percentile, weight, track_window. None = :data:`DEFAULT_ATTRIBUTES`.
        frame_sigma: Gaussian smoothing of the frame scores along time (frames; 0 = none).
        frame_reduce: "max" (max over objects of the object score) | "sum_of_max" (AIVAD).
        seed: seeds the mixtures and the memory-bank subsampling.
    """

    def __init__(self, attributes: Optional[Mapping[str, Mapping[str, Any]]] = None, frame_sigma: float = 3.0,
                 frame_reduce: str = "max", seed: int = 0):
        super().__init__()
        attributes = copy.deepcopy(DEFAULT_ATTRIBUTES) if attributes is None else _to_plain(attributes)
        if not attributes:
            raise ValueError("AttributeScorer needs at least one attribute")
        if frame_reduce not in ("max", "sum_of_max"):
            raise ValueError(f"frame_reduce must be 'max' or 'sum_of_max', got {frame_reduce!r}")
        self.specs: dict[str, dict[str, Any]] = {}
        for name, spec in attributes.items():
            unknown = set(spec) - set(_ATTR_DEFAULTS)
            if unknown:
                raise ValueError(f"attribute {name!r}: unknown keys {sorted(unknown)}; known: {sorted(_ATTR_DEFAULTS)}")
            s = {**_ATTR_DEFAULTS, **spec}
            s["feature"] = s["feature"] or name
            if s["model"] not in ("gmm", "knn", "class"):
                raise ValueError(f"attribute {name!r}: model must be 'gmm', 'knn' or 'class', got {s['model']!r}")
            if s["calibration"] not in ("loo", "in_sample"):
                raise ValueError(f"attribute {name!r}: calibration must be 'loo' or 'in_sample'")
            if s["tail"] not in ("density", "upper"):
                raise ValueError(f"attribute {name!r}: tail must be 'density' or 'upper'")
            self.specs[name] = s
        self.frame_sigma = float(frame_sigma)
        self.frame_reduce = frame_reduce
        self.seed = int(seed)
        self.save_hyperparameters({"attributes": {k: dict(v) for k, v in attributes.items()},
                                   "frame_sigma": self.frame_sigma, "frame_reduce": frame_reduce, "seed": self.seed})
        for name, s in self.specs.items():
            if s["model"] == "knn":
                self.register_buffer(f"{name}__bank", torch.zeros(0, 0))
            elif s["model"] == "class":  # the fitted class table (tao_lab.scorers.class_rarity)
                self.register_buffer(f"{name}__class_classes", torch.zeros(0, dtype=torch.int64))
                self.register_buffer(f"{name}__class_nll", torch.zeros(0, dtype=torch.float64))
            else:
                self.register_buffer(f"{name}__gmm_w", torch.zeros(0, dtype=torch.float64))
                self.register_buffer(f"{name}__gmm_mu", torch.zeros(0, 0, dtype=torch.float64))
                self.register_buffer(f"{name}__gmm_cov", torch.zeros(0, 0, 0, dtype=torch.float64))
            self.register_buffer(f"{name}__calib", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("train_scores", torch.zeros(0))

    # ------------------------------------------------------------------ helpers
    def _inputs(self, name: str, objects: ObjectTable, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The attribute's (N, D) input: the objects' class column for ``model: class``, else its feature."""
        if self.specs[name]["model"] == "class":
            return objects.cls.astype(np.float64)[:, None]
        return self._matrix(name, features, len(objects))

    def _matrix(self, name: str, features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        s = self.specs[name]
        if s["feature"] not in features:
            raise KeyError(f"attribute {name!r} needs feature {s['feature']!r}; features given: {sorted(features)}")
        x = np.asarray(features[s["feature"]], np.float32)
        x = x.reshape(len(x), -1)
        if len(x) != n:
            raise ValueError(f"feature {s['feature']!r} has {len(x)} rows but there are {n} objects")
        if s["columns"] is not None:
            x = x[:, list(s["columns"])]
        return x

    def _fit_model(self, name: str, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Fits one attribute's density model on the finite rows of x; returns (model, indices of the rows used
        (the memory bank's rows for k-NN))."""
        s = self.specs[name]
        kept = np.flatnonzero(np.isfinite(x).all(axis=1))
        if len(kept) == 0:
            raise ValueError(f"attribute {name!r}: no finite training vectors to fit on")
        if s["model"] == "class":
            from tao_lab.scorers.class_rarity import fit_class_table

            return fit_class_table(x[kept, 0]), kept
        if s["model"] == "knn":
            if s["max_bank"] and len(kept) > int(s["max_bank"]):
                rng = np.random.default_rng(self.seed)
                kept = np.sort(rng.choice(kept, int(s["max_bank"]), replace=False))
            return {"bank": x[kept].astype(np.float32)}, kept
        from sklearn.mixture import GaussianMixture

        xk = x[kept]
        if s["tail"] == "upper" and xk.shape[1] != 1:
            raise ValueError(f"attribute {name!r}: tail='upper' needs a 1-D attribute, got {xk.shape[1]} columns")
        c = max(1, min(int(s["components"]), len(np.unique(xk, axis=0))))
        gm = GaussianMixture(c, covariance_type=s["covariance"], random_state=self.seed, reg_covar=1e-4).fit(xk)
        cov = gm.covariances_ if s["covariance"] == "full" else np.stack([np.diag(v) for v in gm.covariances_])
        return {"w": gm.weights_.astype(np.float64), "mu": gm.means_.astype(np.float64),
                "cov": cov.astype(np.float64)}, kept

    def _raw(self, name: str, model: dict[str, np.ndarray], x: np.ndarray,
             exclude: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
        """Raw scores (N,) float64; NaN for rows with non-finite features."""
        s = self.specs[name]
        out = np.full(len(x), np.nan)
        ok = np.isfinite(x).all(axis=1)
        if not ok.any():
            return out
        xv = x[ok].astype(np.float64)
        if s["model"] == "class":
            from tao_lab.scorers.class_rarity import class_rarity

            out[ok] = class_rarity(xv[:, 0], model["classes"], model["nll"])
        elif s["model"] == "gmm":
            out[ok] = _gmm_score(xv, model["w"], model["mu"], model["cov"], s["tail"])
        else:
            ex = None if exclude is None else (exclude[0][ok], exclude[1])
            out[ok] = _knn_score(xv.astype(np.float32), model["bank"], int(s["k"]), s["metric"], ex)
        return out

    def _model_from_buffers(self, name: str) -> dict[str, np.ndarray]:
        if self.specs[name]["model"] == "knn":
            return {"bank": getattr(self, f"{name}__bank").cpu().numpy()}
        if self.specs[name]["model"] == "class":
            return {k: getattr(self, f"{name}__class_{k}").cpu().numpy() for k in ("classes", "nll")}
        return {k: getattr(self, f"{name}__gmm_{k}").cpu().numpy() for k in ("w", "mu", "cov")}

    def _store(self, name: str, model: dict[str, np.ndarray]):
        for k, v in model.items():
            key = f"{name}__bank" if k == "bank" else f"{name}__{self._buffer_kind(name)}_{k}"
            setattr(self, key, torch.as_tensor(v, dtype=getattr(self, key).dtype))

    def _buffer_kind(self, name: str) -> str:
        return "class" if self.specs[name]["model"] == "class" else "gmm"

    # ------------------------------------------------------------------ fitting
    def fit_clips(self, items: list[FitItem]) -> "AttributeScorer":
        """Fits every attribute's density model and calibration on training clips (normal only).

        items: [(objects, features, num_frames)] per training clip; features as from ``extract_features``.
        """
        if not items:
            raise ValueError("fit_clips needs at least one training clip")
        objects = ObjectTable.concat([it[0] for it in items])
        video = np.concatenate([np.full(len(it[0]), v) for v, it in enumerate(items)])
        if len(objects) == 0:
            raise ValueError("the training clips contain no objects: nothing to fit the scorer on")
        # keep tracks of different clips apart when smoothing along tracks
        track_key = np.where(objects.track_id >= 0, objects.track_id + video * (1 << 32), -1)
        keyed = ObjectTable(objects.frame, objects.xyxy, objects.score, track_key, objects.cls)
        n_videos = len(items)
        total = np.zeros(len(objects))
        for name, s in self.specs.items():
            x = np.concatenate([self._inputs(name, it[0], it[1]) for it in items])
            model, kept = self._fit_model(name, x)
            self._store(name, model)
            loo = s["calibration"] == "loo"
            if loo and n_videos < 2:
                log.warning("attribute %r: leave-one-video-out calibration needs >= 2 training clips; "
                            "falling back to in-sample calibration", name)
                loo = False
            if s["model"] == "knn":
                # one distance pass over the bank, skipping bank rows of the query's own video (loo) or the query's
                # own row (in-sample: a vector is not its own neighbour)
                groups = video if loo else np.arange(len(x))
                raw = self._raw(name, model, x, exclude=(groups, groups[kept]))
            elif not loo:
                raw = self._raw(name, model, x)
            else:
                raw = np.full(len(x), np.nan)
                for v in range(n_videos):
                    held = video == v
                    if held.any() and not held.all():
                        raw[held] = self._raw(name, self._fit_model(name, x[~held])[0], x[held])
            raw = self._smooth(keyed, raw, s)
            finite = raw[np.isfinite(raw)]
            if len(finite) == 0:
                raise ValueError(f"attribute {name!r}: no finite training scores")
            lo = float(finite.min())
            hi = float(np.percentile(finite, float(s["upper_percentile"])))
            if not hi > lo:
                log.warning("attribute %r: training scores are constant (%.4g); calibration scale falls back to 1",
                            name, lo)
                hi = lo + 1.0
            setattr(self, f"{name}__calib", torch.tensor([lo, hi], dtype=torch.float64))
            total += float(s["weight"]) * self._calibrate(name, raw)
        self.train_scores = torch.as_tensor(total, dtype=torch.float32)
        self.fitted.fill_(True)
        return self

    def _smooth(self, objects: ObjectTable, raw: np.ndarray, s: dict) -> np.ndarray:
        w = int(s["track_window"])
        if w <= 1:
            return raw
        filled = np.where(np.isfinite(raw), raw, np.nan)
        return smooth_along_tracks(objects, filled, w).astype(np.float64)

    def _calibrate(self, name: str, raw: np.ndarray) -> np.ndarray:
        lo, hi = getattr(self, f"{name}__calib").cpu().numpy()
        cal = (raw - lo) / (hi - lo)
        return np.where(np.isfinite(cal), cal, 0.0)  # objects without this attribute (NaN features) score 0

    # ------------------------------------------------------------------ scoring
    def object_parts(self, objects: ObjectTable, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated per-attribute scores {name: (N,) float32} (about [0, 1] on training objects)."""
        self._require_fitted()
        parts = {}
        for name, s in self.specs.items():
            raw = self._raw(name, self._model_from_buffers(name), self._inputs(name, objects, features))
            parts[name] = self._calibrate(name, self._smooth(objects, raw, s)).astype(np.float32)
        return parts

    def score_clip(self, objects: ObjectTable, features: Mapping[str, np.ndarray], num_frames: int) -> ObjectScores:
        """Scores one clip: calibrated object scores, per-attribute parts and smoothed (T,) frame scores."""
        parts = self.object_parts(objects, features)
        score = np.zeros(len(objects), np.float32)
        for name, s in self.specs.items():
            score += np.float32(s["weight"]) * parts[name]
        if self.frame_reduce == "max":
            frame = frame_scores_from_objects(objects.frame, score, num_frames)
        else:
            frame = np.zeros(int(num_frames), np.float32)
            for name, s in self.specs.items():
                frame += np.float32(s["weight"]) * frame_scores_from_objects(objects.frame, parts[name], num_frames)
        return ObjectScores(objects.with_score(score), smooth_frame_scores(frame, self.frame_sigma), parts)

    def train_object_scores(self) -> np.ndarray:
        """Calibrated scores (N,) float32 of the training objects, computed as the calibration was (per attribute:
        leave-one-video-out for ``calibration: loo``, in-sample for ``in_sample``); fit thresholds on these."""
        self._require_fitted()
        return self.train_scores.cpu().numpy().copy()


def _gmm_score(x: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, tail: str) -> np.ndarray:
    """Mixture NLL (tail='density') or -log P(X >= x) (tail='upper', 1-D) of rows x (N, D)."""
    if tail == "upper":
        sd = np.sqrt(cov[:, 0, 0])
        z = (x[:, :1] - mu[None, :, 0]) / sd[None, :]  # (N, C)
        return -logsumexp(np.log(w)[None, :] + log_ndtr(-z), axis=1)
    n, d = x.shape
    logp = np.empty((n, len(w)))
    for c in range(len(w)):
        chol = np.linalg.cholesky(cov[c])
        sol = np.linalg.solve(chol, (x - mu[c]).T)  # (D, N)
        logdet = 2 * np.log(np.diag(chol)).sum()
        logp[:, c] = np.log(w[c]) - 0.5 * (d * np.log(2 * np.pi) + logdet + (sol ** 2).sum(axis=0))
    return -logsumexp(logp, axis=1)


def _knn_score(x: np.ndarray, bank: np.ndarray, k: int, metric: str,
               exclude: Optional[tuple[np.ndarray, np.ndarray]] = None, chunk: int = 2048) -> np.ndarray:
    """Mean distance of each row of x (N, D) to its k nearest rows of bank (M, D), exact, chunked (torch matmul).

    exclude=(query_group (N,), bank_group (M,)): bank rows of the query's own group are skipped (leave-one-out).
    """
    if len(bank) == 0:
        raise ValueError("empty k-NN memory bank")
    b = torch.from_numpy(np.ascontiguousarray(bank, np.float32))
    bn = (b * b).sum(1)
    out = np.empty(len(x))
    kk = min(k, len(bank))
    for s in range(0, len(x), chunk):
        q = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], np.float32))
        d = (q * q).sum(1, keepdim=True) + bn[None, :] - 2 * q @ b.T
        d.clamp_(min=0)
        if exclude is not None:
            qg = torch.from_numpy(np.asarray(exclude[0][s:s + chunk]))
            bg = torch.from_numpy(np.asarray(exclude[1]))
            d.masked_fill_(qg[:, None] == bg[None, :], float("inf"))
        v = torch.topk(d, kk, dim=1, largest=False).values
        if metric == "euclidean":
            v = v.sqrt()
        elif metric != "sqeuclidean":
            raise ValueError(f"unknown k-NN metric {metric!r}: expected 'sqeuclidean' or 'euclidean'")
        out[s:s + len(q)] = v.double().mean(1).numpy()
    return out
