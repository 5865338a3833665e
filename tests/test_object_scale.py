"""Object scale (tao_lab.dataset.object_scale, cfg.working_object_height): a camera whose objects are small is
processed enlarged, judged by its objects' measured height, not by its frame height."""
import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, MovingSquareClip, compose
from helpers import square_crossers as _squares
from tao_lab.dataset.object_scale import (MIN_FACTOR, camera_object_scale, dataset_at_object_scale,
                                          object_height, object_scale, scaled_clips)
from tao_lab.dataset.resize import ResizedClip, working_resolution_note
from tao_lab.types import Dataset


def test_object_scale_known_answers():
    assert object_scale(19.0, 32) == pytest.approx(32 / 19)
    assert object_scale(31.0, 32) == 1.0                      # 1.03x is not worth a resampling
    assert object_scale(32 / MIN_FACTOR, 32) == pytest.approx(MIN_FACTOR)
    assert object_scale(50.0, 32) == 1.0                      # larger objects: never shrunk
    assert object_scale(None, 32) == 1.0 and object_scale(19.0, None) == 1.0  # nothing measured / option off
    with pytest.raises(ValueError, match="working_object_height"):
        object_scale(19.0, -4)


def test_area_weighted_median_known_answers():
    from tao_lab.dataset.object_scale import area_weighted_median

    # ten 4-px fragments (4 px^2 each) and three 40x20 people: the people hold the area, so their height is it
    heights = np.array([4.0] * 10 + [40.0] * 3)
    areas = np.array([16.0] * 10 + [800.0] * 3)
    assert np.median(heights) == 4.0 and area_weighted_median(heights, areas) == 40.0
    assert area_weighted_median(np.array([10.0, 20.0, 30.0]), np.ones(3)) == 20.0  # equal areas: the plain median
    # half of the area exactly reached at 20: 20 (the smallest height holding at least half)
    assert area_weighted_median(np.array([30.0, 10.0, 20.0]), np.array([2.0, 1.0, 1.0])) == 20.0


def test_the_measured_height_is_the_objects_height():
    """Squares of 16 and 24 px: the detector's object height follows the squares, not the frame."""
    cfg = compose("eval", ["progress=false"])
    small = object_height([_squares(16, s) for s in range(3)], cfg.detector)
    large = object_height([_squares(24, s) for s in range(3)], cfg.detector)
    assert small == pytest.approx(16, abs=3) and large == pytest.approx(24, abs=3)
    assert large / small == pytest.approx(1.5, abs=0.2)
    blank = MovingSquareClip(num_frames=20, squares=())                    # nothing moves: nothing measured
    assert object_height([blank], cfg.detector) is None and object_height([], cfg.detector) is None


def test_a_camera_with_small_objects_is_enlarged_to_the_target_and_one_with_tall_objects_is_not():
    small = [_squares(16, s) for s in range(2)]
    cfg = compose("eval", ["progress=false", "working_object_height=32"])
    factor = camera_object_scale(small, cfg)
    assert factor == pytest.approx(32 / object_height(small, cfg.detector)) and factor > 1.6
    data = Dataset("d", train=small, test=[_squares(16, 5)])
    seen = dataset_at_object_scale(data, cfg)
    assert all(isinstance(c, ResizedClip) for c in (*seen.train, *seen.test))  # train and test alike
    assert {(c.height, c.width) for c in seen.test} == {(round(96 * factor), round(160 * factor))}
    assert working_resolution_note(seen.test) == f"{round(160 * factor)}x{round(96 * factor)} from 160x96"
    tall = Dataset("t", train=[_squares(30, s) for s in range(2)], test=[])
    assert dataset_at_object_scale(tall, cfg) is tall                          # 30 px against 32: as it is
    off = compose("eval", ["progress=false", "working_object_height=null"])
    assert dataset_at_object_scale(data, off) is data and camera_object_scale(small, off) == 1.0
    assert scaled_clips(small, 1.0) == small


