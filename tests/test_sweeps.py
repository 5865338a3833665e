"""Sweeps run in a subprocess (`python eval.py -m ...`) with a tiny budget; experiment and search configs compose."""
import json
import os
import subprocess
import sys

import pytest

from helpers import CONFIG_DIR, QUICK_SEGMENTER, ROOT, TINY_SYNTHETIC, compose

# val/ metrics off (a leave-one-clip-out pass per job); tests/test_validation_in_run.py covers them
TINY = [*TINY_SYNTHETIC, *QUICK_SEGMENTER, "dataset.num_frames=40", "progress=false", "validation=none"]


def run_eval(args, tmp_path, wandb_mode="disabled", timeout=420, full_error="1"):
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": wandb_mode, "HYDRA_FULL_ERROR": full_error}
    cmd = [sys.executable, str(ROOT / "eval.py"), *args, f"paths.log_dir={tmp_path / 'logs'}",
           f"paths.cache_dir={tmp_path / 'cache'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_multirun_records_a_failing_job_and_goes_on(tmp_path):
    """Two jobs, the second fails at run time; W&B offline: one closed run per job, one group per sweep."""
    from tao_lab.compare import compare
    from helpers import read_wandb_run, wandb_run_dirs

    sweep = tmp_path / "sweep"
    done = run_eval(["-m", *TINY, "logger=wandb", "ckpt_path=null,/nonexistent/scorer.ckpt",
                     f"hydra.sweep.dir={sweep}"], tmp_path, wandb_mode="offline")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((sweep / "0" / "metrics.json").read_text())["test/frame_auc_micro"] > 0.5
    failed = json.loads((sweep / "1" / "FAILED.json").read_text())
    assert failed["type"] == "FileNotFoundError" and "checkpoint not found" in failed["message"]
    assert not (sweep / "1" / "metrics.json").exists()

    runs = [read_wandb_run(d) for d in wandb_run_dirs(sweep)]
    assert len(runs) == 2
    assert sorted(r["exit_code"] for r in runs) == [0, 1]
    assert {r["group"] for r in runs} == {f"eval-{sweep.name}"}
    assert len({r["run_id"] for r in runs}) == 2

    out = compare(sweep, quiet=True)
    assert [r["status"] for r in out["rows"]] == ["ok", "failed"]
    assert out["params"] == ["ckpt_path"]


def test_optuna_search_with_a_test_objective_is_marked_everywhere(tmp_path):
    """A test/ objective still works, and every record says "objective uses test labels": each job's
    metrics.json, its W&B run (tag), the compare table; the study is saved and Optuna's figures drawn from it."""
    from tao_lab.compare import compare
    from helpers import read_wandb_run, wandb_run_dirs
    from tao_lab.objective import TEST_LABELS, WANDB_TAG
    from tao_lab.optuna_study import FIGURES, load_study

    sweep = tmp_path / "optuna"
    done = run_eval(["hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.sampler.n_startup_trials=2", "optimized_metric=test/frame_auc_micro",
                     "logger=wandb", f"hydra.sweep.dir={sweep}"], tmp_path, wandb_mode="offline")
    assert done.returncode == 0, done.stderr[-3000:]
    result = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in result and "threshold.tau" in result
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 3
    for j in jobs:
        overrides = (sweep / j / ".hydra" / "overrides.yaml").read_text()
        assert "threshold.tau=" in overrides and "prompt_filter.min_matches=" in overrides
        metrics = json.loads((sweep / j / "metrics.json").read_text())
        assert metrics["objective"] == f"test/frame_auc_micro: {TEST_LABELS}"
        assert metrics["objective/uses_test_labels"] == 1.0
    runs = [read_wandb_run(d) for d in wandb_run_dirs(sweep)]
    assert len(runs) == 3 and all(WANDB_TAG in r["tags"] for r in runs)
    assert all(r["summary"]["objective/uses_test_labels"] == 1.0 for r in runs)
    study = load_study(sweep)  # the study reloads from its storage next to optimization_results.yaml
    assert len(study.trials) == 3 and study.best_value == pytest.approx(
        max(json.loads((sweep / j / "metrics.json").read_text())["test/frame_auc_micro"] for j in jobs))
    out = compare(sweep, quiet=True)
    assert out["objective"] == f"objective: test/frame_auc_micro: {TEST_LABELS}"
    assert (sweep / "compare.md").read_text().startswith(f"**objective: test/frame_auc_micro: {TEST_LABELS}**")
    assert all((sweep / name).is_file() for name in FIGURES)


def test_objective_marks_only_test_metrics_of_optimising_sweeps(monkeypatch):
    import tao_lab.objective as objective

    cfg = {"optimized_metric": "test/object_rbdc"}
    assert objective.objective_marker(cfg) == {} and objective.objective_note(cfg) == {}  # no sweeper: no mark
    monkeypatch.setattr(objective, "sweeper_target", lambda: "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")
    assert objective.objective_marker(cfg) == {}  # a grid sweep tunes nothing
    monkeypatch.setattr(objective, "sweeper_target",
                        lambda: "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    assert objective.objective_marker(cfg) == {"objective/uses_test_labels": 1.0}
    assert objective.objective_note(cfg) == {"objective": "test/object_rbdc: objective uses test labels"}
    val = {"optimized_metric": "val/object_rbdc"}
    assert objective.objective_marker(val) == {"objective/uses_test_labels": 0.0}
    assert "test labels" not in objective.objective_note(val)["objective"]


def test_an_optimised_metric_the_job_does_not_produce_is_refused_with_the_keys(monkeypatch, tmp_path):
    """A misspelt optimized_metric used to return None, so every Optuna trial ended without a value and the search
    ran on; now the finished job is refused with the metrics it does have (a plain run optimises nothing)."""
    import tao_lab.objective as objective
    from tao_lab.user_errors import ConfigError

    cfg = {"optimized_metric": "val/object_rbcd"}
    metrics = {"test/object_rbdc": 0.5, "val/object_rbdc": 0.25}
    objective.check_objective(cfg, metrics)  # no sweeper: nothing is optimised, nothing to refuse
    monkeypatch.setattr(objective, "sweeper_target",
                        lambda: "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    with pytest.raises(ConfigError) as err:
        objective.check_objective(cfg, metrics)
    assert str(err.value) == ("optimized_metric='val/object_rbcd' is not among this job's 2 metrics, so the search "
                              "has nothing to optimise. Set optimized_metric to one of: test/object_rbdc, "
                              "val/object_rbdc")
    objective.check_objective({"optimized_metric": "val/object_rbdc"}, metrics)  # present: passes
    objective.check_objective(cfg, {})  # a failed sweep job (already recorded in FAILED.json) passes


def test_optuna_search_on_a_missing_metric_stops_at_the_first_trial(tmp_path):
    """End to end: `eval.py hparams_search=optuna` with a val/ objective and validation=none exits with the user
    error code after the first trial, naming the metric and listing the available keys."""
    sweep = tmp_path / "optuna"
    done = run_eval(["hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=3", "optimized_metric=val/object_rbdc",
                     f"hydra.sweep.dir={sweep}"], tmp_path, full_error="0")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "optimized_metric='val/object_rbdc' is not among this job's" in done.stderr
    assert "test/object_rbdc" in done.stderr and "test/frame_auc_micro" in done.stderr
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1").exists()
    failed = json.loads((sweep / "0" / "FAILED.json").read_text())
    assert failed["type"] == "ConfigError" and failed["user_error"] is True


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "joblib"
    done = run_eval(["-m", "hydra/launcher=joblib_local", *TINY, "threshold.tau=0.5,1.0",
                     f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for j in ("0", "1"):
        assert (sweep / j / "metrics.json").is_file()
    taus = sorted(json.loads((sweep / j / "metrics.json").read_text())["train/threshold_tau"] for j in "01")
    assert taus == [0.5, 1.0]


def _experiments():
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", _experiments())
def test_experiment_composes_with_tags(name, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose("eval", [f"experiment={name}"], tmp_path)
    assert len(cfg.tags) >= 2, "every experiment sets tags"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert "gt_gating" in resolved["metrics"]


def test_gt_gating_oracle_is_only_in_its_own_labelled_experiment(tmp_path):
    for name in _experiments():
        cfg = compose("eval", [f"experiment={name}"], tmp_path)
        gated = bool(cfg.metrics.gt_gating)
        assert gated == (name == "tao_ped2_gtgated"), name
        if gated:
            assert any("ORACLE" in str(t) for t in cfg.tags)
    gated = compose("eval", ["experiment=tao_ped2_gtgated"], tmp_path)
    plain = compose("eval", ["experiment=tao_ped2"], tmp_path)
    # the oracle experiment is the reproduction with only the gating switched on
    assert gated.segmenter == plain.segmenter and gated.prompt_filter == plain.prompt_filter
    assert plain.segmenter.version == "sam2" and plain.segmenter.backbone == "base_plus"
    assert plain.segmenter.mode == "video" and plain.prompt_filter.stale_center is True


def test_sweep_experiments_define_their_grids(tmp_path):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def sweeper_params(name):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("eval", overrides=[f"experiment={name}"], return_hydra_config=True)
        GlobalHydra.instance().clear()
        return dict(cfg.hydra.sweeper.params or {})

    assert sweeper_params("ablation_table4") == {"segmenter.mode": "video,image", "prompt_filter": "robust,none"}
    assert sweeper_params("backbone_study") == {"segmenter.backbone": "tiny,small,base_plus,large"}
    taus = sweeper_params("tau_sweep")["threshold.tau"].split(",")
    assert taus[0] == "1.0" and taus[-1] == "1.9" and len(taus) == 10


def test_launcher_and_search_configs_compose(tmp_path):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for launcher, target in [("joblib_local", "JoblibLauncher"), ("slurm", "SlurmLauncher"),
                                 ("slurm_gpu", "SlurmLauncher"), ("submitit_local_cpu", "LocalLauncher")]:
            cfg = hydra_compose("eval", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
            assert cfg.hydra.launcher._target_.endswith(target), launcher
        cfg = hydra_compose("eval", overrides=["hparams_search=optuna"], return_hydra_config=True)
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
        assert cfg.hydra.sweeper.max_failure_rate == 1.0 and cfg.optimized_metric == "val/object_rbdc"
    GlobalHydra.instance().clear()
