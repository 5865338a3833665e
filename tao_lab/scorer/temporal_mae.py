"""Temporal masked-autoencoder object scorer: a transformer over per-track feature sequences (after TRAP).

The scorer is split by job, the way anomalib splits a model:

- this module: :class:`TemporalMaeScorer`, the LightningModule (losses, training and validation steps, optimiser,
  callbacks, deterministic errors, scoring, checkpoints);
- :mod:`tao_lab.scorer.mae_modules`: the torch model (token pooling, transformer encoder, heads, masks, losses);
- :mod:`tao_lab.scorer.mae_inputs`: the input feature groups, the row matrix and its standardisation;
- :mod:`tao_lab.scorer.mae_windows`: track sequences cut into windows, the scoring mask patterns;
- :mod:`tao_lab.scorer.mae_training`: the validation split, the Trainers and the fit loop with self-paced
  refinement (:mod:`tao_lab.scorer.spr`) on unlabeled clips;
- :mod:`tao_lab.scorer.calibration`: the percentile calibration shared with the attribute scorer, and the context
  reference of the reconstruction error.

What it learns
--------------
Every tracked object carries per-frame features from the features stage (velocity, box geometry, appearance,
deep features when configured). The rows of one track, in frame order, form a sequence; sequences are cut into
windows of ``window`` (T) rows every ``stride`` rows. Per row, the feature columns are standardised with means and
stds fitted on the training rows (buffers ``feat_mean``/``feat_std``; one std per column, floored at a fraction
of the group's typical std, see ``inputs.<group>.std_floor``), clipped to +-``input_clip``, split into tokens and
pooled into one embedding by a learned pooling (``gap``, ``attention`` with learned queries, or ``hybrid``;
trained and saved with the model, so train and test embeddings come from the same weights). A transformer encoder
with sinusoidal positional encoding sees the window with ``mask_ratio`` of its positions replaced by a learned
mask token.

Losses (weights ``loss_weights``): ``reconstruction`` = error of the standardised features at the masked positions
(per feature group mean squared error, averaged over groups with the ``inputs.<group>.weight``s, so a 256-d
appearance vector does not drown a 10-d velocity vector); ``contrastive`` = InfoNCE between neighbouring steps of
the per-frame embeddings (temperature ``temperature``; a step must pick its own next step among the next steps of
the other windows of the batch; windows of the same track are not negatives); ``forecast`` (optional, weight > 0
turns it on) = a separate head predicts the last ``forecast_steps`` rows of each window, which are hidden from the
encoder.

Training (:meth:`TemporalMaeScorer.fit_clips`) runs a Lightning ``Trainer`` (the pipeline's ``cfg.trainer``) with a
validation split of *held-out training clips* (``val_fraction`` of the clips, at least one; with a single clip,
the last ``val_fraction`` of its frames), ``EarlyStopping`` and ``ModelCheckpoint`` on ``val/loss``; the best
weights are restored after the fit. Validation masks are drawn from a fixed seed so ``val/loss`` does not jitter
with the masks. Unlabeled video (``fit_clips(..., unlabeled=True)``, i.e. ``training.mode=unsupervised``) is fitted
in self-paced rounds (:mod:`tao_lab.scorer.mae_training`).

Scoring
-------
Deterministic: each window is passed P = round(1 / (1 - mask_ratio)) times with interleaved fixed masks (pattern k
keeps positions t % P == k visible: the same masking ratio as in training and every position masked P-1 times).
Raw object components:

- ``reconstruction``: mean error of the row over every window and pattern in which it was masked (same grouped
  error as the loss, but the target is not clipped, so values far outside the training range cost in full);
- ``consistency``: temporal (in)consistency, how much the object changes from one row of its track to the next
  (mean over the previous and the next row), measured in ``consistency_space``: ``features`` (default: the same
  group-weighted squared error, between the standardised features of neighbouring rows), ``embedding`` (1 - cos of
  the pooled embeddings, as TRAP does with its tokens) or ``projection`` (1 - cos of the contrastive projections;
  the learned spaces are trained to be invariant between neighbouring steps, which is why ``features`` is the
  default);
- ``forecast`` (only when its score weight > 0): error of the forecast head on the row, over the windows that end
  with it.

Short tracks (fewer than T rows) are one padded window (attention ignores the padding); untracked objects
(track_id -1) are windows of length 1: their reconstruction comes from the mask token and the positional encoding
alone, i.e. the distance to what a typical training object looks like. Less context means larger errors for normal
objects too, so with ``context_norm`` the reconstruction error is divided by ``rec_ref[c]``, the median error of
calibration objects with the same c = min(track length, T) rows of context, relative to a full window (made
non-increasing in c). Components a row cannot have (consistency of a lone row, forecast of a track's first rows)
take the median of the calibration rows. Each component is then smoothed along the track (running median over
``track_window`` rows; :func:`smooth_along_tracks`) and calibrated on training data only: ``(s - min) / (p - min)``
with ``p`` the ``upper_percentile`` of the calibration scores, which are the scores of the *held-out validation
clips* (in-sample training errors are optimistic). On unlabeled clips the calibration leaves out the
``self_paced.drop[-1]`` fraction of the validation objects with the largest reconstruction error (they may be
anomalies; otherwise the scale, and a fixed threshold on it, would be set by them). So a typical training
object scores about 0 and the training tail about 1 per component. The object score is
``sum_c score_weights[c] * calibrated_c`` (defaults 0.8 reconstruction + 0.2 consistency: the weights sum to 1, so
the object score keeps the 0..1 training scale). Frame score: max over the frame's objects (0 without objects),
Gaussian-smoothed along time with ``frame_sigma`` frames (as the attribute scorer does).

The defaults (self-paced schedule, score weights, ``std_floor``) were chosen on training data only (never on test
labels); the measurements behind them are in docs/MEASUREMENTS.md.

Checkpoints: the feature layout found at fit time (``input_dims``) is a hyper-parameter, so
``load_from_checkpoint`` rebuilds the same network; normalisation, calibration and the calibrated training scores
are buffers. ``save_checkpoint``/``load_from_checkpoint`` round-trip to identical scores.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Optional

import numpy as np
import torch

from tao_lab.config import to_plain
from tao_lab.scorer.base import FitItem, ObjectScorer
from tao_lab.scorer.calibration import calibrate, context_reference, percentile_range
from tao_lab.scorer.common import frame_scores_from_objects, smooth_along_tracks, smooth_frame_scores
from tao_lab.scorer.mae_inputs import (discover_dims, feature_matrix, fit_standardisation, input_specs,
                                        standardise)
from tao_lab.scorer.mae_modules import (TemporalMaeNet, future_mask, grouped_error, neighbour_info_nce,
                                         random_mask)
from tao_lab.scorer.mae_training import fit_in_rounds, split_clips
from tao_lab.scorer.mae_windows import interleaved_masks, make_windows, scatter_mean, track_sequences
from tao_lab.scorer.spr import check_schedule, keep_lowest
from tao_lab.types import ObjectScores, ObjectTable

log = logging.getLogger(__name__)

DEFAULT_LOSS_WEIGHTS = {"reconstruction": 1.0, "contrastive": 0.3, "forecast": 0.0}
DEFAULT_SCORE_WEIGHTS = {"reconstruction": 0.8, "consistency": 0.2, "forecast": 0.0}
DEFAULT_SELF_PACED = {"drop": [0.1, 0.2, 0.3], "round_epochs": 3, "final_epochs": None, "reinit": True}
COMPONENTS = ("reconstruction", "consistency", "forecast")


class TemporalMaeScorer(ObjectScorer):
    """Masked temporal transformer over per-track feature windows (see the module docstring).

    Args:
        inputs: {group: spec} feature groups; spec keys: feature (key in the features dict, default the group
            name), columns (None = all), tokens (chunks the group is split into for the pooling), weight (in the
            reconstruction error), optional (skip when the features stage does not provide it), std_floor (each
            column is standardised by its training std, but at least std_floor x the root-mean-square std of the
            group: for groups in one unit, such as velocity's px/frame columns; 0 = plain per-column std).
            None = :data:`tao_lab.scorer.mae_inputs.DEFAULT_INPUTS`.
        window / stride: window length T (rows of one track) and the training window stride;
            score_stride: stride when scoring (None = ``stride``).
        d_model, depth, heads, ff_mult, dropout: transformer size; pooling: gap | attention | hybrid;
            pool_queries: learned queries of the attention pooling; proj_dim: contrastive projection size.
        mask_ratio: fraction of a window's positions masked in training (and in the scoring patterns).
        loss_weights: {reconstruction, contrastive, forecast}; forecast > 0 adds the forecasting head.
        temperature: InfoNCE temperature; forecast_steps: rows forecast at the end of a window.
        input_clip: standardised inputs (and training targets) are clipped to +-this.
        lr, weight_decay, batch_size: AdamW with linear warm-up and cosine decay over the Trainer's steps.
        val_fraction: held-out share of the training clips for validation / early stopping / calibration.
        patience: EarlyStopping patience (epochs) on val/loss.
        max_epochs: epochs of the Trainer built when ``fit_clips`` gets none (the pipeline passes ``cfg.trainer``).
        score_weights: {reconstruction, consistency, forecast} weights of the calibrated components.
        track_window: running median of each raw component along the track (rows; 1 = off).
        frame_sigma: Gaussian smoothing of the frame scores (frames; 0 = none).
        upper_percentile: calibration upper point (percentile of the calibration scores).
        self_paced: {drop: [fraction of windows excluded before each refit round], round_epochs: epoch cap of
            every round, final_epochs: cap of the last round (None = round_epochs), reinit: refit from scratch};
            used only when fitting on unlabeled clips.
        seed: weight init, shuffling, validation masks, clip split.
        input_dims: {group: columns}, filled in by the fit (a checkpoint carries it); leave None.
    """

    needs_trainer = True       # trained by a Lightning Trainer built from cfg.trainer ...
    trainer_factory = True     # ... given as a factory: self-paced refinement fits once per round
    supports_unlabeled = True  # fit_clips(..., unlabeled=True): self-paced refinement in training.mode=unsupervised

    def __init__(self, inputs: Optional[Mapping[str, Mapping[str, Any]]] = None, window: int = 16, stride: int = 8,
                 score_stride: Optional[int] = 4, d_model: int = 64, depth: int = 2, heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, pooling: str = "hybrid", pool_queries: int = 2,
                 proj_dim: int = 32, mask_ratio: float = 0.75, loss_weights: Optional[Mapping[str, float]] = None,
                 temperature: float = 0.07, forecast_steps: int = 2, input_clip: float = 10.0, lr: float = 1e-3,
                 weight_decay: float = 0.05, batch_size: int = 64, val_fraction: float = 0.2, patience: int = 3,
                 max_epochs: int = 20, score_weights: Optional[Mapping[str, float]] = None, track_window: int = 5,
                 frame_sigma: float = 3.0, upper_percentile: float = 99.9, consistency_space: str = "features",
                 context_norm: bool = True,
                 self_paced: Optional[Mapping[str, Any]] = None, seed: int = 0,
                 input_dims: Optional[Mapping[str, int]] = None):
        super().__init__()
        inputs, self.specs = input_specs(inputs)
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **to_plain(dict(loss_weights or {}))}
        self.score_weights = {**DEFAULT_SCORE_WEIGHTS, **to_plain(dict(score_weights or {}))}
        self.self_paced = {**DEFAULT_SELF_PACED, **to_plain(dict(self_paced or {}))}
        for d, known in ((self.loss_weights, DEFAULT_LOSS_WEIGHTS), (self.score_weights, DEFAULT_SCORE_WEIGHTS),
                         (self.self_paced, DEFAULT_SELF_PACED)):
            if set(d) - set(known):
                raise ValueError(f"unknown keys {sorted(set(d) - set(known))}; known: {sorted(known)}")
        check_schedule(self.self_paced["drop"])
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if int(window) < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if sum(float(v) for v in self.score_weights.values()) <= 0:
            raise ValueError(f"score_weights must have a positive sum, got {self.score_weights}")
        if float(self.score_weights["forecast"]) > 0 and float(self.loss_weights["forecast"]) <= 0:
            raise ValueError("score_weights.forecast > 0 needs the forecasting head: set loss_weights.forecast > 0")
        if consistency_space not in ("features", "embedding", "projection"):
            raise ValueError(f"consistency_space must be features, embedding or projection, got {consistency_space!r}")
        self.consistency_space = consistency_space
        self.context_norm = bool(context_norm)
        if pooling not in ("gap", "attention", "hybrid"):
            raise ValueError(f"pooling must be gap, attention or hybrid, got {pooling!r}")
        self.window, self.stride = int(window), int(stride)
        self.score_stride = int(score_stride) if score_stride else self.stride
        self.arch = dict(d_model=int(d_model), depth=int(depth), heads=int(heads), ff_mult=int(ff_mult),
                         dropout=float(dropout), pooling=pooling, pool_queries=int(pool_queries),
                         proj_dim=int(proj_dim))
        self.mask_ratio, self.temperature = float(mask_ratio), float(temperature)
        self.forecast_steps, self.input_clip = int(forecast_steps), float(input_clip)
        self.lr, self.weight_decay, self.batch_size = float(lr), float(weight_decay), int(batch_size)
        self.val_fraction, self.patience, self.max_epochs = float(val_fraction), int(patience), int(max_epochs)
        self.track_window, self.frame_sigma = int(track_window), float(frame_sigma)
        self.upper_percentile, self.seed = float(upper_percentile), int(seed)
        self.save_hyperparameters({
            "inputs": {k: dict(v) for k, v in inputs.items()}, "window": self.window, "stride": self.stride,
            "score_stride": score_stride, **self.arch, "mask_ratio": self.mask_ratio,
            "loss_weights": dict(self.loss_weights), "temperature": self.temperature,
            "forecast_steps": self.forecast_steps, "input_clip": self.input_clip, "lr": self.lr,
            "weight_decay": self.weight_decay, "batch_size": self.batch_size, "val_fraction": self.val_fraction,
            "patience": self.patience, "max_epochs": self.max_epochs, "score_weights": dict(self.score_weights),
            "track_window": self.track_window, "frame_sigma": self.frame_sigma,
            "upper_percentile": self.upper_percentile, "consistency_space": consistency_space,
            "context_norm": self.context_norm,
            "self_paced": dict(self.self_paced), "seed": self.seed,
            "input_dims": None if input_dims is None else {str(k): int(v) for k, v in to_plain(input_dims).items()},
        })
        self.net: Optional[TemporalMaeNet] = None
        self.register_buffer("feat_mean", torch.zeros(0))
        self.register_buffer("feat_std", torch.ones(0))
        self.register_buffer("group_weight", torch.ones(0))
        # per component: [min, upper] of the calibration scores and the median imputed for missing values
        self.register_buffer("calib", torch.tensor([[0.0, 1.0]] * len(COMPONENTS), dtype=torch.float64))
        self.register_buffer("impute", torch.zeros(len(COMPONENTS), dtype=torch.float64))
        self.register_buffer("train_scores", torch.zeros(0))
        # expected reconstruction error by rows of context (1..window), relative to a full window
        self.register_buffer("rec_ref", torch.zeros(0, dtype=torch.float64))
        self._round = 0
        self._has_val = True
        self._epoch_limit: Optional[int] = None
        self._windows_this_process = 0
        if input_dims is not None:
            self.build(self.hparams["input_dims"])

    # ------------------------------------------------------------------ network and features
    @property
    def input_dims(self) -> dict[str, int]:
        dims = self.hparams.get("input_dims")
        if not dims:
            raise RuntimeError("TemporalMaeScorer has no network yet: call fit_clips() or load a checkpoint")
        return dict(dims)

    def build(self, dims: Mapping[str, int]) -> None:
        """A fresh network (and empty standardisation buffers when the width changed) for the groups ``dims``."""
        names = list(dims)
        self.net = TemporalMaeNet([dims[n] for n in names], [self.specs[n]["tokens"] for n in names], self.window,
                                  forecast=float(self.loss_weights["forecast"]) > 0, **self.arch)
        total = int(sum(dims.values()))
        if self.feat_mean.numel() != total:
            self.feat_mean = torch.zeros(total)
            self.feat_std = torch.ones(total)
        self.group_weight = torch.tensor([float(self.specs[n]["weight"]) for n in names], dtype=torch.float32)

    def _matrix(self, features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """(n, D) raw feature matrix of the fitted groups, in the fitted order."""
        return feature_matrix(self.specs, self.input_dims, features, n)

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        return standardise(x, self.feat_mean.cpu().numpy(), self.feat_std.cpu().numpy())

    # ------------------------------------------------------------------ data
    def _windows(self, items: list[FitItem], stride: int) -> dict[str, np.ndarray]:
        """Row matrix (normalised) + windows over all items; ``group`` = global sequence id of each window."""
        xs, wins, groups, offset, seq_offset = [], [], [], 0, 0
        for objects, feats, _ in items:
            n = len(objects)
            xs.append(self._normalise(self._matrix(feats, n)))
            seqs = track_sequences(objects)
            w, sid = make_windows(seqs, self.window, stride, offset)
            wins.append(w)
            groups.append(sid + seq_offset)
            offset += n
            seq_offset += len(seqs)
        x = np.concatenate(xs) if xs else np.zeros((0, int(sum(self.input_dims.values()))), np.float32)
        return {"x": x, "windows": np.concatenate(wins) if wins else np.zeros((0, self.window), np.int64),
                "group": np.concatenate(groups) if groups else np.zeros(0, np.int64)}

    @staticmethod
    def _gather(x: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = win >= 0
        return x[win.clamp(min=0)] * valid.unsqueeze(-1), valid

    def loader(self, data: dict[str, np.ndarray], keep: np.ndarray, shuffle: bool):
        """A DataLoader over the windows ``keep`` of ``data`` (batches: features, valid mask, sequence id)."""
        from torch.utils.data import DataLoader, TensorDataset

        x = torch.from_numpy(data["x"])
        ds = TensorDataset(torch.from_numpy(data["windows"][keep]), torch.from_numpy(data["group"][keep]))

        def collate(batch):
            win = torch.stack([b[0] for b in batch])
            feats, valid = self._gather(x, win)
            return feats, valid, torch.stack([b[1] for b in batch])

        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    # ------------------------------------------------------------------ Lightning
    def _losses(self, x: torch.Tensor, valid: torch.Tensor, group: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        w = self.loss_weights
        masked = random_mask(valid, self.mask_ratio, generator)
        fut = None
        if self.net.forecast_head is not None:
            fut = future_mask(valid, self.forecast_steps)
            masked = masked | fut
        x = x.clamp(-self.input_clip, self.input_clip)
        out = self.net(x, valid, masked)
        dims = list(self.input_dims.values())
        gw = self.group_weight.to(x.dtype)
        rec = grouped_error(out["recon"], x, dims, gw)[masked].mean()
        losses = {"reconstruction": rec}
        total = float(w["reconstruction"]) * rec
        if float(w["contrastive"]) > 0:
            nce = neighbour_info_nce(self.net.project(out["emb"]), valid, group, self.temperature)
            losses["contrastive"] = nce
            total = total + float(w["contrastive"]) * nce
        if fut is not None:
            fe = grouped_error(out["forecast"], x, dims, gw)[fut]
            fe = fe.mean() if fe.numel() else x.sum() * 0.0
            losses["forecast"] = fe
            total = total + float(w["forecast"]) * fe
        losses["loss"] = total
        return losses

    def training_step(self, batch, batch_idx):
        x, valid, group = batch
        losses = self._losses(x, valid, group)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=len(x), sync_dist=True)
        return losses["loss"]

    def on_train_start(self) -> None:
        # under DDP Lightning gives each process a DistributedSampler over the windows: say what share this one has
        tr = self.trainer
        loader = tr.train_dataloader
        total = len(loader.dataset)
        sampler = getattr(loader, "sampler", None)
        self._windows_this_process = len(sampler) if sampler is not None else total
        log.info("temporal_mae round %d: process %d of %d trains on %d of %d windows per epoch", self._round,
                 tr.global_rank, tr.world_size, self._windows_this_process, total)

    def on_train_epoch_end(self) -> None:
        if self._epoch_limit is not None and self.current_epoch + 1 >= self._epoch_limit:
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        x, valid, group = batch
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_idx)
        losses = self._losses(x, valid, group, generator=gen)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=len(x), sync_dist=True)
        return losses["loss"]

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        try:
            total = int(self.trainer.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - no trainer attached / unknown length: constant rate
            total = 0
        if total <= 0 or not math.isfinite(total):
            return opt
        warm = max(1, min(100, total // 20))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            p = min(1.0, (step - warm) / max(1, total - warm))
            return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * p))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_callbacks(self):
        if not self._has_val:
            return []
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        return [EarlyStopping(monitor="val/loss", mode="min", patience=self.patience),
                ModelCheckpoint(monitor="val/loss", mode="min", save_top_k=1, save_last=False,
                                filename=f"temporal_mae-round{self._round}-{{epoch:02d}}",
                                auto_insert_metric_name=False)]

    # ------------------------------------------------------------------ fitting
    def fit_clips(self, items: list[FitItem], trainer: Any = None, unlabeled: bool = False) -> "TemporalMaeScorer":
        """Trains on the clips' tracked objects and calibrates on the held-out clips.

        items: [(objects, features, num_frames)] per clip. trainer: a ``lightning.Trainer``, a zero-argument
        factory returning one (needed for more than one self-paced round), or None (a CPU Trainer with
        ``max_epochs``, no logger). unlabeled: the clips are unlabeled video (may hold anomalies): enables
        self-paced refinement with the ``self_paced.drop`` schedule.
        """
        if not items:
            raise ValueError("fit_clips needs at least one clip")
        if sum(len(it[0]) for it in items) == 0:
            raise ValueError("the training clips contain no objects: nothing to fit the scorer on")
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        dims = discover_dims(self.specs, items)
        self.hparams["input_dims"] = dims
        train_items, val_items = split_clips(items, self.val_fraction, self.seed)
        mean, std = fit_standardisation(np.concatenate([self._matrix(it[1], len(it[0])) for it in train_items]),
                                        self.specs, dims)
        self.feat_mean = torch.as_tensor(mean, dtype=torch.float32)
        self.feat_std = torch.as_tensor(std, dtype=torch.float32)
        self.build(dims)
        train = self._windows(train_items, self.stride)
        val = self._windows(val_items, self.stride) if val_items else None
        if len(train["windows"]) == 0:
            raise ValueError("no training windows: the training clips hold no objects outside the validation split")
        if val is not None and len(val["windows"]) == 0:
            log.warning("temporal_mae: the validation clips hold no objects; training without validation")
            val = None
        self._has_val = val is not None
        metrics, schedule = fit_in_rounds(self, train, val, dims, trainer, unlabeled)
        self.cpu()
        self.eval()
        self._calibrate(val_items if val is not None else train_items, trim=schedule[-1] if schedule else 0.0)
        self.fitted.fill_(True)
        metrics["fit_seconds"] = time.perf_counter() - start
        self.fit_metrics = metrics
        log.info("temporal_mae fitted: %s", {k: round(v, 4) for k, v in metrics.items()})
        return self

    # ------------------------------------------------------------------ deterministic errors
    @torch.no_grad()
    def _position_errors(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, T) mean reconstruction error of each position over the interleaved patterns masking it, and
        (B, T) forecast error (NaN where not forecast) when the forecasting head exists."""
        dims = list(self.input_dims.values())
        gw = self.group_weight.to(x.dtype)
        xin = x.clamp(-self.input_clip, self.input_clip)
        emb = self.net.embed(xin)
        pats = torch.from_numpy(interleaved_masks(x.shape[1], self.mask_ratio)).to(x.device)
        tot = torch.zeros(valid.shape, dtype=x.dtype, device=x.device)
        cnt = torch.zeros_like(tot)
        for pat in pats:
            masked = pat[None, :] & valid
            out = self.net(xin, valid, masked, emb=emb)
            err = grouped_error(out["recon"], x, dims, gw)  # unclipped target: far-off values cost in full
            tot += torch.where(masked, err, torch.zeros_like(err))
            cnt += masked.to(x.dtype)
        rec = tot / cnt.clamp(min=1)
        rec = torch.where(cnt > 0, rec, torch.full_like(rec, float("nan")))
        fc = None
        if self.net.forecast_head is not None:
            fut = future_mask(valid, self.forecast_steps)
            out = self.net(xin, valid, fut, emb=emb)
            err = grouped_error(out["forecast"], x, dims, gw)
            fc = torch.where(fut, err, torch.full_like(err, float("nan")))
        return rec, fc

    def window_losses(self, data: dict[str, np.ndarray], chunk: int = 512) -> np.ndarray:
        """(W,) deterministic reconstruction loss of every window (mean over its valid positions)."""
        was_training = self.training
        self.eval()
        x = torch.from_numpy(data["x"]).to(self.device)
        out = []
        with torch.no_grad():
            for s in range(0, len(data["windows"]), chunk):
                win = torch.from_numpy(data["windows"][s:s + chunk]).to(self.device)
                xb, valid = self._gather(x, win)
                rec, _ = self._position_errors(xb, valid)
                rec = torch.nan_to_num(rec, nan=0.0) * valid
                out.append((rec.sum(1) / valid.sum(1).clamp(min=1)).cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    @torch.no_grad()
    def raw_components(self, objects: ObjectTable, features: Mapping[str, np.ndarray],
                       chunk: int = 512) -> dict[str, np.ndarray]:
        """Raw (uncalibrated, unsmoothed) components {name: (N,) float64}, NaN where a row has none."""
        if self.net is None:
            raise RuntimeError("TemporalMaeScorer is not fitted: call fit_clips() or load a checkpoint")
        n = len(objects)
        out = {c: np.full(n, np.nan) for c in COMPONENTS}
        if n == 0:
            return out
        was_training = self.training
        self.eval()
        x_np = self._normalise(self._matrix(features, n))
        x = torch.from_numpy(x_np).to(self.device)
        seqs = track_sequences(objects)
        windows, _ = make_windows(seqs, self.window, self.score_stride)
        rec_all, fc_all = [], []
        for s in range(0, len(windows), chunk):
            win = torch.from_numpy(windows[s:s + chunk]).to(self.device)
            xb, valid = self._gather(x, win)
            rec, fc = self._position_errors(xb, valid)
            rec_all.append(rec.cpu().numpy())
            if fc is not None:
                fc_all.append(fc.cpu().numpy())
        valid_np = windows >= 0
        idx = np.where(valid_np, windows, 0)
        rec = np.concatenate(rec_all)
        out["reconstruction"] = scatter_mean(idx, rec, valid_np & np.isfinite(rec), n)
        if fc_all:
            fc = np.concatenate(fc_all)
            out["forecast"] = scatter_mean(idx, fc, valid_np & np.isfinite(fc), n)
        # temporal consistency: how much the object changes between neighbouring rows of its track
        pairs = [(sq[:-1], sq[1:]) for sq in seqs if len(sq) > 1]
        if pairs:
            a = torch.from_numpy(np.concatenate([p[0] for p in pairs])).to(self.device)
            b = torch.from_numpy(np.concatenate([p[1] for p in pairs])).to(self.device)
            d = self._step_change(x, a, b).cpu().numpy().astype(np.float64)
            both = torch.cat([a, b]).cpu().numpy()
            out["consistency"] = scatter_mean(both, np.concatenate([d, d]), np.ones(len(both), bool), n)
        self.train(was_training)
        return out

    # ------------------------------------------------------------------ calibration and scoring
    @property
    def _active(self) -> list[str]:
        return [c for c in COMPONENTS if float(self.score_weights[c]) > 0]

    def _step_change(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Change between rows a and b (pairs of neighbouring rows of a track) in ``consistency_space``."""
        if self.consistency_space == "features":
            dims = list(self.input_dims.values())
            return grouped_error(x[a], x[b], dims, self.group_weight.to(x.dtype))
        xin = x.clamp(-self.input_clip, self.input_clip)
        emb = torch.cat([self.net.embed(xin[s:s + chunk][None])[0] for s in range(0, len(x), chunk)])
        if self.consistency_space == "projection":
            z = self.net.project(emb)
        else:
            z = torch.nn.functional.normalize(emb, dim=-1)
        return 1.0 - (z[a] * z[b]).sum(-1)

    def _context(self, objects: ObjectTable) -> np.ndarray:
        """(N,) int64 rows of context each object's windows have: min(track length, window); 1 if untracked."""
        out = np.ones(len(objects), np.int64)
        for sq in track_sequences(objects):
            out[sq] = min(len(sq), self.window)
        return out

    def _smoothed(self, objects: ObjectTable, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        ref = self.rec_ref.cpu().numpy()
        for i, c in enumerate(COMPONENTS):
            if c not in self._active:
                continue
            v = np.where(np.isfinite(raw[c]), raw[c], float(self.impute[i]))
            if c == "reconstruction" and len(ref) == self.window:
                v = v / ref[self._context(objects) - 1]
            out[c] = smooth_along_tracks(objects, v, self.track_window).astype(np.float64)
        return out

    def _calibrate(self, items: list[FitItem], trim: float = 0.0) -> None:
        """Imputation medians, context reference, [min, upper] per component and the calibrated training scores,
        from the calibration clips' objects. ``trim`` > 0 (unlabeled clips) leaves out that fraction of the rows
        with the largest raw reconstruction error, so anomalies in the calibration clips do not set the scale."""
        objects = [it[0] for it in items]
        raws = [self.raw_components(it[0], it[1]) for it in items]
        if not raws or sum(len(o) for o in objects) == 0:
            raise ValueError("no calibration objects: the held-out clips hold no objects")
        rec = np.concatenate([r["reconstruction"] for r in raws])
        keep = np.ones(len(rec), bool)
        if trim > 0:
            keep = keep_lowest(rec, trim)
        keeps = np.split(keep, np.cumsum([len(o) for o in objects])[:-1])
        if self.context_norm:
            ctx = np.concatenate([self._context(o) for o in objects])
            self.rec_ref = torch.as_tensor(context_reference(ctx[keep], rec[keep], self.window), dtype=torch.float64)
        impute = torch.zeros(len(COMPONENTS), dtype=torch.float64)
        for i, c in enumerate(COMPONENTS):
            vals = np.concatenate([r[c][k] for r, k in zip(raws, keeps)])
            vals = vals[np.isfinite(vals)]
            impute[i] = float(np.median(vals)) if len(vals) else 0.0
        self.impute = impute
        smoothed = [{c: v[k] for c, v in self._smoothed(o, r).items()} for o, r, k in zip(objects, raws, keeps)]
        calib = self.calib.clone()
        for i, c in enumerate(COMPONENTS):
            if c not in self._active:
                continue
            vals = np.concatenate([sm[c] for sm in smoothed])
            lo, hi = percentile_range(vals, self.upper_percentile, f"temporal_mae component {c!r}")
            calib[i] = torch.tensor([lo, hi], dtype=torch.float64)
        self.calib = calib
        self.train_scores = torch.as_tensor(np.concatenate([self._combine(sm)[0] for sm in smoothed]),
                                            dtype=torch.float32)

    def _combine(self, smoothed: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        parts, total = {}, None
        calib = self.calib.cpu().numpy()
        for i, c in enumerate(COMPONENTS):
            if c not in smoothed:
                continue
            lo, hi = calib[i]
            parts[c] = calibrate(smoothed[c], lo, hi).astype(np.float32)
            term = np.float32(self.score_weights[c]) * parts[c]
            total = term if total is None else total + term
        return total.astype(np.float32), parts

    def score_clip(self, objects: ObjectTable, features: Mapping[str, np.ndarray], num_frames: int,
                   held_out: Optional[int] = None) -> ObjectScores:
        """Calibrated object scores (N,), parts {reconstruction, consistency[, forecast]} and (T,) frame scores.
        ``held_out`` is ignored: the network keeps no training objects to match (self-paced refinement is how
        unsupervised mode keeps anomalies in the fit clips from being learnt as normal)."""
        self._require_fitted()
        smoothed = self._smoothed(objects, self.raw_components(objects, features))
        score, parts = self._combine(smoothed)
        frame = frame_scores_from_objects(objects.frame, score, num_frames)
        return ObjectScores(objects.with_score(score), smooth_frame_scores(frame, self.frame_sigma), parts)

    # fit statistics travel with the checkpoint (train.py logs them also when the fit came from the cache)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["temporal_mae_fit_metrics"] = dict(self.fit_metrics)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.fit_metrics = dict(checkpoint.get("temporal_mae_fit_metrics", {}))

    def train_object_scores(self) -> np.ndarray:
        """Calibrated scores (N,) float32 of the calibration objects (the held-out training clips; all training
        clips when there is no validation split); fit thresholds on these."""
        self._require_fitted()
        return self.train_scores.cpu().numpy().copy()
