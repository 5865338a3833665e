"""The scorer interface: a LightningModule fitted on training clips that scores the objects of a clip.

Implementations: :class:`tao_lab.scorers.attribute.AttributeScorer` (density models, fit once) and a temporal
MAE scorer (trained). The pipeline calls only:

- ``fit_clips(items)`` with ``items = [(objects, features, num_frames), ...]`` of the training (normal) clips;
- ``score_clip(objects, features, num_frames) -> ObjectScores``;
- ``train_object_scores() -> (N,) float32``: calibrated scores of the training objects, to fit a threshold on;
- ``save_checkpoint(path)`` / ``load_from_checkpoint(path)``.

Fitted state lives in registered buffers so a checkpoint restores it. Buffers whose shape is only known after
fitting are registered empty; ``_load_from_state_dict`` resizes them to the checkpoint's shapes before loading.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import lightning
import numpy as np
import torch

from tao_lab.types import ObjectScores, ObjectTable

FitItem = tuple[ObjectTable, dict[str, np.ndarray], int]


class ObjectScorer(lightning.LightningModule):
    """Base class of object scorers (see the module docstring for the contract)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ the contract
    def fit_clips(self, items: list[FitItem]) -> "ObjectScorer":  # pragma: no cover - interface
        raise NotImplementedError

    def score_clip(self, objects: ObjectTable, features: dict[str, np.ndarray],
                   num_frames: int) -> ObjectScores:  # pragma: no cover - interface
        raise NotImplementedError

    def train_object_scores(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit_clips(train_items) or load a "
                               f"checkpoint with {type(self).__name__}.load_from_checkpoint(path)")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Writes a Lightning-compatible checkpoint (state_dict, hyper_parameters, pytorch-lightning_version)."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        ckpt: dict[str, Any] = {
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            self.CHECKPOINT_HYPER_PARAMS_KEY: dict(self.hparams),
            "pytorch-lightning_version": lightning.__version__,
            "epoch": 0,
            "global_step": 0,
        }
        self.on_save_checkpoint(ckpt)
        # atomic: parallel sweep jobs may write the same cached fit, and a reader must never see half a file
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            torch.save(ckpt, tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

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
