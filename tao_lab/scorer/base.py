"""The scorer interface: a LightningModule fitted on training clips that scores the objects of a clip.

Implementations: :class:`tao_lab.scorer.attribute.AttributeScorer` (density models, fit once) and a temporal
MAE scorer (trained). The pipeline calls only:

- ``fit_clips(items)`` with ``items = [(objects, features, num_frames), ...]`` of the training (normal) clips;
- ``score_clip(objects, features, num_frames, held_out=None) -> ObjectScores``; ``held_out`` is the index of the
  fit item being scored when a scorer scores its own fit clips (``training.mode=unsupervised``); online,
  ``stream(window)`` (per frame, by default ``score_clip`` on a ring buffer of the last frames: tao_lab.scorer.stream);
- ``train_object_scores() -> (N,) float32``: calibrated scores of the training objects, to fit a threshold on;
- ``save_checkpoint(path)`` / ``load_from_checkpoint(path)``: always with ``weights_only=True`` (tensors and plain
  values only); a file that is not this scorer's checkpoint is refused with a :class:`CheckpointError` naming it.
  ``fit_resolution`` (set by the pipeline when it fits, kept in the checkpoint): the camera size and object scale the
  training clips were processed at, so a run from the checkpoint processes its camera the same way
  (:func:`tao_lab.dataset.object_scale.checkpoint_object_scale`).

What a scorer can do is declared as class attributes (:class:`ObjectScorer` lists them with their defaults), so
the pipeline, the validation and the benchmarks read them from the configured class before building it, instead of
probing instances: ``needs_trainer``, ``trainer_factory``, ``supports_unlabeled``, ``cache_version``; after a
fit, ``fit_metrics`` holds the fit's statistics (empty for a fit-once scorer).

Fitted state lives in registered buffers so a checkpoint restores it. Buffers whose shape is only known after
fitting are registered empty; ``_load_from_state_dict`` resizes them to the checkpoint's shapes before loading.
"""
from __future__ import annotations

import functools
import io
import os
from typing import Any, Optional

import lightning
import numpy as np
import torch

from tao_lab.checkpoints import CheckpointError, load_weights, read_bytes
from tao_lab.renamed_modules import current_name
from tao_lab.types import ObjectScores, ObjectTable

#: Checkpoint key naming the scorer class that wrote it (module.qualname), so another model's file is refused.
SCORER_CLASS_KEY = "tao_lab_scorer"
#: Checkpoint key of the scorer's ``fit_resolution`` (absent in checkpoints written before it existed).
FIT_RESOLUTION_KEY = "tao_lab_fit_resolution"

FitItem = tuple[ObjectTable, dict[str, np.ndarray], int]


