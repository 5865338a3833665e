"""`scorer=temporal_mae` in the real pipeline: swapping the scorer is the only change, train.py writes a checkpoint
that eval.py reloads to the same scores, and `training.mode=unsupervised` fits on the test clips."""
import json

import numpy as np
import pytest

from helpers import PED2_DIR, ped2_available

# the debug-size synthetic dataset and a tiny network (seconds on one core)
TINY = ["dataset.num_train_clips=3", "dataset.num_test_clips=2", "dataset.num_frames=50", "scorer.window=8",
        "scorer.stride=2", "scorer.d_model=16", "scorer.depth=1", "scorer.heads=2", "trainer.max_epochs=3",
        "scorer.self_paced.drop=[0.2]", "scorer.self_paced.round_epochs=2", "++trainer.logger=false"]


def test_training_clips_follow_training_mode(compose_cfg):
    from tao_lab.dataset import make_synthetic
    from tao_lab.pipeline import training_clips, training_mode

    ds = make_synthetic(num_train_clips=2, num_test_clips=3, num_frames=10)
    assert training_mode(compose_cfg("eval")) == "supervised"
    assert training_clips(compose_cfg("eval"), ds) == ds.train
    assert training_clips(compose_cfg("eval", ["training.mode=unsupervised"]), ds) == ds.test
    merged = compose_cfg("eval", ["training.mode=unsupervised", "training.unsupervised_source=merged"])
    assert training_clips(merged, ds) == ds.train + ds.test
    with pytest.raises(ValueError, match="training.mode"):
        training_clips(compose_cfg("eval", ["training.mode=semi"]), ds)


def test_train_then_eval_from_checkpoint_and_unsupervised_mode(tmp_path):
    from helpers import compose
    from tao_lab.tasks import evaluate, run_task, train

    cfg = compose("train", ["scorer=temporal_mae", *TINY], tmp_path)
    result = run_task(cfg, train)
    ckpt = tmp_path / "run" / "scorer.ckpt"
    assert ckpt.is_file()
    assert result["train/train_windows"] > 0 and "train/best_val_loss" in result
    # Lightning's own checkpoints (ModelCheckpoint on val/loss) land in the run dir
    assert list((tmp_path / "run").rglob("temporal_mae-round0-*.ckpt"))

    fitted = compose("eval", ["scorer=temporal_mae", *TINY], tmp_path)
    fitted.paths.output_dir = str(tmp_path / "eval_fit")
    m_fit = run_task(fitted, evaluate)          # re-uses the cached fit of the same config and clips
    loaded = compose("eval", ["scorer=temporal_mae", *TINY, f"ckpt_path={ckpt}"], tmp_path)
    loaded.paths.output_dir = str(tmp_path / "eval_ckpt")
    m_ckpt = run_task(loaded, evaluate)
    for key in ("test/frame_auc_micro", "test/pixel_auroc", "test/object_rbdc"):
        assert key in m_ckpt and np.isfinite(m_ckpt[key])
    assert m_ckpt["test/frame_auc_micro"] == pytest.approx(m_fit["test/frame_auc_micro"])

    unsup = compose("eval", ["scorer=temporal_mae", *TINY, "training.mode=unsupervised"], tmp_path)
    unsup.paths.output_dir = str(tmp_path / "eval_unsup")
    m_unsup = run_task(unsup, evaluate)
    assert np.isfinite(m_unsup["test/frame_auc_micro"])
    saved = json.loads((tmp_path / "eval_unsup" / "metrics.json").read_text())
    assert saved["test/frame_auc_micro"] == pytest.approx(m_unsup["test/frame_auc_micro"])


@pytest.mark.slow
@pytest.mark.skipif(not ped2_available(), reason="real Ped2 copy not beside the project")
def test_ped2_training_fits_in_budget(tmp_path):
    """train.py scorer=temporal_mae on the real Ped2 training set with the default config (< 10 min, 2 cores)."""
    import time

    from helpers import compose
    from tao_lab.tasks import run_task, train

    cfg = compose("train", ["scorer=temporal_mae", "dataset=ucsd_ped2", f"paths.data_dir={PED2_DIR}"], tmp_path)
    start = time.perf_counter()
    result = run_task(cfg, train)
    assert time.perf_counter() - start < 600
    assert result["train/clips"] == 16 and result["train/val_windows"] > 0
    assert (tmp_path / "run" / "scorer.ckpt").is_file()
