"""The work behind each entry point: ``extract``, ``train``, ``evaluate``, ``infer`` (cfg -> results).

Entry points only compose the config and call one of these through :func:`run_task`, which seeds, writes the run
record (resolved config, versions, git commit), drives the logger and always closes it, also on failure.
Tests call these functions directly.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

from tao_lab import preflight
from tao_lab.objective import check_objective, objective_marker, objective_note
from tao_lab.no_network import set_offline_env
from tao_lab.user_errors import ConfigError, interrupt_on_sigterm

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
    from tao_lab.distributed import is_rank_zero
    from tao_lab.pipeline import instantiate
    from tao_lab.run_info import git_commit, package_versions, resolved_config, write_run_info

    set_offline_env()
    _seed(cfg.get("seed"))
    out = output_dir(cfg)
    rank_zero = is_rank_zero()  # in a DDP run only rank 0 writes the run record and logs to W&B
    if rank_zero:
        write_run_info(out, cfg)
    logger = instantiate(cfg.logger) if cfg.get("logger") and rank_zero else None
    failed = True
    try:
        with interrupt_on_sigterm():
            if logger is not None:
                logger.start(resolved_config(cfg), {"versions": package_versions(), "git": git_commit()})
            result = task(cfg, logger)
        failed = False
        return result
    except KeyboardInterrupt as exc:  # Ctrl+C, or SIGTERM through interrupt_on_sigterm
        _record_interruption(out, exc)
        raise
    except Exception as exc:
        if rank_zero:
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


def run_cli(cfg: DictConfig, task: Callable[[DictConfig, Any], dict]) -> dict:
    """:func:`run_task` for the entry points: a user error (bad data, input, config value, missing weights, an
    ``optimized_metric`` the job does not produce while a sweeper optimises it) prints one message and exits with
    code 2, an interruption exits with 128 + the signal number, both without a traceback (``HYDRA_FULL_ERROR=1``
    re-raises them for the full one). Bugs propagate to Hydra's report."""
    from tao_lab.user_errors import (EXIT_USER_ERROR, describe_user_error, exit_code_for_interrupt,
                                     full_traceback_wanted, report_user_error)

    name = str(cfg.get("task_name") or getattr(task, "__name__", "run"))
    try:
        result = run_task(cfg, task)
        try:
            check_objective(cfg, result)  # a search on a metric the job does not produce stops here, loudly
        except Exception as exc:
            _record_failure(output_dir(cfg), exc)
            raise
        return result
    except KeyboardInterrupt as exc:
        if full_traceback_wanted():
            raise
        # a plain Ctrl+C is a KeyboardInterrupt without a message (RunInterrupted names its signal)
        print(f"tao_lab {name}: {str(exc) or 'interrupted by SIGINT'}; marked in "
              f"{output_dir(cfg) / 'INTERRUPTED.json'}",
              file=sys.stderr, flush=True)
        sys.exit(exit_code_for_interrupt(exc))
    except Exception as exc:
        message = describe_user_error(exc)
        if message is None or full_traceback_wanted():
            raise
        report_user_error(name, message, str(output_dir(cfg)))
        sys.exit(EXIT_USER_ERROR)


def _in_multirun() -> bool:
    from tao_lab.loggers import hydra_job_info

    return hydra_job_info().get("mode") == "MULTIRUN"


