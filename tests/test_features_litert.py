"""The LiteRT back-end of the deep feature: RoIAlign pooling, the letterbox box mapping, real YOLO weights, and one
network pass per frame shared with the detector."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from helpers import PED2_DIR, WEIGHTS_DIR, compose, ped2_available
from tao_lab.features.yolo_litert import letterbox, letterbox_geometry, roi_pool, to_feature_map

YOLO11 = WEIGHTS_DIR / "yolo11n_int8.tflite"
needs_weights = pytest.mark.skipif(not YOLO11.is_file(),
                                   reason=f"real YOLO LiteRT weights not found at {YOLO11} (../shared/weights)")


def test_roi_pool_on_whole_cells_is_the_plain_mean():
    """Boxes on whole cells whose 7 bins hold 2 cells each: aligned RoIAlign's 2x2 samples per bin land on cell
    centres, so the pooled vector is the mean of the map over the box."""
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(5, 40, 40)).astype(np.float32)
    boxes = np.array([[0, 0, 14, 14], [3, 7, 17, 35], [20, 6, 34, 20]], np.float32)
    got = roi_pool(fmap, boxes, roi_size=7)
    want = np.stack([fmap[:, y1:y2, x1:x2].mean(axis=(1, 2)) for x1, y1, x2, y2 in boxes.astype(int)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a different box gives a different vector (the check above is not trivially satisfied)
    assert np.abs(got[0] - got[1]).max() > 0.05


def test_letterbox_matches_ultralytics_and_maps_boxes():
    from ultralytics.data.augment import LetterBox

    frame = np.random.default_rng(1).integers(0, 256, (240, 360, 3), dtype=np.uint8)
    ours = letterbox(frame, 640)
    theirs = LetterBox(640, auto=False)(image=frame)  # the detector's pre-processing for a fixed 640 input
    np.testing.assert_array_equal((ours * 255).round().astype(np.uint8), theirs[..., ::-1])
    # 360x240 -> scale 640/360, resized to 640x427, placed 106 px down (padding 106 above, 107 below)
    r, left, top, new_w, new_h = letterbox_geometry(240, 360, 640)
    assert (left, top, new_w, new_h) == (0, 106, 640, 427) and r == pytest.approx(640 / 360)
    assert (ours[105, 0] * 255).round().tolist() == [114, 114, 114]
    cells = to_feature_map(np.array([[0, 0, 360, 240], [90, 60, 180, 150]], np.float32), (240, 360), 640, 16)
    np.testing.assert_allclose(cells[0], [0, 106 / 16, 40, (106 + 240 * r) / 16], rtol=1e-6)
    np.testing.assert_allclose(cells[1], [90 * r / 16, (106 + 60 * r) / 16, 180 * r / 16, (106 + 150 * r) / 16],
                               rtol=1e-6)


def test_missing_weights_names_the_file(tmp_path):
    from tao_lab.features import DeepFeature

    missing = tmp_path / "nowhere" / "yolo11n_int8.tflite"
    with pytest.raises(FileNotFoundError, match="nowhere/yolo11n_int8.tflite"):
        DeepFeature(str(missing), backend="litert")


@needs_weights
def test_head_inputs_of_the_real_exports():
    from tao_lab.features.yolo_litert import YoloFeatureMaps

    for name in ("yolo11n_int8.tflite", "yolov8n_int8.tflite"):
        shapes = {}
        for layer in ("p3", "p4", "p5"):
            m = YoloFeatureMaps(str(WEIGHTS_DIR / name), layer)
            shapes[layer] = (m.stride, m.channels)
        assert shapes == {"p3": (8, 64), "p4": (16, 128), "p5": (32, 256)}, name


@needs_weights
@pytest.mark.skipif(not ped2_available(), reason=f"UCSD Ped2 not found at {PED2_DIR}")
def test_real_weights_on_ped2_same_object_closer_than_others():
    """Ped2 Test001 frames 100/101: YOLO's person boxes, matched across the two frames by IoU. The p4 vectors are
    finite and unit-norm; each person's vector one frame later is closer than the typical other person (the median),
    and for most persons closer than every other person (people in Ped2 are 3-4 cells of the stride-16 map, so two
    walkers of the same size and clothing can come close: measured 16 of 19 on these frames)."""
    from tao_lab.boxes import box_iou
    from tao_lab.detector import YoloDetector
    from tao_lab.features import DeepFeature

    frames = [cv2.imread(str(PED2_DIR / "UCSDped2" / "Test" / "Test001" / f"{i:03d}.jpg")) for i in (100, 101)]
    det = YoloDetector(str(YOLO11), classes=[0], conf=0.25)
    (b0, _, _), (b1, _, _) = det.predict_frames(frames)
    assert len(b0) >= 3 and len(b1) >= 3
    iou = box_iou(b0, b1)
    pairs = [(i, int(iou[i].argmax())) for i in range(len(b0)) if iou[i].max() > 0.5]
    assert len(pairs) >= 3
    feat = DeepFeature(str(YOLO11), backend="litert", layer="p4")
    f0, f1 = feat._embed(frames[0], b0), feat._embed(frames[1], b1)
    assert np.isfinite(f0).all() and f0.shape == (len(b0), 128)
    np.testing.assert_allclose(np.linalg.norm(f0, axis=1), 1.0, atol=1e-5)
    dist = 1.0 - f0 @ f1.T  # cosine distance, frame 100 rows x frame 101 columns
    nearest = 0
    for i, j in pairs:
        others = np.delete(dist[i], j)
        assert dist[i, j] < 0.5 * np.median(others), (i, j, dist[i, j], np.median(others))
        nearest += dist[i, j] < others.min()
    assert nearest >= 0.8 * len(pairs), (nearest, len(pairs))


@needs_weights
def test_detector_and_deep_feature_share_one_pass_per_frame(tmp_path, monkeypatch, caplog):
    """detector=yolo + features=deep_yolo in one pipeline: the LiteRT interpreter runs once per frame (counted on the
    Interpreter class, so ultralytics' and the feature's interpreters both count). With the detections read back from
    the stage cache, the feature runs the network itself and logs it once."""
    from ai_edge_litert.interpreter import Interpreter

    from tao_lab.pipeline import Pipeline, instantiate, load_dataset

    calls = []
    original = Interpreter.invoke
    monkeypatch.setattr(Interpreter, "invoke", lambda self: (calls.append(1), original(self))[1])
    common = ["detector=yolo", "features=deep_yolo", f"paths.weights_dir={WEIGHTS_DIR}", "dataset.num_train_clips=1",
              "dataset.num_test_clips=1", "dataset.num_frames=6", "workers=1"]
    cfg = compose("eval", common, tmp_path)
    clip = load_dataset(cfg, ["train"]).train[0]
    pipe = Pipeline(cfg)
    shared = pipe.features(clip)
    assert len(calls) == clip.num_frames == 6
    assert pipe.detector.map_tap is not None
    # the capturing interpreter changes nothing in the detections (same boxes as a detector without the tap)
    plain = instantiate(cfg.detector).detect(clip)
    with_tap = pipe.detections(clip)
    np.testing.assert_array_equal(plain.frame, with_tap.frame)
    np.testing.assert_allclose(plain.xyxy, with_tap.xyxy, atol=1e-4)
    assert len(shared["deep"]) > 0
    np.testing.assert_allclose(np.linalg.norm(shared["deep"], axis=1), 1.0, atol=1e-4)

    # same detections and tracks from the stage cache; the feature computes its own maps: same vectors
    monkeypatch.setattr("tao_lab.features.deep._SAID_STANDALONE", set())  # logged once per process
    calls.clear()  # (the plain detector above ran 6 more passes)
    cfg2 = compose("eval", common + ["features.extractors.deep.num_threads=2"], tmp_path)
    with caplog.at_level(logging.INFO, logger="tao_lab.features.deep"):
        alone = Pipeline(cfg2).features(clip)
    frames_with_objects = len(np.unique(Pipeline(cfg).tracks(clip).frame))
    assert len(calls) == frames_with_objects
    assert sum("run yolo11n_int8.tflite themselves" in r.getMessage() for r in caplog.records) == 1
    # the shared maps are stored as float16: equal to the standalone vectors up to that rounding
    np.testing.assert_allclose(shared["deep"], alone["deep"], atol=2e-3)


def test_tap_keeps_one_clip_crops_to_the_frame_and_never_guesses(caplog):
    """The maps captured by the detector's passes go to the frames they were run on, cropped to the cells the
    letterboxed frame covers (+1), one clip at a time; a count mismatch assigns nothing."""
    from types import SimpleNamespace

    from tao_lab.features.yolo_litert import FeatureMapTap

    tap = FeatureMapTap("model.tflite", "p4")
    tap.maps = SimpleNamespace(stride=16, size=640)
    full = [np.full((3, 40, 40), v, np.float32) for v in (1.0, 2.0)]
    tap._pending = list(full)
    tap.assign("a", [4, 5], (240, 360))  # frame rows 106..533 of the input: cells 6..34, +1 each side -> 5..35
    tap._pending = [full[0]]
    tap.assign("b", [0], (240, 360))  # a new clip drops clip a
    assert tap.take("a") == {}
    got = tap.take("b")
    assert list(got) == [0]
    fmap, x0, y0 = got[0]
    assert (x0, y0) == (0, 5) and fmap.shape == (3, 30, 40) and fmap.dtype == np.float16
    assert tap.take("b") == {}  # taken once
    tap._pending = [full[0]]
    with caplog.at_level(logging.WARNING):
        tap.assign("c", [0, 1], (240, 360))
    assert tap.take("c") == {} and "1 detector passes captured for 2 frames" in caplog.text


def test_share_links_only_the_same_tflite(tmp_path):
    from tao_lab.detector import YoloDetector
    from tao_lab.features import DeepFeature, VelocityFeature
    from tao_lab.features.yolo_litert import share_detector_pass

    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    det = YoloDetector(str(a))
    other = DeepFeature(str(b), backend="litert")
    assert share_detector_pass(det, [VelocityFeature(), other]) == 0 and det.map_tap is None
    same = DeepFeature(str(tmp_path / "." / "a.tflite"), backend="litert")
    assert share_detector_pass(det, [other, same]) == 1
    assert det.map_tap is same.map_tap and other.map_tap is None and same.map_tap.layer == "p4"
