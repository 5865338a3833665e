"""The work behind each entry point: ``extract``, ``train``, ``evaluate``, ``infer`` (cfg -> results).

Entry points only compose the config and call one of these through :func:`run_task`, which seeds, writes the run
record (resolved config, versions, git commit), drives the logger and always closes it, also on failure.
Tests call these functions directly.
"""
from __future__ import annotations

import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

from tao_lab.offline import set_offline_env

log = logging.getLogger(__name__)


def _seed(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def run_task(cfg: DictConfig, task: Callable[[DictConfig, Any], dict]) -> dict:
    """Runs ``task(cfg, logger)`` with the run record written and the logger always closed."""
    from tao_lab.pipeline import instantiate
    from tao_lab.run_info import git_commit, package_versions, resolved_config, write_run_info

    set_offline_env()
    _seed(cfg.get("seed"))
    out = output_dir(cfg)
    write_run_info(out, cfg)
    logger = instantiate(cfg.logger) if cfg.get("logger") else None
    failed = True
    try:
        if logger is not None:
            logger.start(resolved_config(cfg), {"versions": package_versions(), "git": git_commit()})
        result = task(cfg, logger)
        failed = False
        return result
    except Exception as exc:
        _record_failure(out, exc)
        if _in_multirun():
            # one failing sweep job must not kill the sweep: it is recorded (FAILED.json, a failed W&B run,
            # listed by `python -m tao_lab.compare`) and returns no metric (Optuna marks the trial FAIL)
            log.exception("job failed (recorded in %s); the sweep continues", out / "FAILED.json")
            return {}
        raise
    finally:
        if logger is not None:
            logger.finish(failed=failed)


def _in_multirun() -> bool:
    from tao_lab.loggers import hydra_job_info

    return hydra_job_info().get("mode") == "MULTIRUN"


def _record_failure(out: Path, exc: BaseException) -> None:
    """FAILED.json in the run dir: error type, message and traceback (never raises)."""
    import json
    import traceback

    try:
        out.mkdir(parents=True, exist_ok=True)
        info = {"type": type(exc).__name__, "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
        (out / "FAILED.json").write_text(json.dumps(info, indent=2))
    except Exception:  # noqa: BLE001 - the original error matters more
        log.warning("could not write FAILED.json into %s", out)


def _log_cache(pipe) -> None:
    for line in pipe.cache_summary():
        log.info("cache %s", line)


def _stage_speed(pipe, prefix: str = "time") -> dict[str, float]:
    out = {}
    for stage, seconds in pipe.timings.items():
        out[f"{prefix}/{stage}_s"] = round(seconds, 3)
    return out


# ----- extract ----------------------------------------------------------------------------------------------
def extract(cfg: DictConfig, logger=None) -> dict:
    """detect -> track -> features for the configured splits; everything lands in the stage cache."""
    from tao_lab.pipeline import Pipeline, load_dataset

    dataset = load_dataset(cfg)
    pipe = Pipeline(cfg)
    counts = {}
    for split in cfg.get("splits", ["train", "test"]):
        clips = dataset.split(split)
        pipe.extract(clips, split)
        counts[f"{split}/clips"] = len(clips)
        counts[f"{split}/objects"] = int(sum(len(pipe.tracks(c)) for c in clips))
    _log_cache(pipe)
    result = {**counts, **_stage_speed(pipe)}
    from tao_lab.run_info import write_metrics

    write_metrics(output_dir(cfg), result)
    log.info("extracted: %s", result)
    return result


# ----- train ------------------------------------------------------------------------------------------------
def train(cfg: DictConfig, logger=None) -> dict:
    """Fits (or trains) the scorer on the training clips and writes ``scorer.ckpt`` into the run dir."""
    from tao_lab.pipeline import Pipeline, load_dataset, training_clips
    from tao_lab.run_info import write_metrics

    dataset = load_dataset(cfg)
    clips = training_clips(cfg, dataset)
    if not clips:
        raise ValueError(f"dataset {dataset.name!r} has no training clips")
    pipe = Pipeline(cfg)
    cached = pipe.fit_scorer(clips)
    ckpt = output_dir(cfg) / "scorer.ckpt"
    if cached is not None and cached.is_file():
        shutil.copyfile(cached, ckpt)
    else:
        pipe.scorer.save_checkpoint(str(ckpt))
    _log_cache(pipe)
    result = {"train/threshold_tau": float(pipe.threshold.tau), "train/clips": len(clips),
              **{f"train/{k}": float(v) for k, v in getattr(pipe.scorer, "fit_metrics", {}).items()},
              **_stage_speed(pipe)}
    write_metrics(output_dir(cfg), result)
    if logger is not None:
        logger.log_metrics(result)
    log.info("checkpoint written: %s", ckpt)
    return result


# ----- evaluate ---------------------------------------------------------------------------------------------
def evaluate(cfg: DictConfig, logger=None) -> dict:
    """Fits (or loads) the scorer, runs the pipeline on the test clips, returns the metrics dict."""
    from tao_lab.evaluation import evaluate_clips
    from tao_lab.pipeline import Pipeline, load_dataset, training_clips
    from tao_lab.run_info import format_metrics_table, write_metrics

    start = time.perf_counter()
    dataset = load_dataset(cfg)
    if not dataset.test:
        raise ValueError(f"dataset {dataset.name!r} has no test clips")
    pipe = Pipeline(cfg)
    pipe.fit_scorer(training_clips(cfg, dataset), ckpt_path=cfg.get("ckpt_path"))
    if (cfg.get("alarm") or {}).get("enabled", True):  # calibrated frame alarm: eval reports its operating point
        from tao_lab.alarm import calibrate_on_training

        pipe.alarm = calibrate_on_training(pipe, cfg, training_clips(cfg, dataset))
    result = evaluate_clips(pipe, dataset.test, cfg, split="test",
                            num_overlays=int(getattr(logger, "num_overlays", 0) or 0),
                            pixel_curves=bool(getattr(logger, "wants_curves", False)))
    metrics = dict(result.metrics)
    metrics["train/threshold_tau"] = float(pipe.threshold.tau)
    if getattr(pipe, "alarm", None) is not None:
        metrics.update({"train/alarm_threshold": pipe.alarm.tau, "train/alarm_target_rate": pipe.alarm.target_rate,
                        "train/alarm_heldout_rate": pipe.alarm.calibration_rate})
    metrics.update(_stage_speed(pipe))
    test_frames = sum(c.num_frames for c in dataset.test)
    metrics["time/total_s"] = round(time.perf_counter() - start, 3)
    metrics["test/frames"] = float(test_frames)
    _log_cache(pipe)
    write_metrics(output_dir(cfg), metrics, result.per_video)
    if logger is not None:
        logger.log_metrics(metrics)
        logger.log_table("test/per_video", result.per_video)
        if hasattr(logger, "log_curves"):
            logger.log_curves(result.curves, prefix="test")
        if hasattr(logger, "log_images") and result.overlays:
            logger.log_images("test/overlays", result.overlays)
    gated = " [ORACLE: gt_gating on]" if cfg.metrics.get("gt_gating", False) else ""
    print(f"\ntao_lab eval on {dataset.name} ({len(dataset.test)} test clips, {test_frames} frames){gated}")
    print(format_metrics_table(metrics))
    print(f"run dir: {output_dir(cfg)}")
    return metrics


# ----- infer ------------------------------------------------------------------------------------------------
def infer(cfg: DictConfig, logger=None) -> dict:
    """The whole pipeline on one video or frame folder without GT; writes tracks, scores and masks."""
    from tao_lab.infer import run_inference

    return run_inference(cfg, logger)