def test_the_measurement_reads_the_training_clips_else_the_test_clips():
    cfg = compose("eval", ["progress=false", "working_object_height=32"])
    no_train = Dataset("u", train=[], test=[_squares(16, 1), _squares(16, 2)])
    assert dataset_at_object_scale(no_train, cfg).test[0].height > 150            # measured on its test clips
    trained_tall = Dataset("m", train=[_squares(30, 1), _squares(30, 2)], test=[_squares(16, 3)])
    assert dataset_at_object_scale(trained_tall, cfg) is trained_tall            # the training clips decide


def test_the_main_jobs_camera_is_left_at_its_own_size_by_the_default_object_scale(tmp_path):
    """The synthetic camera's walkers (40 px by this measure) are tall enough at 160 rows: unlike
    working_min_height=240, the default object scale leaves the main job as it is; a larger target enlarges it."""
    from tao_lab.pipeline import load_dataset

    cfg = compose("eval", [], tmp_path)
    assert cfg.working_object_height == 36
    native = load_dataset(cfg)  # the main job's own dataset
    assert {(c.height, c.width) for c in (*native.train, *native.test)} == {(160, 240)}
    big = load_dataset(compose("eval", [*TINY_SYNTHETIC, "working_object_height=64"], tmp_path))
    assert {c.height for c in (*big.train, *big.test)} == {max(c.height for c in big.test)} and big.test[0].height > 300


def test_online_frames_are_enlarged_by_the_factor_measured_on_the_warm_up():
    from tao_lab.online import OnlinePipeline
    from tao_lab.pipeline import Pipeline

    clip = _squares(16, 0, num_frames=60)
    pipe = Pipeline(compose("eval", ["progress=false"]))
    online = OnlinePipeline(pipe, working_object_height=32)
    frames = list(online._object_scaled(iter(list(clip.frames())), n_warm=40))
    expected = camera_object_scale([clip.__class__(num_frames=40, height=96, width=160, seed=0,
                                                   squares=clip.squares)],
                                   compose("eval", ["progress=false", "working_object_height=32"]))
    assert online.object_scale == pytest.approx(expected) and online.object_scale > 1.6
    assert len(frames) == 60 and {f.shape[:2] for f in frames} == {(round(96 * expected), round(160 * expected))}
    np.testing.assert_array_equal(frames[45], ResizedClip(clip, frames[0].shape[:2]).frame(45))  # as offline
    off = OnlinePipeline(pipe)                         # working_object_height not given: as they come
    assert [f.shape for f in off._object_scaled(iter([clip.frame(0)]), n_warm=40)] == [(96, 160, 3)]
    assert off.object_scale == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_target_leaves_the_main_jobs_camera_alone_on_any_sample(seed):
    """The main job's synthetic camera measures 33-40 px with other generator seeds and sample sizes
    (benchmarks/object_scale_stability.py); the default target must not enlarge it on any of them (44 did on 13 of 15
    samples), while ped2_small-like cameras (23-24 px) are enlarged."""
    from hydra.utils import instantiate

    cfg = compose("eval", ["progress=false"])
    for clips, frames in ((4, 120), (8, 120), (5, 100)):
        data = instantiate(compose("eval", [f"dataset.seed={seed}", f"dataset.num_train_clips={clips}",
                                            f"dataset.num_frames={frames}", "dataset.num_test_clips=1"]).dataset)
        assert camera_object_scale(data.train, cfg) == 1.0, (seed, clips, frames)
    assert object_scale(24.0, cfg.working_object_height) >= 1.5


