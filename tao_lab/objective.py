"""The objective of a hyper-parameter search, and whether it reads test labels.

A sweeper that optimises a value (Optuna) receives ``metrics[optimized_metric]`` from every job. When that metric is
a ``test/`` one the search tunes on the test set: every record of such a sweep says so, in the same words,
``objective uses test labels``: the job's ``metrics.json`` (``"objective"`` note and the numeric flag
``objective/uses_test_labels``), its W&B run (tag ``objective-uses-test-labels`` and the flag in the summary) and the
tables of ``python -m tao_lab.compare``. A ``val/`` objective (the default, configs/hparams_search/optuna.yaml) is
computed on training clips only (:mod:`tao_lab.validation.in_run`).
"""
from __future__ import annotations

from typing import Any, Optional

TEST_LABELS = "objective uses test labels"
WANDB_TAG = "objective-uses-test-labels"


def sweeper_target() -> str:
    """The ``_target_`` of this job's Hydra sweeper ("" outside a Hydra job, e.g. in tests that compose configs)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return ""
        return str(HydraConfig.get().sweeper.get("_target_", "") or "")
    except Exception:  # noqa: BLE001 - no Hydra runtime config
        return ""


def optimised_metric(cfg: Any) -> Optional[str]:
    """``cfg.optimized_metric`` when a sweeper that optimises it (Optuna) runs this job, else None (a plain run or
    a grid sweep returns the value too, but nothing is tuned on it)."""
    metric = cfg.get("optimized_metric") if hasattr(cfg, "get") else None
    if not metric or "optuna" not in sweeper_target().lower():
        return None
    return str(metric)


def check_objective(cfg: Any, metrics: Any) -> None:
    """Refuses a finished job whose metrics lack the value the sweeper optimises (a misspelt ``optimized_metric``,
    or a ``val/`` one with ``validation=none``): the job would return None and every trial of the study would end
    without a value, so the search would run to its end having tuned nothing. Raises a ConfigError that lists the
    metrics the job does have. An empty result (a failed job of a sweep, already recorded in FAILED.json) and a
    run that optimises nothing pass."""
    metric = optimised_metric(cfg)
    if metric is None or not isinstance(metrics, dict) or not metrics or metric in metrics:
        return
    from tao_lab.user_errors import ConfigError

    keys = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
    raise ConfigError(f"optimized_metric={metric!r} is not among this job's {len(keys)} metrics, so the search has "
                      f"nothing to optimise. Set optimized_metric to one of: {', '.join(keys)}")


def uses_test_labels(metric: Optional[str]) -> bool:
    return bool(metric) and str(metric).split("/", 1)[0] == "test"


def objective_marker(cfg: Any) -> dict[str, float]:
    """``{"objective/uses_test_labels": 1.0 | 0.0}`` for an optimised job, else ``{}`` (numeric: a metrics key)."""
    metric = optimised_metric(cfg)
    return {} if metric is None else {"objective/uses_test_labels": float(uses_test_labels(metric))}


def describe(metric: str) -> str:
    if uses_test_labels(metric):
        return f"{metric}: {TEST_LABELS}"
    if str(metric).startswith("val/"):
        return f"{metric}: training clips only (planted-anomaly validation)"
    return str(metric)


def objective_note(cfg: Any) -> dict[str, str]:
    """``{"objective": "<metric>: objective uses test labels"}`` (or its training-only wording) for an optimised
    job's metrics.json and printed summary, else ``{}``."""
    metric = optimised_metric(cfg)
    return {} if metric is None else {"objective": describe(metric)}
