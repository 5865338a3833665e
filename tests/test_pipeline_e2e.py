"""The whole pipeline on a tiny synthetic dataset finds the planted anomalies, and the stage cache is re-used."""
import json

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC

E2E_DATA = [*TINY_SYNTHETIC, "dataset.num_train_clips=4", "dataset.num_frames=120"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from helpers import compose
    from tao_lab.tasks import evaluate, run_task

    tmp = tmp_path_factory.mktemp("e2e")
    # the default scorer models where objects walk and which way they go (per place), so it needs a few training
    # clips of normal activity: 4 clips of 120 frames (the main job's training set; 2 clips of 60 frames are too few
    # to learn the paths); 2 test clips keep the run short
    cfg = compose("eval", E2E_DATA, tmp)
    metrics = run_task(cfg, evaluate)
    return tmp, cfg, metrics


def test_finds_planted_anomalies(first_run):
    _, _, m = first_run
    assert m["test/frame_auc_micro"] > 0.9
    # masks overlap the GT: pixel scores rank anomalous pixels far above normal ones
    assert m["test/pixel_auroc"] > 0.8
    assert m["test/pixel_ap"] > 0.3
    assert m["test/object_rbdc"] > 0.3
    assert m["test/object_tbdc"] > 0.5
    for key in ("test/pixel_aupro@0.3", "test/pixel_f1_max", "test/pixel_auroc_tao", "test/pixel_ap_tao",
                "test/frame_auc_macro", "test/frame_ap"):
        assert 0.0 <= m[key] <= 1.0, key


def test_run_dir_holds_the_run_record(first_run):
    tmp, cfg, metrics = first_run
    run = tmp / "run"
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    assert (run / "metrics.csv").read_text().startswith("metric,value\n")
    assert "${" not in (run / "config_resolved.yaml").read_text()
    versions = json.loads((run / "versions.json").read_text())
    assert versions["numpy"] == np.__version__
    assert "commit" in json.loads((run / "git.json").read_text())
    assert (run / "per_video.csv").is_file()


def test_second_run_with_other_threshold_reuses_upstream_stages(first_run, caplog):
    import logging

    from helpers import compose
    from tao_lab.pipeline import Pipeline
    from tao_lab.tasks import evaluate, run_task

    tmp, cfg, first = first_run
    cfg2 = compose("eval", [*E2E_DATA, "threshold.tau=0.5"], tmp)
    cfg2.paths.output_dir = str(tmp / "run2")
    with caplog.at_level(logging.INFO, logger="tao_lab.tasks"):
        second = run_task(cfg2, evaluate)
    cache_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cache ")]
    for stage in ("detect", "track", "features"):
        line = next(l for l in cache_lines if l.startswith(f"cache {stage}:"))
        assert " 0 computed" in line, line
    assert second["train/threshold_tau"] == pytest.approx(0.5)
    # frame scores do not depend on the threshold
    assert second["test/frame_auc_micro"] == pytest.approx(first["test/frame_auc_micro"])
    # no detection/feature time was spent the second time
    assert "time/detect_s" not in second and "time/features_s" not in second


def test_eval_with_an_empty_test_clip(tmp_path, monkeypatch):
    """A test clip with zero detections (an empty scene) is scored at the training minimum, not a crash."""
    import csv

    from helpers import compose
    from tao_lab.detector.subtraction import BackgroundSubtractionDetector
    from tao_lab.tasks import evaluate, run_task
    from tao_lab.types import ObjectTable

    detect = BackgroundSubtractionDetector.detect

    def nothing_in_test001(self, clip):
        return ObjectTable.empty() if clip.clip_id == "Test001" else detect(self, clip)

    monkeypatch.setattr(BackgroundSubtractionDetector, "detect", nothing_in_test001)
    metrics = run_task(compose("eval", [*TINY_SYNTHETIC, "dataset.num_frames=40", "workers=1", "segmenter=boxes"],
                               tmp_path), evaluate)
    assert 0.0 <= metrics["test/frame_auc_micro"] <= 1.0 and 0.0 <= metrics["test/object_rbdc"] <= 1.0
    rows = {r["video"]: r for r in csv.DictReader(open(tmp_path / "run" / "per_video.csv"))}
    assert float(rows["Test001"]["max_frame_score"]) == 0.0 and int(rows["Test001"]["objects_segmented"]) == 0
    assert float(rows["Test002"]["max_frame_score"]) > 0.0


def test_scene_check_matches_a_direct_count_over_the_test_objects(first_run):
    """test/scene_check_<group> = the share of the test objects whose excess over the group's baseline exceeds 0.5;
    recomputed here from the pipeline's scores of the test clips."""
    from helpers import compose
    from tao_lab.pipeline import Pipeline, camera_clips, load_dataset

    tmp, _, m = first_run
    cfg = compose("eval", E2E_DATA, tmp)
    pipe = Pipeline(cfg)
    dataset = load_dataset(cfg)
    pipe.set_camera_clips(camera_clips(cfg, dataset))  # as eval does: the detector's camera background
    pipe.fit_scorer(dataset.train)
    scorer = pipe.scorer
    base = scorer.fusion__baseline.numpy()
    excess = []
    for clip in dataset.test:
        parts = pipe.scores(clip).parts
        groups = {}
        for name, spec in scorer.specs.items():
            v = spec["weight"] * np.asarray(parts[name], np.float64)
            groups[spec["group"]] = np.maximum(groups.get(spec["group"], v), v)
        excess.append(np.stack([groups[g] for g in scorer.groups]) - base[:, None])
    excess = np.concatenate(excess, axis=1)
    for g, name in enumerate(scorer.groups):
        assert m[f"test/scene_check_{name}"] == pytest.approx(np.mean(excess[g] > 0.5)), name
        assert 0.0 <= m[f"train/scene_check_{name}"] <= 1.0
