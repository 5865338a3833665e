"""val/ metrics inside a run: the same figure as `python -m tao_lab.validation`, never a test label read, and the
skips said out loud."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, compose

PLANTED = [*TINY_SYNTHETIC, "validation=planted"]


def test_in_run_figure_is_the_validation_cli_figure(tmp_path, capsys):
    from tao_lab.pipeline import load_dataset
    from tao_lab.tasks import run_task, train as train_task
    from tao_lab.validation import DEFAULT_PLANTS, validate
    from tao_lab.validation.__main__ import main as validation_cli
    from tao_lab.validation.in_run import validation_metrics

    # min_area_height off: on these 2 short training clips (60 frames) the depth-relative smallest blob keeps many
    # small blobs and the planted objects' RBDC falls 0.34 -> 0.10 (session 58; the main job's 4 clips of 120 frames
    # keep theirs, 0.777 -> 0.779), so the localisation bound below is checked on the detector it was set for
    detector = ["detector.min_area_height=null"]
    cfg = compose("eval", [*PLANTED, *detector], tmp_path)
    train = load_dataset(cfg).train
    got = validation_metrics(cfg, train, "synthetic", show_progress=False)
    m = got.metrics
    names = [p.name for p in DEFAULT_PLANTS]
    assert set(m) == {f"val/frame_auc_{n}" for n in names} | {"val/frame_auc_mean", "val/object_rbdc",
                                                              "val/object_tbdc", "val/pixel_ap", "val/pixel_f1_max",
                                                              "val/pixel_auroc", "val/clips", "time/validation_s"}
    assert m["val/clips"] == 2 and "2 training clips" in got.note
    assert "speeds in multiples of the training tracks' normal pace" in got.note  # the unit is said, in px/frame
    assert m["val/frame_auc_walker_fast"] > 0.9  # a fast planted walker is found
    # the planted objects are localised (0.28 / 0.99 measured since the plants' speeds follow the camera's normal
    # speed, 1.5-1.8 px/frame here: the fast walker's 6-14 px/frame boxes overlap its pasted pixels less)
    assert 0.2 < m["val/object_rbdc"] <= 1 and 0.5 < m["val/object_tbdc"] <= 1
    assert m["val/frame_auc_mean"] == pytest.approx(np.mean([m[f"val/frame_auc_{n}"] for n in names]))

    # `python -m tao_lab.validation` with the same settings and seed prints the same numbers (4 decimals) ...
    assert validation_cli(["--seed", "0", f"paths.cache_dir={tmp_path / 'cache'}", "progress=false",
                           *TINY_SYNTHETIC, *detector]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("configured"))
    printed = [float(v) for v in row.split("|")[1:]]
    assert printed == pytest.approx([m[f"val/frame_auc_{n}"] for n in names] + [m["val/frame_auc_mean"]], abs=5e-5)
    # ... and the protocol's function gives them exactly (its fits are not cached; the run's are)
    direct = validate(cfg, {"run": cfg}, train, seed=0, show_progress=False)
    assert [m[f"val/frame_auc_{n}"] for n in names] == pytest.approx([direct.auc["run"][n] for n in names],
                                                                       abs=1e-12)
    # a train run writes the same val/ metrics (from the cache filled above)
    trained = run_task(compose("train", [*PLANTED, *detector], tmp_path), train_task)
    assert {k: v for k, v in trained.items() if k.startswith("val/")} == \
        {k: v for k, v in m.items() if k.startswith("val/")}


def test_val_pixel_metrics_match_sklearn_on_the_planted_pixels(tmp_path):
    """val/pixel_ap and val/pixel_auroc recomputed independently: each fold's segmentation of its planted copy (the
    run's pipeline fitted on the other training clips), every pixel of every frame pooled, the planted object's
    ground truth on its labelled frames as positives (validation.pixel_gt: its pasted pixels, or their convex hull),
    sklearn's average precision and ROC AUC."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from tao_lab.pipeline import Pipeline, load_dataset
    from tao_lab.validation.in_run import cached_planted_clips, plant_specs, validation_metrics
    from tao_lab.validation.protocol import planting_pipeline

    cfg = compose("eval", PLANTED, tmp_path)
    train = load_dataset(cfg).train
    specs = plant_specs(cfg.validation)
    planted = cached_planted_clips(train, planting_pipeline(cfg), specs, 0, False)
    maps = []
    for v in range(len(train)):
        fold = Pipeline(cfg)
        fold.set_camera_clips(train)
        fold.fit_scorer([c for u, c in enumerate(train) if u != v])
        maps.append(np.asarray(fold.segmentation(planted[specs[v % len(specs)].name][v]).score_maps, np.float32))
    found = {}
    for shape in ("pasted", "hull"):
        m = validation_metrics(compose("eval", [*PLANTED, f"validation.pixel_gt={shape}"], tmp_path), train,
                               "synthetic", show_progress=False).metrics
        scores, truth = [], []
        for v in range(len(train)):
            clip = planted[specs[v % len(specs)].name][v]
            for i in range(clip.num_frames):
                scores.append(maps[v][i].ravel())
                truth.append((clip.object_mask(i, shape) & bool(clip.labels[i])).ravel())
        scores, truth = np.concatenate(scores), np.concatenate(truth)
        assert truth.any() and (scores[truth] > 0).any()
        assert m["val/pixel_ap"] == pytest.approx(average_precision_score(truth, scores), abs=1e-6)
        assert m["val/pixel_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
        assert 0 < m["val/pixel_f1_max"] <= 1
        found[shape] = (m, truth.sum())
    assert found["hull"][1] > found["pasted"][1]  # the hull adds the pixels between the legs, around the outline
    m = found["pasted"][0]
    with pytest.raises(ValueError, match="validation.pixel_gt must be one of"):
        validation_metrics(compose("eval", [*PLANTED, "validation.pixel_gt=outline"], tmp_path), train, "synthetic",
                           show_progress=False)
    # pixel: false leaves them out (object metrics stay)
    off = validation_metrics(compose("eval", [*PLANTED, "validation.pixel=false"], tmp_path), train, "synthetic",
                             show_progress=False).metrics
    assert "val/pixel_ap" not in off and off["val/object_rbdc"] == m["val/object_rbdc"]


def _with_test_gt(real_load, mode: str):
    """``real_load`` (load_dataset) with the TEST clips' ground truth removed or scrambled (training clips untouched)."""
    from tao_lab.types import ClipGT

    def load(cfg, **kwargs):
        dataset = real_load(cfg, **kwargs)
        rng = np.random.default_rng(7)
        for clip in dataset.test:
            if mode == "removed":
                clip.gt = None
            else:  # scrambled frame labels, no masks or tracks
                clip.gt = ClipGT(frame_labels=rng.permutation(np.asarray(clip.gt.frame_labels, bool)))
        return dataset
    return load


def test_val_metrics_do_not_change_when_test_labels_are_removed_or_scrambled(tmp_path, monkeypatch):
    import tao_lab.pipeline
    from tao_lab.tasks import evaluate, run_task

    overrides = [*PLANTED, "dataset.num_test_clips=1", "validation.plants=[{name:fast,kind:walker,speed:[6,8]}]"]
    runs, real_load = {}, tao_lab.pipeline.load_dataset
    for mode in ("original", "removed", "scrambled"):
        if mode != "original":
            monkeypatch.setattr(tao_lab.pipeline, "load_dataset", _with_test_gt(real_load, mode))
        # a fresh cache each time: nothing carries over from the run that had the labels
        runs[mode] = run_task(compose("eval", overrides, tmp_path / mode), evaluate)
    val = {mode: {k: v for k, v in m.items() if k.startswith("val/")} for mode, m in runs.items()}
    assert set(val["original"]) == {"val/frame_auc_fast", "val/frame_auc_mean", "val/object_rbdc",
                                    "val/object_tbdc", "val/pixel_ap", "val/pixel_f1_max", "val/pixel_auroc",
                                    "val/clips"}
    assert val["removed"] == val["original"] and val["scrambled"] == val["original"]
    # the test side did see the change
    assert "test/frame_auc_micro" not in runs["removed"]
    assert runs["scrambled"]["test/frame_auc_micro"] != runs["original"]["test/frame_auc_micro"]


@pytest.mark.parametrize("overrides, reason", [
    (["dataset.num_train_clips=1"], "has 1 training clip(s)"),
    (["validation=none"], "validation=none"),
    (["+metrics.gt_gating=true"], "gt_gating"),
])
def test_skips_say_why(tmp_path, overrides, reason, caplog):
    from tao_lab.pipeline import load_dataset
    from tao_lab.validation.in_run import validation_metrics

    cfg = compose("eval", [*PLANTED, *overrides], tmp_path)
    got = validation_metrics(cfg, load_dataset(cfg).train, "synthetic", show_progress=False)
    assert got.metrics == {} and reason in got.note


def test_trainer_scorers_are_skipped_with_a_note(tmp_path):
    from tao_lab.validation.in_run import validation_metrics

    cfg = compose("eval", [*PLANTED, "scorer=temporal_mae"], tmp_path)
    got = validation_metrics(cfg, [object(), object()], "synthetic", show_progress=False)
    assert got.metrics == {} and "Lightning Trainer" in got.note


def test_planted_box_table_follows_the_planted_object():
    from tao_lab.validation import PlantSpec, plant
    from tao_lab.validation.in_run import planted_box_table
    from helpers import grey_clip, reference_objects

    clip = plant(grey_clip(), PlantSpec("p", "box", (3.0, 3.0), duration=(20, 20)), reference_objects(), None,
                 np.random.default_rng(3))
    gt = planted_box_table(clip)
    assert np.array_equal(gt.frame, np.flatnonzero(clip.labels)) and set(gt.track_id) == {0}
    h, w = clip.alpha.shape
    i = len(gt) - 1  # last labelled frame: the box sits where the sprite was pasted, clipped to the frame
    x, y = clip.top_left[gt.frame[i]]
    assert gt.xyxy[i] == pytest.approx([max(x, 0), max(y, 0), min(x + w, clip.width), min(y + h, clip.height)])
    assert len(planted_box_table(clip, min_area=1e9)) == 0
    # a sprite pasted scaled (behaviour plants change the scale per frame): the box is the scaled alpha's, checked
    # against the alpha actually pasted into a frame (warped as the clip pastes it)
    import cv2

    from tao_lab.validation.planted import PlantedClip

    T = clip.num_frames
    scale = np.linspace(0.5, 2.0, T)
    top_left = np.tile([[20.0, 10.0]], (T, 1))
    scaled = PlantedClip(clip.base, clip.sprite, clip.alpha, top_left, "scaled", scale=scale)
    gt = planted_box_table(scaled)
    for i in (0, T // 2, T - 1):
        m = np.float32([[scale[i], 0, 20.0], [0, scale[i], 10.0]])
        pasted = cv2.warpAffine(clip.alpha.astype(np.float32), m, (clip.width, clip.height)) > 0.5
        ys, xs = np.nonzero(pasted)
        row = np.flatnonzero(gt.frame == i)[0]
        assert gt.xyxy[row] == pytest.approx([xs.min(), ys.min(), min(xs.max() + 1, clip.width),
                                              min(ys.max() + 1, clip.height)], abs=1.5)


def test_validation_group_defaults_to_planted_in_eval_and_train_and_parses_plants():
    from omegaconf import OmegaConf

    from tao_lab.config import compose_config
    from tao_lab.validation import DEFAULT_PLANTS, PlantSpec
    from tao_lab.validation.in_run import plant_specs

    for entry in ("eval", "train"):
        cfg = compose_config([], config_name=entry)
        assert cfg.validation.kind == "planted" and plant_specs(cfg.validation) == DEFAULT_PLANTS
    assert compose_config(["validation=none"]).validation.kind == "none"
    assert compose_config([], config_name="eval").optimized_metric == "val/object_rbdc"
    custom = OmegaConf.create({"plants": [{"name": "fast", "kind": "walker", "speed": [6, 8]}]})
    assert plant_specs(custom) == (PlantSpec("fast", "walker", (6.0, 8.0)),)
    with pytest.raises(ValueError, match="name, kind and speed"):
        plant_specs(OmegaConf.create({"plants": [{"name": "x"}]}))


def test_folds_on_worker_processes_give_the_one_worker_figures(tmp_path, monkeypatch):
    """With worker processes the folds run on the workers first (into the stage cache) and the loop reads them back:
    every val/ metric equals the one-worker run's, and no fold's scorer is fitted in this process."""
    import os

    from tao_lab.pipeline import Pipeline, load_dataset
    from tao_lab.validation.in_run import validation_metrics

    runs = {}
    for workers in (1, 2):
        cfg = compose("eval", [*PLANTED, f"workers={workers}", "worker_kind=process"], tmp_path / f"w{workers}")
        train = load_dataset(cfg).train
        fits = []
        real = Pipeline.new_fitted_scorer
        monkeypatch.setattr(Pipeline, "new_fitted_scorer", lambda self, items: fits.append(os.getpid()) or
                            real(self, items))
        runs[workers] = validation_metrics(cfg, train, "synthetic", show_progress=False).metrics
        monkeypatch.setattr(Pipeline, "new_fitted_scorer", real)
        if workers == 2:
            assert fits == []  # every fold fitted in a worker (this process read the fits from the cache)
        else:
            assert len(fits) == len(train)
    drop = {"time/validation_s"}
    assert {k: v for k, v in runs[2].items() if k not in drop} == {k: v for k, v in runs[1].items() if k not in drop}
