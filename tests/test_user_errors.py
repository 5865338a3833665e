"""User errors read as user errors: one message, a non-zero exit, no traceback (unless HYDRA_FULL_ERROR=1); cheap
checks before the expensive stages; an interrupted run leaves INTERRUPTED.json in its run dir."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from helpers import ROOT, TINY_SYNTHETIC, compose


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(PYTHONPATH=str(ROOT), PROJECT_ROOT=str(ROOT), **extra)
    return env


def _eval_cli(tmp_path, *overrides, **env):
    cmd = [sys.executable, "eval.py", f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
           "progress=false", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env(**env))


def test_bad_data_dir_prints_one_message_and_exits_2(tmp_path):
    missing = tmp_path / "no_such_dataset"
    p = _eval_cli(tmp_path, "dataset=ucsd_ped2", f"paths.data_dir={missing}")
    assert p.returncode == 2, p.stderr
    out = p.stdout + p.stderr
    assert "Traceback" not in out and "Error executing job" not in out
    assert f"tao_lab eval: error: UCSD UCSDped2 dataset directory not found: {missing}" in p.stderr
    assert "paths.data_dir" in p.stderr and "HYDRA_FULL_ERROR=1" in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 4
    failed = json.loads((tmp_path / "run" / "FAILED.json").read_text())
    assert failed["type"] == "DataError" and failed["user_error"] is True and str(missing) in failed["message"]
    # the traceback is still there for whoever asks for it
    full = _eval_cli(tmp_path, "dataset=ucsd_ped2", f"paths.data_dir={missing}", HYDRA_FULL_ERROR="1")
    assert full.returncode != 0 and "Traceback" in full.stderr and "DataError" in full.stderr


def test_bug_keeps_its_traceback(tmp_path):
    from tao_lab.tasks import run_cli

    def buggy(cfg, logger):
        raise ZeroDivisionError("a bug, not a user error")

    with pytest.raises(ZeroDivisionError):
        run_cli(compose("eval", TINY_SYNTHETIC, tmp_path), buggy)


@pytest.mark.parametrize("override, error, words", [
    ("threshold.tau=abc", "ValueError", ["'threshold'", "could not convert string to float: 'abc'"]),
    ("metrics.fpr_limit=abc", "ConfigError", ["metrics.fpr_limit='abc' is not a number", "metrics.fpr_limit=0.3"]),
    ("metrics.label_mask_mismatch=sometimes", "ConfigError", ["label_mask_mismatch", "sometimes"]),
    ("segmenter=sam2", "FileNotFoundError", ["sam2.1_hiera_base_plus.pt", "segmenter.checkpoint"]),
    ("training.mode=semi", "ConfigError", ["training.mode must be 'supervised' or 'unsupervised', got 'semi'"]),
    ("dataset.num_frames=many", "TypeError", ["bad value in the config group 'dataset'", "make_synthetic"]),
])
def test_cheap_checks_fail_before_extraction(tmp_path, capsys, override, error, words):
    from tao_lab.tasks import evaluate, run_cli

    cfg = compose("eval", [*TINY_SYNTHETIC, override, f"paths.weights_dir={tmp_path / 'no_weights'}"], tmp_path)
    with pytest.raises(SystemExit) as e:
        run_cli(cfg, evaluate)
    assert e.value.code == 2
    msg = capsys.readouterr().err
    assert all(w in msg for w in words), msg
    assert json.loads((tmp_path / "run" / "FAILED.json").read_text())["type"] == error
    # nothing expensive ran: the stage cache was never created
    assert not (tmp_path / "cache").exists()


def test_mask_of_wrong_size_fails_before_the_pipeline(tmp_path):
    from tao_lab.dataset import DataError, make_synthetic, write_ucsd_layout
    from tao_lab.tasks import evaluate, run_task

    ds = make_synthetic(seed=0, num_train_clips=1, num_test_clips=2, num_frames=10, height=48, width=64)
    root = write_ucsd_layout(ds, str(tmp_path / "data"), "UCSDped2")
    last = os.path.join(root, "Test", "Test002_gt", "010.png")
    cv2.imwrite(last, np.zeros((24, 32), np.uint8))  # half size
    cfg = compose("eval", ["dataset=ucsd_ped2", f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    with pytest.raises(DataError, match="010.png has size 32x24"):
        run_task(cfg, evaluate)
    assert not (tmp_path / "cache").exists()


def test_keyboard_interrupt_leaves_a_marker(tmp_path):
    from tao_lab.tasks import run_task

    def interrupted(cfg, logger):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_task(compose("eval", TINY_SYNTHETIC, tmp_path), interrupted)
    info = json.loads((tmp_path / "run" / "INTERRUPTED.json").read_text())
    assert info["interrupted"] is True and info["signal"] == "SIGINT"
    assert not (tmp_path / "run" / "FAILED.json").exists()


_SLEEPER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers import compose
from tao_lab.tasks import run_cli

def slow(cfg, logger):
    Path({ready!r}).write_text("ready")
    time.sleep(120)
    return {{}}

run_cli(compose("eval", [], Path({tmp!r})), slow)
"""