def test_the_object_height_is_measured_with_the_weight_free_detector_whatever_the_run_detects_with():
    from tao_lab.dataset.object_scale import measuring_detector
    from tao_lab.detector.subtraction import BackgroundSubtractionDetector

    own = measuring_detector(compose("eval", ["detector.min_area=25"]).detector)
    assert isinstance(own, BackgroundSubtractionDetector) and own.min_area == 25       # the run's, its settings
    assert own.scope == "clip" and own.split_motion == 0                                # own background, no splits
    hybrid = measuring_detector(compose("eval", ["detector=hybrid", "detector.background.min_area=30"]).detector)
    assert isinstance(hybrid, BackgroundSubtractionDetector) and hybrid.min_area == 30  # the hybrid's part
    yolo = measuring_detector(compose("eval", ["detector=yolo"]).detector)             # no weights loaded
    assert isinstance(yolo, BackgroundSubtractionDetector) and yolo.min_area == 40     # configs/detector/background


def test_planted_speeds_follow_both_resizes_of_a_twice_resized_camera():
    """Object scale 2x, then a 120-row bound (0.625x): the camera is seen 1.25x its size, and so are the planted
    speeds (not just the last resize's 0.625x)."""
    import dataclasses

    from tao_lab.dataset.resize import at_working_resolution, original_clip, resize_factor
    from tao_lab.validation.protocol import DEFAULT_PLANTS, specs_at_working_resolution

    px = tuple(dataclasses.replace(s, speed_unit="px") for s in DEFAULT_PLANTS)  # px/frame sets follow the resizes

    base = _squares(16, 0)
    twice = at_working_resolution(scaled_clips([base, _squares(16, 1)], 2.0), 120)
    assert isinstance(twice[0].base, ResizedClip) and original_clip(twice[0]) is base
    assert (twice[0].height, resize_factor(twice[0])) == (120, pytest.approx(1.25))
    specs = specs_at_working_resolution(px, twice)
    assert [s.speed for s in specs] == [pytest.approx((1.25 * s.speed[0], 1.25 * s.speed[1])) for s in px]
    assert working_resolution_note(twice) == "200x120 from 160x96"


def test_a_camera_measured_once_serves_every_target(monkeypatch):
    """The cross-scene validation measures a scene once per detector: variants that differ only in the target read
    the height measured first."""
    import tao_lab.dataset.object_scale as object_scale_module

    calls = []
    real = object_scale_module.object_height
    monkeypatch.setattr(object_scale_module, "object_height", lambda *a, **k: calls.append(1) or real(*a, **k))
    clips, measured = [_squares(16, s) for s in range(2)], {}
    f32 = camera_object_scale(clips, compose("eval", ["working_object_height=32"]), "small", measured)
    f48 = camera_object_scale(clips, compose("eval", ["working_object_height=48"]), "small", measured)
    assert len(calls) == 1 and f48 == pytest.approx(1.5 * f32)
    camera_object_scale(clips, compose("eval", ["working_object_height=32", "detector.min_area=30"]), "small", measured)
    assert len(calls) == 2                                     # another detector: measured again


def test_a_checkpoint_records_its_scale_and_an_old_one_loads_without_it(tmp_path):
    from tao_lab.dataset.object_scale import applied_object_scale, fit_resolution
    from tao_lab.pipeline import Pipeline

    clips = scaled_clips([_squares(16, s) for s in range(2)], 2.0)
    assert applied_object_scale(clips[0]) == 2.0 and applied_object_scale(_squares(16, 0)) == 1.0
    assert fit_resolution(clips) == {"camera_size": [96, 160], "object_scale": 2.0} and fit_resolution([]) is None
    pipe = Pipeline(compose("eval", [], tmp_path))
    pipe.fit_scorer(clips)
    assert pipe.scorer.fit_resolution == {"camera_size": [96, 160], "object_scale": 2.0}
    path = tmp_path / "scorer.ckpt"
    pipe.scorer.save_checkpoint(path)
    loaded = type(pipe.scorer).load_from_checkpoint(path)
    assert loaded.fit_resolution == {"camera_size": [96, 160], "object_scale": 2.0}
    pipe.scorer.fit_resolution = None                                    # as written before the record existed
    pipe.scorer.save_checkpoint(path)
    assert type(pipe.scorer).load_from_checkpoint(path).fit_resolution is None
    # a fit cached before the record existed gets it when it is read again
    cached = next((tmp_path / "cache" / "scorer").rglob("scorer.ckpt"))
    pipe.scorer.save_checkpoint(cached)
    again = Pipeline(compose("eval", [], tmp_path))
    again.fit_scorer(clips)
    assert type(pipe.scorer).load_from_checkpoint(cached).fit_resolution["object_scale"] == 2.0