def _record_failure(out: Path, exc: BaseException) -> None:
    """FAILED.json in the run dir: error type, message and traceback (never raises)."""
    import json
    import traceback

    try:
        from tao_lab.user_errors import describe_user_error, unwrap

        out.mkdir(parents=True, exist_ok=True)
        user_message = describe_user_error(exc)
        cause = unwrap(exc)  # Hydra wraps errors raised while building a component: record the error itself
        info = {"type": type(cause).__name__, "message": user_message or str(exc),
                "user_error": user_message is not None,
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
        (out / "FAILED.json").write_text(json.dumps(info, indent=2))
    except Exception:  # noqa: BLE001 - the original error matters more
        log.warning("could not write FAILED.json into %s", out)


def _record_interruption(out: Path, exc: BaseException) -> None:
    """INTERRUPTED.json in the run dir: which signal, when (never raises). Outputs of the run are incomplete."""
    import json
    from datetime import datetime, timezone

    from tao_lab.user_errors import signal_name

    try:
        out.mkdir(parents=True, exist_ok=True)
        signum = getattr(exc, "signum", None)
        info = {"interrupted": True, "signal": signal_name(signum) if signum is not None else "SIGINT",
                "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "message": "the run was stopped before it finished; its outputs are incomplete"}
        tmp = out / "INTERRUPTED.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(out / "INTERRUPTED.json")
    except Exception:  # noqa: BLE001 - the interruption matters more
        log.warning("could not write INTERRUPTED.json into %s", out)


def _log_cache(pipe) -> None:
    for line in pipe.cache_summary():
        log.info("cache %s", line)


def _stage_speed(pipe, prefix: str = "time") -> dict[str, float]:
    out = {}
    for stage, seconds in pipe.timings.items():
        out[f"{prefix}/{stage}_s"] = round(seconds, 3)
    return out


def _fit_share_done(pipe) -> bool:
    """True in a DDP process other than rank 0: its share of the fit is done, and rank 0 alone writes the
    checkpoint and run files and evaluates (so nothing downstream is computed twice)."""
    from tao_lab.distributed import global_rank

    rank = global_rank()
    if rank == 0:
        return False
    log.info("rank %d: my share of the fit is done; rank 0 writes the checkpoint and run files", rank)
    _log_cache(pipe)
    return True


# ----- extract ----------------------------------------------------------------------------------------------
def extract(cfg: DictConfig, logger=None) -> dict:
    """detect -> track -> features for the configured splits; everything lands in the stage cache.

    With ``num_shards`` > 1 this job handles only its ``shard`` of every split's clips (:mod:`tao_lab.sharding`).
    With ``fill_downstream`` (default) the job that finds every clip extracted also fills the downstream stages
    (:func:`_fill_downstream`).
    """
    from tao_lab.pipeline import Pipeline, camera_clips, load_dataset
    from tao_lab.sharding import check_shard, shard_items

    shard, num_shards = check_shard(cfg.get("shard", 0), cfg.get("num_shards", 1))
    pipe = Pipeline(cfg)
    preflight.check_components(pipe, with_threshold=False)
    dataset = load_dataset(cfg, splits=cfg.get("splits", ["train", "test"]))
    pipe.set_camera_clips(camera_clips(cfg, dataset))
    counts = {"extract/shard": shard, "extract/num_shards": num_shards}
    for split in cfg.get("splits", ["train", "test"]):
        clips = shard_items(dataset.split(split), shard, num_shards)
        if num_shards > 1:
            log.info("shard %d of %d: %d %s clips: %s", shard, num_shards, len(clips), split,
                     " ".join(c.clip_id for c in clips))
        pipe.extract(clips, split)
        counts[f"{split}/clips"] = len(clips)
        counts[f"{split}/objects"] = int(sum(len(pipe.tracks(c)) for c in clips))
    if cfg.get("fill_downstream", True):
        counts["extract/filled_downstream"] = int(_fill_downstream(cfg, pipe, dataset, shard, num_shards))
    _log_cache(pipe)
    result = {**counts, **_stage_speed(pipe)}
    from tao_lab.run_info import write_metrics

    write_metrics(output_dir(cfg), result)
    log.info("extracted: %s", result)
    return result


def _fill_downstream(cfg: DictConfig, pipe, dataset, shard: int, num_shards: int) -> bool:
    """Once every clip of every split is extracted: fit the scorer and fill what ``eval.py`` would compute next
    (score, prompts and segment of the test clips, their GT tracks, the ``val/`` folds), so an eval on this cache
    computes nothing. Every shard checks at its end; the one that finds all clips extracted does it (the last to
    finish). Two shards finishing together compute the same entries, which is safe: cache writes are atomic."""
    from tao_lab.evaluation import gt_tracks_for
    from tao_lab.pipeline import training_clips

    splits = list(cfg.get("splits", ["train", "test"]))
    if "test" not in splits or not dataset.test:
        log.info("fill_downstream: the test split is not extracted by this job; nothing to fill")
        return False
    features = pipe.caches["features"]
    missing = [c.clip_id for split in splits for c in dataset.split(split)
               if not features.path(c.clip_id, c.source).is_file()]
    if missing:
        log.info("shard %d of %d done; %d clips of other shards are not extracted yet (e.g. %s): the last shard to "
                 "finish fits the scorer and fills the downstream stages", shard, num_shards, len(missing),
                 " ".join(missing[:3]))
        return False
    log.info("every clip is extracted: fitting the scorer and filling score, prompts and segment of the test clips")
    pipe.fit_scorer(training_clips(cfg, dataset))
    min_area = int(cfg.metrics.get("gt_min_area", 20)) if cfg.get("metrics") else 20
    from tqdm import tqdm

    for clip in tqdm(dataset.test, desc="fill downstream", disable=not cfg.get("progress", True)):
        pipe.segmentation(clip, pipe.scores(clip, segment_next=True))
        gt_tracks_for(clip, pipe.cache_dir, min_area)
    if cfg.get("validation") is not None and "train" in splits:
        _validation(cfg, dataset)  # the val/ folds go through the stage cache as well
    return True


# ----- train ------------------------------------------------------------------------------------------------
def train(cfg: DictConfig, logger=None) -> dict:
    """Fits (or trains) the scorer on the training clips and writes ``scorer.ckpt`` into the run dir."""
    from tao_lab.pipeline import (SEGMENTER_CHECKPOINT, Pipeline, camera_clips, load_dataset, splits_needed,
                                  training_clips)
    from tao_lab.run_info import write_metrics

    pipe = Pipeline(cfg)
    preflight.check_components(pipe)
    dataset = load_dataset(cfg, splits=splits_needed(cfg, evaluate=False))
    pipe.set_camera_clips(camera_clips(cfg, dataset))
    clips = training_clips(cfg, dataset)
    if not clips:
        raise ConfigError(f"dataset {dataset.name!r} has no training clips")
    cached = pipe.fit_scorer(clips)
    if _fit_share_done(pipe):
        return {}
    ckpt = output_dir(cfg) / "scorer.ckpt"
    if cached is not None and cached.is_file():
        from tao_lab.artifacts import atomic_path

        with atomic_path(ckpt) as tmp:  # never a truncated scorer.ckpt in the run dir
            shutil.copyfile(cached, tmp)
    else:
        pipe.scorer.save_checkpoint(str(ckpt))
    _log_cache(pipe)
    result = {"train/threshold_tau": float(pipe.threshold.tau), "train/clips": len(clips),
              **{f"train/{k}": float(v) for k, v in pipe.scorer.fit_metrics.items()},
              **_stage_speed(pipe)}
    result.update(_train_segmenter(pipe, output_dir(cfg) / SEGMENTER_CHECKPOINT))
    validation = _validation(cfg, dataset)
    result.update(validation.metrics)
    result.update(objective_marker(cfg))
    write_metrics(output_dir(cfg), {**result, **objective_note(cfg)})
    if logger is not None:
        logger.log_metrics(result)
    print(validation.note)
    log.info("checkpoint written: %s", ckpt)
    return result


def _prepare_segmenter(pipe) -> dict:
    """A segmenter that learns from the training clips (segmenter=learned) gets its network now, trained or read
    from the stage cache; its training metrics (``train/segmenter_*``), {} for any other segmenter or when it has no
    training clip (it then uses the classical step, warned)."""
    from tao_lab.segmenter.learned import learns_from_clips

    segmenter = pipe.segmenter
    if not learns_from_clips(segmenter) or segmenter.net is None:
        return {}
    return {f"train/segmenter_{k}": float(v) for k, v in segmenter.fit_metrics.items()}


def _train_segmenter(pipe, path: Path) -> dict:
    """:func:`_prepare_segmenter`, and the network written to ``path`` (for eval.py / infer.py:
    segmenter.checkpoint=<run dir>/segmenter.ckpt)."""
    metrics = _prepare_segmenter(pipe)
    if metrics:
        pipe.segmenter.save_checkpoint(str(path))
        log.info("segmenter checkpoint written: %s", path)
    return metrics


# ----- evaluate ---------------------------------------------------------------------------------------------
def evaluate(cfg: DictConfig, logger=None) -> dict:
    """Fits (or loads) the scorer, runs the pipeline on the test clips, returns the metrics dict."""
    from tao_lab.evaluation import evaluate_clips
    from tao_lab.pipeline import (Pipeline, camera_clips, load_dataset, splits_needed, training_clips,
                                  training_mode, training_split)
    from tao_lab.run_info import format_metrics_table, write_metrics

    start = time.perf_counter()
    # cheap checks first: a bad config value, a missing weights file or a mask of the wrong size fails in seconds
    preflight.check_run_config(cfg, "evaluate")
    pipe = Pipeline(cfg)
    preflight.check_components(pipe)
    dataset = load_dataset(cfg, splits=splits_needed(cfg))
    if not dataset.test:
        raise ConfigError(f"dataset {dataset.name!r} has no test clips")
    if cfg.get("ckpt_path") and training_mode(cfg) == "supervised" and not dataset.train:
        # the scorer comes from the checkpoint, but the camera background, the frame alarm and the val/ metrics are
        # fitted on the training clips all the same (at the checkpoint's scale): read them when the copy has them
        dataset = dataclasses.replace(dataset, train=training_split(cfg, dataset))
    pipe.set_camera_clips(camera_clips(cfg, dataset))
    preflight.check_mask_sizes(dataset.test)
    pipe.fit_scorer(training_clips(cfg, dataset), ckpt_path=cfg.get("ckpt_path"))
    if _fit_share_done(pipe):
        return {}
    segmenter_fit = _prepare_segmenter(pipe)  # before any clip: its training is not counted as a stage's or val/ time
    if (cfg.get("alarm") or {}).get("enabled", True):  # calibrated frame alarm: eval reports its operating point
        from tao_lab.alarm import calibrate_on_training

        alarm_clips = training_clips(cfg, dataset)
        if alarm_clips:
            pipe.alarm = calibrate_on_training(pipe, cfg, alarm_clips)
        else:
            log.warning("frame alarm: %s has no training clips to calibrate it on; no alarm operating point is "
                        "reported (alarm.enabled=false silences this)", dataset.name)
    result = evaluate_clips(pipe, dataset.test, cfg, split="test",
                            num_overlays=int(getattr(logger, "num_overlays", 0) or 0),
                            pixel_curves=bool(getattr(logger, "wants_curves", False)))
    metrics = dict(result.metrics)
    metrics["train/threshold_tau"] = float(pipe.threshold.tau)
    metrics.update(segmenter_fit)
    if getattr(pipe, "alarm", None) is not None:
        metrics.update({"train/alarm_threshold": pipe.alarm.tau, "train/alarm_target_rate": pipe.alarm.target_rate,
                        "train/alarm_heldout_rate": pipe.alarm.calibration_rate})
    metrics.update(_stage_speed(pipe))
    test_frames = sum(c.num_frames for c in dataset.test)
    # val/ next to test/: training clips only (the validation is never handed a test clip)
    validation = _validation(cfg, dataset)
    metrics.update(validation.metrics)
    metrics.update(objective_marker(cfg))
    metrics["time/total_s"] = round(time.perf_counter() - start, 3)
    metrics["test/frames"] = float(test_frames)
    _log_cache(pipe)
    notes = {**objective_note(cfg), **_resolution_note(cfg, dataset.test)}
    write_metrics(output_dir(cfg), {**metrics, **notes}, result.per_video)
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
    if result.per_kind:
        _write_per_kind(output_dir(cfg), result.per_kind)
    masked, clips = int(metrics.get("test/pixel_num_clips", 0)), len(dataset.test)
    if 0 < masked < clips:
        print(f"NOTE: pixel masks exist for {masked} of {clips} test clips: pixel and object metrics use those "
              f"{masked}, frame metrics every clip (per_video.csv, column pixel_gt)")
    print(validation.note)
    if "time/validation_s" in metrics:  # the extra cost of val/, stated with every run
        extra = metrics["time/validation_s"]
        rest = metrics["time/total_s"] - extra
        print(f"validation cost: {extra:.1f} s on top of {rest:.1f} s for the rest of the run "
              f"(+{100 * extra / max(rest, 1e-9):.0f}%)")
    for line in notes.values():
        print(line)
    print(f"run dir: {output_dir(cfg)}")
    return metrics


def _resolution_note(cfg: DictConfig, clips) -> dict[str, str]:
    """``{"working_resolution": ...}`` when test clips were processed resized (cfg.working_object_height,
    working_height, working_min_height), else ``{}``."""
    from tao_lab.dataset.resize import working_resolution_note

    size = working_resolution_note(clips)
    if size is None:
        return {}
    return {"working_resolution": f"NOTE: processed at {size} (working_object_height="
                                  f"{cfg.get('working_object_height')}, working_height={cfg.get('working_height')}, "
                                  f"working_min_height={cfg.get('working_min_height')}): boxes, masks, pixel and "
                                  f"object metrics are in those pixels (GT masks resampled with the frames)"}


def _write_per_kind(run_dir, rows: list[dict]) -> None:
    """per_anomaly_type.csv in the run dir and a printed table: which kinds of anomaly the run catches."""
    import csv
    import os

    cols = list(rows[0])
    with open(os.path.join(run_dir, "per_anomaly_type.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    print("Per anomaly type (frames where that kind is present vs all normal frames)")
    print("  " + "  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  " + "  ".join(f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{r[c]:>14}" for c in cols))
def _validation(cfg: DictConfig, dataset):
    """The run's val/ metrics (tao_lab.validation.in_run) on the dataset's TRAINING clips only."""
    from tao_lab.validation.in_run import validation_metrics

    return validation_metrics(cfg, dataset.train, dataset.name)


# ----- infer ------------------------------------------------------------------------------------------------
def infer(cfg: DictConfig, logger=None) -> dict:
    """The whole pipeline on one video or frame folder without GT; writes tracks, scores and masks."""
    from tao_lab.infer import run_inference

    if not cfg.get("online", False):
        from tao_lab.pipeline import Pipeline

        preflight.check_run_config(cfg, "infer")
        preflight.check_components(Pipeline(cfg))
    return run_inference(cfg, logger)