class ObjectScorer(lightning.LightningModule):
    """Base class of object scorers (see the module docstring for the contract)."""

    # ------------------------------------------------------------------ capabilities (class attributes)
    #: ``fit_clips`` takes ``trainer=``: the pipeline builds ``cfg.trainer`` for it (a fit-once scorer takes none,
    #: and the planted-anomaly validation, which refits once per held-out clip, supports only those).
    needs_trainer: bool = False
    #: With ``needs_trainer``: ``trainer=`` is a zero-argument factory of Trainers, for a scorer that fits more than
    #: once (self-paced rounds); otherwise one ``lightning.Trainer``.
    trainer_factory: bool = False
    #: ``fit_clips(..., unlabeled=True)`` fits on unlabeled clips that may hold anomalies
    #: (``training.mode=unsupervised``); a scorer without it is fitted on them as if they were normal.
    supports_unlabeled: bool = False
    #: Bump in a subclass when its code starts fitting or scoring differently for the same config: the number joins
    #: the cache key of its fits (tao_lab.pipeline.Pipeline.scorer_spec), so old cached fits are not reused.
    cache_version: int = 1

    def __init__(self):
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        #: statistics of the last fit ({name: number}; train.py logs them as train/<name>)
        self.fit_metrics: dict[str, float] = {}
        #: how the fit clips were processed ({"camera_size": [h, w], "object_scale": f};
        #: tao_lab.dataset.object_scale.fit_resolution), None when unknown; saved with the checkpoint
        self.fit_resolution: Optional[dict] = None

    # ------------------------------------------------------------------ the contract
    def fit_clips(self, items: list[FitItem]) -> "ObjectScorer":  # pragma: no cover - interface
        raise NotImplementedError

    def score_clip(self, objects: ObjectTable, features: dict[str, np.ndarray], num_frames: int,
                   held_out: Optional[int] = None) -> ObjectScores:  # pragma: no cover - interface
        """``held_out``: the index in ``fit_clips``' items of the clip being scored, when it is one of the clips the
        scorer was fitted on (unsupervised mode); a scorer that keeps training objects as references (a k-NN memory
        bank) must leave that clip's own objects out, or each object matches itself."""
        raise NotImplementedError

    def train_object_scores(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def stream(self, window: int):
        """The per-frame form (online): a :class:`tao_lab.scorer.stream.ScorerStream` whose ``step(index,
        objects, features)`` scores a ring buffer of the last ``window`` frames with :meth:`score_clip`."""
        from tao_lab.scorer.stream import ScorerStream

        return ScorerStream(self, window)

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit_clips(train_items) or load a "
                               f"checkpoint with {type(self).__name__}.load_from_checkpoint(path)")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Writes a Lightning-compatible checkpoint (state_dict, hyper_parameters, pytorch-lightning_version),
        atomically: a run killed while writing leaves the previous file (or none), never a truncated one."""
        from tao_lab.artifacts import atomic_path

        ckpt: dict[str, Any] = {
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            self.CHECKPOINT_HYPER_PARAMS_KEY: dict(self.hparams),
            "pytorch-lightning_version": lightning.__version__,
            "epoch": 0,
            "global_step": 0,
            SCORER_CLASS_KEY: _class_path(type(self)),
        }
        if self.fit_resolution is not None:
            ckpt[FIT_RESOLUTION_KEY] = dict(self.fit_resolution)
        self.on_save_checkpoint(ckpt)
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: Any = "cpu",
                             hparams_file: Any = None, strict: Any = None, weights_only: bool = True, **kwargs):
        """Lightning's ``load_from_checkpoint`` with ``weights_only=True`` always, after checking that the file is a
        checkpoint of this scorer class (CheckpointError naming the file and what was expected otherwise)."""
        if weights_only is not True:
            raise ValueError("scorer checkpoints hold only tensors and plain values: they are always loaded with "
                             "weights_only=True (an unrestricted unpickle could run code from the file)")
        path = os.fspath(checkpoint_path)
        expected = (f"a checkpoint of {cls.__name__} written by train.py (scorer.ckpt in its run dir) or by "
                    f"save_checkpoint: a dict with state_dict and hyper_parameters")
        data = read_bytes(path, expected)
        ckpt = load_weights(path, expected, data)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or cls.CHECKPOINT_HYPER_PARAMS_KEY not in ckpt:
            what = (f"a plain dict with keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, dict)
                    else f"a {type(ckpt).__name__}")
            raise CheckpointError(f"{path} holds {what}, not a scorer checkpoint; expected {expected}")
        saved = ckpt.get(SCORER_CLASS_KEY)
        if saved is not None:  # a checkpoint written before a module rename names the class by its old path
            saved = current_name(str(saved))
        if saved is not None and saved != _class_path(cls):
            raise CheckpointError(f"{path} is a checkpoint of {saved}, not of {_class_path(cls)}: set scorer= to the "
                                  f"config that wrote it (see its run's config_resolved.yaml) or give a checkpoint of "
                                  f"{cls.__name__}")
        try:
            model = super().load_from_checkpoint(io.BytesIO(data), map_location=map_location,
                                                 hparams_file=hparams_file, strict=strict, weights_only=True,
                                                 **kwargs)
        except Exception as exc:  # another model's file without a class tag: wrong hparams or weights
            raise CheckpointError(f"cannot restore {cls.__name__} from {path} ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}); expected {expected}") from exc
        model.fit_resolution = _fit_resolution(ckpt.get(FIT_RESOLUTION_KEY))
        return model

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # buffers sized at fit time (memory banks, mixtures) start empty: take the checkpoint's shapes
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if buf is not None and key in state_dict and state_dict[key].shape != buf.shape:
                self._buffers[name] = torch.empty_like(state_dict[key], dtype=buf.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # a fit-once scorer has no optimizer; trained scorers override these
    def configure_optimizers(self):
        return None

    def training_step(self, batch, batch_idx):  # pragma: no cover - fit-once scorers never train
        raise NotImplementedError(f"{type(self).__name__} is fitted with fit_clips(), not with a Trainer")


def _fit_resolution(record: Any) -> Optional[dict]:
    """A checkpoint's ``fit_resolution`` record as {"camera_size": [h, w], "object_scale": f}, or None when it has
    none or an unreadable one."""
    try:
        h, w = (int(v) for v in record["camera_size"])
        return {"camera_size": [h, w], "object_scale": float(record["object_scale"])}
    except (TypeError, KeyError, ValueError):
        return None


def checkpoint_fit_resolution(path: str | os.PathLike) -> Optional[dict]:
    """The ``fit_resolution`` a scorer checkpoint at ``path`` records (None when it records none); the file is read
    as :meth:`ObjectScorer.load_from_checkpoint` reads it (CheckpointError when it is missing or no torch file), once
    per version of the file: a run asks for it once per split it reads."""
    stat = os.stat(path) if os.path.isfile(path) else None
    if stat is None:
        return _read_fit_resolution(os.fspath(path), 0, 0)  # raises, naming the file
    record = _read_fit_resolution(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    return None if record is None else {**record, "camera_size": list(record["camera_size"])}


@functools.lru_cache(maxsize=8)
def _read_fit_resolution(path: str, mtime_ns: int, size: int) -> Optional[dict]:
    # mtime_ns and size key the cache: a checkpoint written again is read again
    expected = "a scorer checkpoint written by train.py (scorer.ckpt in its run dir)"
    ckpt = load_weights(path, expected)
    return _fit_resolution(ckpt.get(FIT_RESOLUTION_KEY)) if isinstance(ckpt, dict) else None


def scorer_class(target: str) -> type[ObjectScorer]:
    """The scorer class a config's ``scorer._target_`` names, checked to be an :class:`ObjectScorer` (whose
    capabilities are read from it before it is built)."""
    from hydra.utils import get_class

    cls = get_class(str(target))
    if not (isinstance(cls, type) and issubclass(cls, ObjectScorer)):
        from tao_lab.user_errors import ConfigError

        raise ConfigError(f"scorer._target_={target!r} is not an ObjectScorer (tao_lab.scorer.base): a scorer "
                          f"subclasses it, which declares what it needs (needs_trainer, supports_unlabeled, ...)")
    return cls


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