def test_a_checkpoints_record_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    """A checkpoint run asks for the record once per split it reads: the file is read once, and again when it is
    written again; a missing file is refused naming it."""
    import os

    import tao_lab.scorer.base as base_module
    from tao_lab.checkpoints import CheckpointError

    path, pipe = _checkpoint(tmp_path, (96, 160), 2.0)
    reads = []
    real = base_module.load_weights
    monkeypatch.setattr(base_module, "load_weights", lambda *a, **k: reads.append(1) or real(*a, **k))
    first = base_module.checkpoint_fit_resolution(path)
    first["camera_size"].append(0)                                       # a caller's copy, not the cache's
    assert base_module.checkpoint_fit_resolution(path) == {"camera_size": [96, 160], "object_scale": 2.0}
    assert len(reads) == 1
    pipe.scorer.fit_resolution = {"camera_size": [96, 160], "object_scale": 1.5}
    pipe.scorer.save_checkpoint(path)
    os.utime(path, ns=(1, 10 ** 18))                                     # another version, even within one tick
    assert base_module.checkpoint_fit_resolution(path)["object_scale"] == 1.5 and len(reads) == 2
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        base_module.checkpoint_fit_resolution(tmp_path / "missing.ckpt")


def _checkpoint(tmp_path, camera_size, factor):
    from tao_lab.pipeline import Pipeline

    pipe = Pipeline(compose("eval", [], tmp_path))
    pipe.fit_scorer([_squares(16, 0)])
    pipe.scorer.fit_resolution = {"camera_size": list(camera_size), "object_scale": factor}
    path = tmp_path / f"scorer-{factor}.ckpt"
    pipe.scorer.save_checkpoint(path)
    return path, pipe


def test_a_run_from_a_checkpoint_processes_the_camera_at_the_checkpoints_scale(tmp_path, monkeypatch, caplog):
    """The test clips alone measure about 24 px (about 1.3x at 32); the checkpoint was fitted at 2x: 2x, nothing
    measured. Another camera size, or an old checkpoint, is measured; with the option off, its own size."""
    import logging

    import tao_lab.dataset.object_scale as object_scale_module

    path, _ = _checkpoint(tmp_path, (96, 160), 2.0)
    calls = []
    real = object_scale_module.object_height
    monkeypatch.setattr(object_scale_module, "object_height", lambda *a, **k: calls.append(1) or real(*a, **k))
    test_only = Dataset("d", train=[], test=[_squares(24, 1), _squares(24, 2)])
    cfg = compose("eval", ["working_object_height=32", f"ckpt_path={path}"])
    seen = dataset_at_object_scale(test_only, cfg)
    assert {(c.height, c.width) for c in seen.test} == {(192, 320)} and not calls
    own = round(96 * 32 / real(test_only.test, cfg.detector))                # what the test clips measure
    assert own < 150 and dataset_at_object_scale(test_only, compose("eval", ["working_object_height=32"])
                                                 ).test[0].height == own
    assert len(calls) == 1
    other, _ = _checkpoint(tmp_path, (120, 200), 2.0)
    with caplog.at_level(logging.WARNING, logger="tao_lab.dataset.object_scale"):
        measured = dataset_at_object_scale(test_only, compose("eval", ["working_object_height=32",
                                                                      f"ckpt_path={other}"]))
    assert measured.test[0].height == own and len(calls) == 2 and "training camera was 200x120" in caplog.text
    with caplog.at_level(logging.WARNING, logger="tao_lab.dataset.object_scale"):
        off = dataset_at_object_scale(test_only, compose("eval", ["working_object_height=null", f"ckpt_path={path}"]))
    assert off is test_only and "fitted on clips enlarged 2.00x" in caplog.text


