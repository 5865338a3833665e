"""tao_lab.compare collects a multirun folder (hand-made here, same layout as Hydra's) into a table and a plot."""
import json
import math
import subprocess
import sys

import pytest

from helpers import ROOT


def _job(root, num, overrides, metrics=None, failed=None, tags=("t",)):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "config_resolved.yaml").write_text(f"tags: {list(tags)}\n")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if failed is not None:
        (job / "FAILED.json").write_text(json.dumps({"type": "FileNotFoundError", "message": failed}))
    return job


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    (root / ".hydra").mkdir(parents=True)  # the sweep root has its own .hydra folder (multirun.yaml): not a job
    (root / ".hydra" / "overrides.yaml").write_text("- threshold.tau=1.0,1.5\n")
    for k, tau in enumerate([1.5, 1.0, 1.2]):  # out of order on purpose
        for j, mode in enumerate(["video", "image"]):
            _job(root, 2 * k + j, [f"threshold.tau={tau}", f"segmenter.mode={mode}", "dataset=synthetic"],
                 {"test/frame_auc_micro": 0.9, "test/object_rbdc": tau / 2 + (0.1 if mode == "video" else 0),
                  "test/object_tbdc": 0.8, "test/pixel_auroc": 0.7, "time/total_s": 3.0})
    _job(root, 10, ["threshold.tau=2.0", "segmenter.mode=video", "dataset=synthetic"],
         failed="SAM2 checkpoint not found: weights/x.pt")
    return root


def test_collect_reads_every_job_and_the_failure(sweep):
    from tao_lab.compare import collect, varying_params

    records = collect(sweep)
    assert len(records) == 7  # the sweep root itself is not a job
    assert [r["job"] for r in records][-1] == "10"  # numeric order, not "10" < "2"
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and "checkpoint not found" in failed[0]["error"]
    assert varying_params(records) == ["threshold.tau", "segmenter.mode"]
    assert records[0]["tags"] == ["t"]


def test_compare_writes_csv_markdown_and_plot(sweep, tmp_path, capsys):
    from tao_lab.compare import compare

    out = compare(sweep, x="threshold.tau", y="test/object_rbdc", out_dir=tmp_path / "cmp",
                  sort_by="test/object_rbdc")
    text = capsys.readouterr().out
    assert "7 jobs" in text and "1 failed" in text and "threshold.tau" in text
    csv_text = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert csv_text[0].startswith("job,status,threshold.tau,segmenter.mode,test/frame_auc_micro")
    assert len(csv_text) == 8
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.startswith("| job | status |") and "|---|" in md
    # sorted best first, failed/nan last
    rows = out["rows"]
    assert rows[0]["threshold.tau"] == "1.5" and rows[0]["segmenter.mode"] == "video"
    assert rows[-1]["status"] == "failed" and math.isnan(rows[-1]["test/object_rbdc"])
    assert "time/total_s" not in out["metrics"]
    png = out["plot"]
    assert png.name == "compare_test_object_rbdc_vs_threshold.tau.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_categorical_parameter_gives_bar_plot(tmp_path):
    from tao_lab.compare import compare

    root = tmp_path / "sweep"
    for k, bb in enumerate(["tiny", "small", "base_plus", "large"]):
        _job(root, k, [f"segmenter.backbone={bb}"], {"test/object_rbdc": 0.5 + k / 10, "test/object_tbdc": 0.7})
    out = compare(root, quiet=True)
    assert out["params"] == ["segmenter.backbone"]
    assert out["plot"] is not None and out["plot"].is_file()
    assert [r["segmenter.backbone"] for r in out["rows"]] == ["tiny", "small", "base_plus", "large"]


def test_cli_and_clear_error_on_missing_folder(sweep, tmp_path):
    cmd = [sys.executable, "-m", "tao_lab.compare", str(sweep), "--metrics", "test/object_rbdc,test/object_tbdc",
           "--out", str(tmp_path / "o")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "test/object_tbdc" in done.stdout and (tmp_path / "o" / "compare.md").is_file()
    bad = subprocess.run([sys.executable, "-m", "tao_lab.compare", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "multirun folder not found" in bad.stderr


def test_optuna_sweep_gets_scatter_panels_rounded_numbers_and_optunas_own_figures(tmp_path):
    """An Optuna-style sweep (every job its own 15-digit values): one scatter per metric with a panel per parameter,
    4 significant digits in compare.md, full precision in compare.csv, the objective's test-label mark, and Optuna's
    figures from the saved study."""
    import optuna

    from tao_lab.compare import compare
    from tao_lab.optuna_study import FIGURES, STUDY_FILE, StudyFile, load_study

    root = tmp_path / "optuna"
    study = optuna.create_study(storage=StudyFile(root / STUDY_FILE), study_name="s", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for k in range(6):
        trial = study.ask()
        tau = trial.suggest_float("threshold.tau", 0.3, 2.5)
        matches = trial.suggest_int("prompt_filter.min_matches", 1, 4)
        value = 1 - abs(tau - 1.2) / 3
        _job(root, k, [f"threshold.tau={tau!r}", f"prompt_filter.min_matches={matches}"],
             {"test/object_rbdc": value, "val/object_rbdc": value - 0.1, "objective/uses_test_labels": 1.0,
              "objective": "test/object_rbdc: objective uses test labels"})
        study.tell(trial, value)
    (root / "optimization_results.yaml").write_text("name: optuna\n")
    assert len(load_study(root).trials) == 6  # the study was saved as it went and reloads

    out = compare(root, quiet=True)
    assert out["grid"] is False
    assert out["objective"] == "objective: test/object_rbdc: objective uses test labels"
    assert [p.name for p in out["plots"]] == ["compare_test_object_rbdc_scatter.png",
                                              "compare_val_object_rbdc_scatter.png", *FIGURES]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out["plots"])
    md = (root / "compare.md").read_text()
    assert md.startswith("**objective: test/object_rbdc: objective uses test labels**")
    tau = study.trials[0].params["threshold.tau"]
    assert f"| {tau:.4g} |" in md and repr(tau) not in md
    assert repr(tau) in (root / "compare.csv").read_text()
    assert "objective uses test labels" in (root / "compare.csv").read_text().splitlines()[1]


def test_round_sig_keeps_four_significant_digits():
    from tao_lab.compare import _cell, round_sig

    assert [round_sig(v) for v in (0.936123, 21.3456, 1234.56, 123456.0, 0.000123456)] == \
        ["0.9361", "21.35", "1235", "123500", "0.0001235"]
    assert _cell("1.7013157121071996") == "1.701" and _cell("10") == "10" and _cell("video") == "video"
