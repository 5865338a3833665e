"""Experiment trackers behind one small interface: log the config once, metrics, tables, curves, images; always close.

The interface (every method is a no-op on :class:`NullLogger`):

- ``start(config, info)``: the resolved config (plain dict, no ``${...}``) and the run record (package versions,
  git commit); called once before the task runs;
- ``log_metrics(metrics)``: flat ``{key: float}``, also written to the run summary;
- ``log_table(name, rows)``: a list of dict rows (e.g. the per-video metrics);
- ``log_curves(curves)``: ``{family: {array name: 1-D array}}`` as produced by the evaluation (ROC/PR/PRO,
  RBDC/TBDC); see :func:`tao_lab.report.plots.curve_specs` for the families that are recognised;
- ``log_images(name, images)``: a few ``(BGR uint8 image, caption)`` pairs (overlay frames);
- ``finish(failed)``: closes the run; called exactly once, also when the task raised.

W&B specifics: offline by default (``WANDB_MODE`` or ``logger.mode=online`` switch), one run per Hydra job (the
run is finished in ``finish``; :func:`tao_lab.tasks.run_task` calls it in a ``finally``), and the group is the sweep
(``<task>-<sweep folder>``) in a multirun, the task name otherwise. The tests read offline runs back with
``tests/wandb_runs.py`` (a parser of the ``.wandb`` file).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

log = logging.getLogger(__name__)

WANDB_MODES = ("offline", "online", "disabled")


class NullLogger:
    """Logs nothing (metrics.json / metrics.csv in the run dir are always written anyway)."""

    #: how many overlay frames the evaluation should render for ``log_images`` (0 = none)
    num_overlays: int = 0
    #: whether the evaluation should compute the (costlier) pixel ROC/PR/PRO curves for ``log_curves``
    wants_curves: bool = False

    def start(self, config: dict, info: dict) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float]) -> None:
        pass

    def log_table(self, name: str, rows: list[dict]) -> None:
        pass

    def log_curves(self, curves: dict[str, dict[str, np.ndarray]], prefix: str = "test") -> None:
        pass

    def log_images(self, name: str, images: list[tuple[np.ndarray, str]]) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


def hydra_job_info() -> dict[str, Any]:
    """Facts about the current Hydra job (empty outside ``@hydra.main``, e.g. in tests that compose configs).

    Keys: ``mode`` ("RUN" | "MULTIRUN"), ``num`` (job number in a sweep), ``sweep_dir``, ``override_dirname``,
    ``overrides`` (the job's task overrides).
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        mode = getattr(hc.mode, "name", str(hc.mode))
        return {"mode": mode, "num": int(hc.job.get("num", 0) or 0), "sweep_dir": str(hc.sweep.dir),
                "override_dirname": str(hc.job.get("override_dirname", "")),
                "overrides": list(hc.overrides.task)}
    except Exception:  # noqa: BLE001 - no Hydra runtime config (plain compose, or outside a job)
        return {}


class WandbLogger(NullLogger):
    """Weights & Biases; offline unless told otherwise; one run per job, always closed (also on failure).

    Args:
        project / entity: the W&B project (entity None = the default of the account, unused offline).
        mode: "offline" | "online" | "disabled"; None = the ``WANDB_MODE`` environment variable, else offline.
            (configs/logger/wandb.yaml passes ``${oc.env:WANDB_MODE,offline}``, so the variable is the default
            and ``logger.mode=online`` on the command line wins over it.)
        group: the run group; None = automatic: ``<task_name>-<sweep folder name>`` for every job of one Hydra
            multirun (so a sweep is one group), ``<task_name>`` for a single run.
        job_type: None = the task name (eval, train, infer).
        tags: run tags; ``gt_gating-ORACLE`` is added automatically when the config has ``metrics.gt_gating``, and
            ``objective-uses-test-labels`` to every trial of an Optuna search whose objective is a ``test/`` metric.
        save_dir: where the ``wandb/`` folder goes (the run dir by default: ``<run dir>/wandb/offline-run-*``).
        name: the run name; None = automatic (the job number and overrides in a sweep).
        num_overlays: overlay frames (most anomalous frames of the test set, masks drawn) the evaluation renders.
        max_curve_points: curves are subsampled to at most this many points before logging.
    """

    def __init__(self, project: str = "tao_lab", entity: Optional[str] = None, mode: Optional[str] = None,
                 group: Optional[str] = None, job_type: Optional[str] = None, tags: Optional[Iterable] = None,
                 save_dir: str = ".", name: Optional[str] = None, num_overlays: int = 4,
                 max_curve_points: int = 400):
        self.project, self.entity, self.group, self.name, self.job_type = project, entity, group, name, job_type
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        if mode == "dryrun":
            mode = "offline"
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.mode={mode!r}: expected one of {WANDB_MODES} (or set WANDB_MODE)")
        self.mode = mode
        self.tags = [str(t) for t in (tags or [])]
        self.save_dir = str(save_dir)
        self.num_overlays = int(num_overlays)
        self.max_curve_points = int(max_curve_points)
        self.wants_curves = True
        self.run = None
        self._step = 0

    # ----- lifecycle ----------------------------------------------------------------------------------------
    def start(self, config: dict, info: dict) -> None:
        os.makedirs(self.save_dir, exist_ok=True)
        os.environ.setdefault("WANDB_DIR", self.save_dir)
        import wandb

        job = hydra_job_info()
        task = str(config.get("task_name", "run"))
        group = self.group
        name = self.name
        if group is None:
            group = f"{task}-{Path(job['sweep_dir']).name}" if job.get("mode") == "MULTIRUN" else task
        if name is None and job.get("mode") == "MULTIRUN":
            name = f"{group}-{job['num']}" + (f" {job['override_dirname']}" if job.get("override_dirname") else "")
            name = name[:120]
        tags = list(dict.fromkeys(self.tags))
        if (config.get("metrics") or {}).get("gt_gating"):
            tags.append("gt_gating-ORACLE")
        from tao_lab.objective import WANDB_TAG, optimised_metric, uses_test_labels

        if uses_test_labels(optimised_metric(config)):  # an Optuna trial tuned on test labels
            tags.append(WANDB_TAG)
        settings = wandb.Settings(console="off", save_code=False, x_disable_stats=True, x_disable_machine_info=True,
                                  silent=True, init_timeout=60.0)
        try:
            self.run = wandb.init(project=self.project, entity=self.entity, group=group, name=name,
                                  job_type=self.job_type or task, tags=tags, mode=self.mode, dir=self.save_dir,
                                  config={**config, "run_info": info, "hydra_job": job},
                                  reinit="finish_previous", settings=settings)
        except Exception as exc:
            hint = (" (online mode needs network access and `wandb login`; use logger.mode=offline and "
                    "`wandb sync` later)" if self.mode == "online" else "")
            raise RuntimeError(f"wandb.init failed in mode {self.mode!r}: {exc}{hint}") from exc
        self.group = group
        log.info("wandb: %s run %s in group %s (dir %s)", self.mode, getattr(self.run, "id", "?"), group,
                 self.save_dir)

    def finish(self, failed: bool = False) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        try:
            run.summary["status"] = "failed" if failed else "finished"
        except Exception:  # noqa: BLE001 - never let bookkeeping hide the task's own error
            pass
        run.finish(exit_code=1 if failed else 0)

    # ----- logging ------------------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float]) -> None:
        if self.run is None:
            return
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number))}
        self.run.log(values, step=self._step)
        self._step += 1
        for k, v in values.items():
            self.run.summary[k] = v

    def log_table(self, name: str, rows: list[dict]) -> None:
        if self.run is None or not rows:
            return
        import wandb

        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = [[_plain_value(row.get(c)) for c in columns] for row in rows]
        self.run.log({name: wandb.Table(columns=columns, data=data)}, step=self._step)
        self._step += 1

    def log_curves(self, curves: dict[str, dict[str, np.ndarray]], prefix: str = "test") -> None:
        """One W&B line chart per curve family (custom chart + its table) and one PNG figure with all of them."""
        if self.run is None or not curves:
            return
        import wandb

        from tao_lab.report.plots import curve_specs, curves_figure_png, subsample

        specs = curve_specs(curves)
        payload = {}
        for spec in specs:
            xs, ys, keys = [], [], []
            for label, (x, y) in spec["series"].items():
                x, y = subsample(x, y, self.max_curve_points)
                xs.append(x.tolist())
                ys.append(y.tolist())
                keys.append(label)
            payload[f"{prefix}/curve_{spec['key']}"] = wandb.plot.line_series(
                xs=xs, ys=ys, keys=keys, title=spec["title"], xname=spec["xname"])
        png = curves_figure_png(specs)
        if png is not None:
            payload[f"{prefix}/curves"] = wandb.Image(_png_to_array(png), caption="evaluation curves")
        if payload:
            self.run.log(payload, step=self._step)
            self._step += 1

    def log_images(self, name: str, images: list[tuple[np.ndarray, str]]) -> None:
        if self.run is None or not images:
            return
        import wandb

        items = [wandb.Image(np.ascontiguousarray(img[..., ::-1]), caption=cap) for img, cap in images]
        self.run.log({name: items}, step=self._step)
        self._step += 1


def _plain_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _png_to_array(png: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(img[..., ::-1])