def test_sigterm_leaves_a_marker_and_exits_143(tmp_path):
    ready = tmp_path / "ready"
    code = _SLEEPER.format(tests=str(ROOT / "tests"), ready=str(ready), tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # wait for the task to start (imports take a few seconds on a busy machine)
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    info = json.loads((tmp_path / "run" / "INTERRUPTED.json").read_text())
    assert info["signal"] == "SIGTERM"


def test_unreadable_input_video_is_one_message(tmp_path, capsys):
    from tao_lab.tasks import infer, run_cli

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SystemExit) as e:
        run_cli(compose("infer", [f"input={bad}"], tmp_path), infer)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"tao_lab infer: error: cannot read input '{bad}': cannot open video file {bad}" in err
    assert "full_key" not in err and "Error in call to target" not in err


def test_fit_window_longer_than_the_input_is_one_message(tmp_path, capsys):
    """infer.py without a checkpoint fits on the input's first fit_seconds: an input shorter than that is the user's to
    fix (one message naming the input's length and a fit_seconds that fits, exit 2), not a traceback."""
    from helpers import write_video

    from tao_lab.tasks import infer, run_cli

    video = write_video(tmp_path / "short.mp4", num_frames=40)  # 1.6 s at 25 fps
    with pytest.raises(SystemExit) as e:
        run_cli(compose("infer", [f"input={video}", "fit_seconds=10"], tmp_path), infer)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "tao_lab infer: error: fit_seconds=10 covers the whole input (40 frames, 1.6 s at 25 fps)" in err
    assert "fit_seconds=0.6, the first 40%" in err and "Traceback" not in err


def test_plain_ctrl_c_exits_130_with_a_message_naming_it(tmp_path, capsys):
    from tao_lab.tasks import run_cli

    def interrupted(cfg, logger):
        raise KeyboardInterrupt  # what Ctrl+C raises: no message of its own

    with pytest.raises(SystemExit) as e:
        run_cli(compose("eval", TINY_SYNTHETIC, tmp_path), interrupted)
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "tao_lab eval: interrupted by SIGINT; marked in" in err and str(tmp_path / "run" / "INTERRUPTED.json") in err


def _interrupting_module(interruption):
    import lightning
    import torch

    class Interrupted(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, i):
            if i == 2:
                raise interruption
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Interrupted()


@pytest.mark.parametrize("interruption", ["ctrl_c", "sigterm"])
def test_an_interrupted_lightning_fit_stays_an_interruption(interruption):
    """Lightning turns an interruption inside fit into sys.exit(1) (the control); through fit_keeping_interrupts the
    interruption itself comes out, the SIGTERM one with its signal, and the SIGINT handler is the one from before."""
    import lightning
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tao_lab.user_errors import RunInterrupted, fit_keeping_interrupts

    def trainer():
        return lightning.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False)

    def make():
        return KeyboardInterrupt() if interruption == "ctrl_c" else RunInterrupted(signal.SIGTERM)

    loader = DataLoader(TensorDataset(torch.rand(16, 2)), batch_size=2)
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # the control: what Lightning does by itself
            trainer().fit(_interrupting_module(make()), loader)
        signal.signal(signal.SIGINT, before)

        with pytest.raises(KeyboardInterrupt) as e:
            fit_keeping_interrupts(trainer(), _interrupting_module(make()), loader)
        if interruption == "sigterm":
            assert isinstance(e.value, RunInterrupted) and e.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) == before
    finally:
        signal.signal(signal.SIGINT, before)