def test_online_frames_from_a_checkpoint_take_its_scale_without_measuring(tmp_path, monkeypatch):
    import tao_lab.dataset.object_scale as object_scale_module
    from tao_lab.online import OnlinePipeline

    _, pipe = _checkpoint(tmp_path, (96, 160), 1.5)
    monkeypatch.setattr(object_scale_module, "object_height", lambda *a, **k: pytest.fail("measured"))
    online = OnlinePipeline(pipe, working_object_height=32)
    clip = _squares(24, 0, num_frames=10)
    frames = list(online._object_scaled(iter(list(clip.frames())), n_warm=5))
    assert online.object_scale == 1.5 and {f.shape[:2] for f in frames} == {(144, 240)}
    pipe.scorer.fit_resolution = {"camera_size": [120, 200], "object_scale": 1.5}   # another camera: measured
    monkeypatch.setattr(object_scale_module, "object_height", lambda *a, **k: 16.0)
    frames = list(OnlinePipeline(pipe, working_object_height=32)._object_scaled(iter(list(clip.frames())), n_warm=5))
    assert {f.shape[:2] for f in frames} == {(192, 320)}


def test_train_then_evaluate_the_checkpoint_on_a_copy_read_split_by_split(tmp_path, monkeypatch):
    """README's "train once, evaluate from the checkpoint" on a dataset whose reader reads only the splits a run
    needs (UCSD layout): the evaluation reads the training split for its camera background and frame alarm (it
    crashed without it), and processes both splits at the scale the checkpoint was fitted at, without measuring."""
    import json

    import tao_lab.dataset.object_scale as object_scale_module
    from tao_lab.dataset.synthetic import SyntheticGenerator
    from tao_lab.dataset.ucsd import write_ucsd_layout
    from tao_lab.tasks import evaluate, run_task, train

    write_ucsd_layout(SyntheticGenerator(seed=3, num_train_clips=2, num_test_clips=2, num_frames=50),
                      str(tmp_path / "data"), name="UCSDped2")
    data = ["dataset=ucsd_ped2", f"paths.data_dir={tmp_path / 'data'}", "working_object_height=60"]
    run_task(compose("train", data, tmp_path), train)
    ckpt = tmp_path / "run" / "scorer.ckpt"
    from tao_lab.scorer import AttributeScorer

    factor = AttributeScorer.load_from_checkpoint(ckpt).fit_resolution["object_scale"]
    assert factor > 1.15
    monkeypatch.setattr(object_scale_module, "object_height", lambda *a, **k: pytest.fail("measured"))
    cfg = compose("eval", [*data, f"ckpt_path={ckpt}"], tmp_path)
    cfg.paths.output_dir = str(tmp_path / "eval")
    metrics = run_task(cfg, evaluate)
    assert np.isfinite(metrics["test/frame_auc_micro"]) and np.isfinite(metrics["train/alarm_threshold"])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["working_resolution"].startswith(f"NOTE: processed at {round(240 * factor)}x{round(160 * factor)} "
                                                  f"from 240x160")
    # a copy without training videos (like ../shared/datasets/avenue_partial): per-clip backgrounds, no alarm
    import shutil

    shutil.rmtree(tmp_path / "data" / "UCSDped2" / "Train")
    cfg.paths.output_dir = str(tmp_path / "eval_test_only")
    alone = run_task(cfg, evaluate)
    assert np.isfinite(alone["test/frame_auc_micro"]) and "train/alarm_threshold" not in alone
