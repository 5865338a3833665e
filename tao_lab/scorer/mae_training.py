"""How the temporal MAE scorer is trained: the held-out validation split, the Trainers, and the fit loop with
self-paced refinement on unlabeled clips (the ranking and dropping rule is :mod:`tao_lab.scorer.spr`).

The loop drives a :class:`~tao_lab.scorer.temporal_mae.TemporalMaeScorer` (the LightningModule: losses, steps,
optimiser, callbacks) through one Lightning ``Trainer.fit`` per round. Round 0 trains on every window; before
round r the ``self_paced.drop[r-1]`` fraction of all training (and validation) windows with the largest
deterministic reconstruction loss under the current model is excluded and the model is refit (from scratch with
``reinit: true``, else from its current weights). On unlabeled clips every round is capped at
``self_paced.round_epochs`` epochs (the last one at ``final_epochs`` when set): anomalies are rare, so the model
fits the normal windows first (SPR's "normality advantage") and a long fit would learn the anomalies as well.
After each fit the best validation weights (ModelCheckpoint on ``val/loss``) are restored.
"""
from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from tao_lab.scorer.base import FitItem
from tao_lab.scorer.mae_windows import split_by_frame
from tao_lab.scorer.spr import check_schedule, keep_lowest
from tao_lab.user_errors import fit_keeping_interrupts

if TYPE_CHECKING:  # pragma: no cover
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

log = logging.getLogger(__name__)


def split_clips(items: list[FitItem], val_fraction: float, seed: int) -> tuple[list[FitItem], list[FitItem]]:
    """(training, validation) items: ``val_fraction`` of the clips held out (at least one, chosen with ``seed``),
    or, with one clip, the last ``val_fraction`` of its frames. ``val_fraction`` <= 0: no validation."""
    if val_fraction <= 0:
        return list(items), []
    if len(items) >= 2:
        n_val = min(len(items) - 1, max(1, int(round(val_fraction * len(items)))))
        perm = np.random.default_rng(seed).permutation(len(items))
        val_idx = set(perm[:n_val].tolist())
        return ([it for i, it in enumerate(items) if i not in val_idx],
                [it for i, it in enumerate(items) if i in val_idx])
    objects, feats, num_frames = items[0]
    cut = int(round(num_frames * (1.0 - val_fraction)))
    (ta, fa), (tb, fb) = split_by_frame(objects, feats, cut)
    log.warning("temporal_mae: one training clip only; validating on its last %d of %d frames",
                num_frames - cut, num_frames)
    return [(ta, fa, cut)], [(tb, fb, num_frames)]


def trainer_factory(trainer: Any) -> Optional[Callable[[], Any]]:
    """A zero-argument factory of Trainers from ``trainer`` (a factory, one ``lightning.Trainer``, which serves one
    round only, or None: the caller builds its default)."""
    import lightning

    if trainer is None:
        return None
    if isinstance(trainer, lightning.Trainer):
        used = []

        def once():
            if used:
                raise ValueError("self-paced refinement fits once per round and a lightning.Trainer fits "
                                 "only once: pass a factory, e.g. functools.partial(lightning.Trainer, ...) "
                                 "or hydra.utils.instantiate(cfg.trainer, _partial_=True)")
            used.append(True)
            return trainer

        return once
    if callable(trainer):
        return trainer
    raise TypeError(f"trainer must be a lightning.Trainer, a factory or None, got {type(trainer).__name__}")


def default_trainer(max_epochs: int, root: str):
    """The CPU Trainer used when ``fit_clips`` gets none: ``max_epochs``, no logger, no progress bar."""
    import lightning

    return lightning.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                             num_sanity_val_steps=0)


def restore_best(module: torch.nn.Module, trainer) -> Optional[float]:
    """Loads the best checkpoint of ``trainer``'s ModelCheckpoint into ``module``; its val/loss (None without)."""
    cb = getattr(trainer, "checkpoint_callback", None)
    path = getattr(cb, "best_model_path", "") if cb is not None else ""
    if not path:
        return None
    ckpt = torch.load(path, map_location=module.device, weights_only=True)  # our own Trainer file: weights only
    module.load_state_dict(ckpt["state_dict"])
    score = getattr(cb, "best_model_score", None)
    return None if score is None else float(score)


def fit_in_rounds(scorer: "TemporalMaeScorer", train: dict[str, np.ndarray], val: Optional[dict[str, np.ndarray]],
                  dims: dict[str, int], trainer: Any, unlabeled: bool) -> tuple[dict[str, float], list[float]]:
    """Trains ``scorer`` on the windows ``train`` (validating on ``val``) in one round, or with ``unlabeled`` in
    self-paced rounds (see the module docstring). Returns the fit statistics and the drop schedule used."""
    import lightning

    schedule = check_schedule(scorer.self_paced["drop"]) if unlabeled else []
    rounds = [0.0] + schedule
    round_epochs = int(scorer.self_paced["round_epochs"] or 0)
    factory = trainer_factory(trainer)
    tmp = tempfile.TemporaryDirectory(prefix="temporal_mae_") if factory is None else None
    metrics: dict[str, float] = {"train_windows": float(len(train["windows"])),
                                 "val_windows": float(0 if val is None else len(val["windows"]))}
    try:
        for r, drop in enumerate(rounds):
            scorer._round = r
            keep_t = np.ones(len(train["windows"]), bool)
            keep_v = None if val is None else np.ones(len(val["windows"]), bool)
            if drop > 0:
                keep_t = keep_lowest(scorer.window_losses(train), drop)
                if val is not None:
                    keep_v = keep_lowest(scorer.window_losses(val), drop)
                if scorer.self_paced["reinit"]:
                    torch.manual_seed(scorer.seed + r)
                    scorer.build(dims)
                log.info("temporal_mae self-paced round %d: dropped %d of %d training windows (%.0f%%)",
                         r, int((~keep_t).sum()), len(keep_t), 100 * drop)
            # on unlabeled clips every round is short: the normality advantage (normal windows fitted before
            # the rare anomalous ones) is largest early in training, and a long fit learns the anomalies too
            final = r == len(rounds) - 1
            limit = round_epochs if not final or scorer.self_paced["final_epochs"] is None \
                else int(scorer.self_paced["final_epochs"])
            scorer._epoch_limit = limit if (unlabeled and limit > 0) else None
            torch.manual_seed(scorer.seed + r)
            tr = factory() if factory is not None else default_trainer(scorer.max_epochs, tmp.name)
            if not isinstance(tr, lightning.Trainer):
                raise TypeError(f"trainer factory returned {type(tr).__name__}, expected lightning.Trainer")
            fit_keeping_interrupts(tr, scorer, scorer.loader(train, keep_t, shuffle=True),
                                   None if val is None else scorer.loader(val, keep_v, shuffle=False))
            best = restore_best(scorer, tr)
            metrics[f"round{r}_epochs"] = float(tr.current_epoch)
            if best is not None:
                metrics[f"round{r}_best_val_loss"] = best
                metrics["best_val_loss"] = best
            metrics[f"round{r}_train_windows"] = float(keep_t.sum())
            metrics[f"round{r}_windows_per_process"] = float(scorer._windows_this_process)
    finally:
        scorer._epoch_limit = None
        if tmp is not None:
            tmp.cleanup()
    return metrics, schedule
