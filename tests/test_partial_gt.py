"""Partial pixel ground truth (UCSD Ped1 ships masks for 10 of its 36 test clips): frame metrics on every clip,
pixel and object metrics on the masked clips only, with the counts in metrics.json."""
import json
import shutil

import pytest

from helpers import compose


@pytest.fixture(scope="module")
def ped1_like(tmp_path_factory):
    """A UCSD Ped1-style copy of the tiny synthetic dataset in which Test002 has no TestNNN_gt folder."""
    from tao_lab.dataset import make_synthetic, write_ucsd_layout

    tmp = tmp_path_factory.mktemp("partial_gt")
    ds = make_synthetic(seed=0, num_train_clips=2, num_test_clips=2, num_frames=60)
    root = write_ucsd_layout(ds, str(tmp / "data"), "UCSDped1")
    shutil.rmtree(f"{root}/Test/Test002_gt")
    return tmp


def _eval(tmp, name, extra=()):
    from tao_lab.tasks import evaluate, run_task

    cfg = compose("eval", ["dataset=ucsd_ped1", f"paths.data_dir={tmp / 'data'}", *extra], tmp)
    cfg.paths.output_dir = str(tmp / name)
    metrics = run_task(cfg, evaluate)
    return metrics, json.loads((tmp / name / "metrics.json").read_text())


def test_pixel_and_object_metrics_on_masked_clips_only(ped1_like):
    both, on_disk = _eval(ped1_like, "both")
    only1, _ = _eval(ped1_like, "only1", ["+dataset.clip_ids=[Train001,Train002,Test001]"])
    # pixel metrics exist (they vanished when one clip lacked masks) and equal those of the masked clip alone
    for key in ("test/pixel_auroc", "test/pixel_ap", "test/pixel_auroc_tao", "test/object_rbdc", "test/object_tbdc"):
        assert key in both, key
        assert both[key] == pytest.approx(only1[key], abs=1e-12), key
    # detections on the unmasked clip are not false positives: RBDC/TBDC are those of Test001 alone, not lower
    assert both["test/object_rbdc"] > 0.0
    # frame metrics use both clips
    assert both["test/frame_num_clips"] == 2 and only1["test/frame_num_clips"] == 1
    assert both["test/frame_auc_micro"] != pytest.approx(only1["test/frame_auc_micro"])
    # the counts say how many clips each level used
    assert on_disk["test/num_clips"] == 2
    assert on_disk["test/pixel_num_clips"] == 1 and on_disk["test/pixel_num_frames"] == 60
    assert on_disk["test/object_num_clips"] == 1 and on_disk["test/object_num_frames"] == 60
