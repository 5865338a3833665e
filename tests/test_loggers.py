"""The W&B logger, offline, on a tiny evaluation: everything the contract lists is in the run file."""
import json

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC


def test_null_logger_accepts_everything():
    from tao_lab.loggers import NullLogger

    lg = NullLogger()
    lg.start({}, {})
    lg.log_metrics({"a": 1.0})
    lg.log_table("t", [{"a": 1}])
    lg.log_curves({"object": {"fpr": np.zeros(2), "rbdr": np.zeros(2), "tbdr": np.zeros(2)}})
    lg.log_images("i", [(np.zeros((2, 2, 3), np.uint8), "c")])
    lg.finish(failed=True)
    assert lg.num_overlays == 0


def test_wandb_mode_resolution(monkeypatch):
    from tao_lab.loggers import WandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert WandbLogger().mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbLogger().mode == "disabled"
    assert WandbLogger(mode="online").mode == "online"  # the config switch wins over the environment
    with pytest.raises(ValueError, match="logger.mode"):
        WandbLogger(mode="sometimes")


def test_wandb_config_defaults_to_env_and_offline(compose_cfg, monkeypatch):
    from hydra.utils import instantiate

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg("eval", ["logger=wandb"])
    lg = instantiate(cfg.logger)
    assert lg.mode == "offline" and lg.group is None and lg.num_overlays > 0
    cfg = compose_cfg("eval", ["logger=wandb", "logger.mode=online"])
    assert instantiate(cfg.logger).mode == "online"


@pytest.fixture(scope="module")
def wandb_eval(tmp_path_factory):
    """One tiny evaluation with logger=wandb in offline mode (the default suite disables W&B elsewhere)."""
    import os

    from helpers import compose
    from helpers import read_wandb_run, wandb_run_dirs
    from tao_lab.tasks import evaluate, run_task

    tmp = tmp_path_factory.mktemp("wandb")
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline"
    try:
        cfg = compose("eval", [*TINY_SYNTHETIC, "logger=wandb", "tags=[unit,tiny]"], tmp)
        metrics = run_task(cfg, evaluate)
    finally:
        os.environ["WANDB_MODE"] = old if old is not None else "disabled"
    runs = wandb_run_dirs(tmp / "run")
    assert len(runs) == 1, runs
    return metrics, read_wandb_run(runs[0]), runs[0]


def test_wandb_run_holds_resolved_config_versions_and_git(wandb_eval):
    _, run, _ = wandb_eval
    assert run["exit_code"] == 0
    cfg = run["config"]
    ours = {k: v for k, v in cfg.items() if not k.startswith("_wandb")}  # W&B's own chart specs use ${...}
    assert "${" not in json.dumps(ours)
    assert cfg["task_name"] == "eval" and cfg["dataset"]["num_test_clips"] == 2
    assert cfg["run_info"]["versions"]["numpy"] == np.__version__
    assert "commit" in cfg["run_info"]["git"]
    assert run["group"] == "eval" and run["job_type"] == "eval"
    assert set(run["tags"]) >= {"unit", "tiny"}


def test_wandb_run_holds_every_metric_table_curve_and_overlay(wandb_eval):
    metrics, run, run_dir = wandb_eval
    for key, value in metrics.items():
        assert run["summary"][key] == pytest.approx(value), key
    files = run["files"]
    assert any("per_video" in f and f.endswith(".table.json") for f in files)
    table = json.loads(next(run_dir.glob("files/media/table/test/per_video*.table.json")).read_text())
    assert len(table["data"]) == 2 and "video" in table["columns"]
    # curves: one custom chart (+ table) per family, and one PNG with all panels
    assert any("curve_object" in f for f in files), files  # RBDC/TBDC
    assert any("curve_frame_roc" in f for f in files) and any("curve_frame_pr" in f for f in files)
    assert any(f.startswith("media/images/test/curves") for f in files)
    overlays = [f for f in files if f.startswith("media/images/test/overlays")]
    assert 1 <= len(overlays) <= 4
    assert "test/overlays" in run["history_keys"] or any(k.startswith("test/overlays") for k in run["history_keys"])


def test_wandb_run_is_closed_as_failed_when_the_task_raises(compose_cfg, monkeypatch, tmp_path):
    from helpers import read_wandb_run, wandb_run_dirs
    from tao_lab.tasks import run_task

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "logger=wandb"])

    def boom(cfg, logger):
        logger.log_metrics({"test/partial": 1.0})
        raise RuntimeError("stage exploded")

    with pytest.raises(RuntimeError, match="stage exploded"):
        run_task(cfg, boom)
    failed = json.loads((tmp_path / "run" / "FAILED.json").read_text())
    assert failed["type"] == "RuntimeError" and "stage exploded" in failed["traceback"]
    run = read_wandb_run(wandb_run_dirs(tmp_path / "run")[0])
    assert run["exit_code"] == 1 and run["summary"]["status"] == "failed"
    assert run["summary"]["test/partial"] == 1.0
