"""Real detector weights (int8 YOLO on Ped2 frames), detect-every-k-th-frame, and the hybrid detector's union."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from helpers import PED2_DIR, WEIGHTS_DIR, compose, ped2_available
from tao_lab.detector import (UNKNOWN_CLASS, BackgroundSubtractionDetector, HybridDetector, YoloDetector,
                              merge_detections)
from tao_lab.detector.hybrid import class_labels, covered_fraction
from tao_lab.detector.yolo import box_iou, interpolate_key_frames
from tao_lab.types import Clip, ObjectTable

YOLO11 = WEIGHTS_DIR / "yolo11n_int8.tflite"


def _why_no_real_weights() -> str | None:
    if not YOLO11.is_file():
        return f"real YOLO weights absent: {YOLO11} (../shared/weights, see its PROVENANCE.md)"
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed (requirements.txt pins it; run bash setup.sh)"
    if not ped2_available():
        return f"UCSD Ped2 absent: {PED2_DIR}"
    return None


# ----- the union, on synthetic boxes with known answers ---------------------------------------------------------
def test_covered_fraction_uses_the_union_of_boxes():
    blob = np.array([0, 0, 20, 10], np.float32)
    halves = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)
    assert covered_fraction(blob, halves[:1]) == pytest.approx(0.5)
    assert covered_fraction(blob, halves) == pytest.approx(1.0)  # neither alone covers it, together they do
    assert covered_fraction(blob, np.array([[30, 0, 40, 10]], np.float32)) == 0.0
    assert covered_fraction(blob, np.zeros((0, 4), np.float32)) == 0.0


def test_hybrid_union_keeps_boxes_and_the_blobs_they_do_not_explain():
    yolo = ObjectTable.build([0, 0, 2], [[10, 10, 30, 50], [100, 10, 120, 50], [10, 10, 30, 50]],
                             [0.9, 0.8, 0.7], None, [0, 7, 1])
    blobs = ObjectTable.build(
        [0, 0, 0, 1, 2],
        [[12, 12, 28, 48],    # inside the person box: explained, dropped
         [50, 10, 70, 30],    # nowhere near a box: an unknown object, kept
         [25, 10, 45, 50],    # a quarter inside the person box: kept
         [10, 10, 30, 50],    # frame 1 has no YOLO box at all: kept
         [0, 0, 200, 100]],   # frame 2: a huge blob the small box barely covers: kept
        [0.5, 0.6, 0.4, 0.3, 0.2])
    out = merge_detections(yolo, blobs, explained=0.5)
    assert out.frame.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert out.cls.tolist() == [0, 7, UNKNOWN_CLASS, UNKNOWN_CLASS, UNKNOWN_CLASS, 1, UNKNOWN_CLASS]
    np.testing.assert_array_equal(out.xyxy[2], [50, 10, 70, 30])
    np.testing.assert_array_equal(out.xyxy[3], [25, 10, 45, 50])
    np.testing.assert_allclose(out.score, [0.9, 0.8, 0.6, 0.4, 0.3, 0.7, 0.2])
    assert (out.track_id == -1).all()
    # a stricter rule (explained only when entirely covered) keeps the inner blob too
    assert len(merge_detections(yolo, blobs, explained=1.0)) == len(out)
    assert len(merge_detections(yolo, blobs, explained=0.2)) == len(out) - 1  # the quarter-covered blob goes


class _Frames(Clip):
    def __init__(self, n=10, h=48, w=64):
        super().__init__("frames", n, h, w, source="test:frames")

    def _read(self, i):
        return np.full((self.height, self.width, 3), i, np.uint8)  # the frame index in every pixel


class _FakeDetector:
    """Returns fixed per-frame rows (a stand-in for a detector whose output is known)."""

    def __init__(self, table: ObjectTable):
        self.table, self.calls = table, 0

    def detect(self, clip):
        self.calls += 1
        return self.table


def test_hybrid_detector_and_tracking_on_the_union():
    from tao_lab.tracker import ByteTracker

    n = 12
    # a YOLO person walking right and a blob of an unknown object walking left, plus fragments of the person
    yolo = ObjectTable.build(np.arange(n), [[10 + 2 * i, 10, 30 + 2 * i, 50] for i in range(n)], np.full(n, 0.9),
                             None, np.zeros(n))
    blobs = ObjectTable.build(np.repeat(np.arange(n), 2),
                              [b for i in range(n) for b in ([12 + 2 * i, 12, 28 + 2 * i, 30],
                                                             [200 - 3 * i, 60, 230 - 3 * i, 80])],
                              np.full(2 * n, 0.8))
    det = HybridDetector(_FakeDetector(yolo), _FakeDetector(blobs))
    clip = _Frames(n, 100, 260)
    out = det.detect(clip)
    assert len(out) == 2 * n and (out.cls == 0).sum() == n and (out.cls == UNKNOWN_CLASS).sum() == n
    tracks = ByteTracker().track(out, clip)
    # two tracks, each of one source and class
    assert len(np.unique(tracks.track_id)) == 2
    for t in np.unique(tracks.track_id):
        assert len(np.unique(tracks.cls[tracks.track_id == t])) == 1
    assert class_labels(det, np.array([0, UNKNOWN_CLASS]))[1] == "unknown"
    assert class_labels(BackgroundSubtractionDetector(), np.array([0])) is None


def test_hybrid_config_reuses_the_cached_parts(tmp_path):
    """detector=hybrid is composed of the detector=yolo and detector=background configs, and the pipeline caches
    each part under the key a detector=yolo run uses: a hybrid run after a yolo run does not run YOLO again."""
    from tao_lab.pipeline import Pipeline

    over = ["paths.weights_dir=" + str(tmp_path), "detector.weights=yolov8n.yaml"]
    yolo_cfg = compose("eval", ["detector=yolo", *over], tmp_path)
    hybrid_cfg = compose("eval", ["detector=hybrid", "paths.weights_dir=" + str(tmp_path),
                                  "detector.yolo.weights=yolov8n.yaml"], tmp_path)
    assert hybrid_cfg.detector._target_ == "tao_lab.detector.HybridDetector"
    assert hybrid_cfg.detector.yolo == yolo_cfg.detector
    clip = _Frames(6)
    boxes = ObjectTable.build([0, 3], [[5, 5, 20, 30], [6, 5, 21, 30]], [0.9, 0.8], None, [7, 7])
    yolo_pipe = Pipeline(yolo_cfg)
    yolo_pipe.__dict__["detector"] = _FakeDetector(boxes)  # stands in for the model; cached like the real one
    assert len(yolo_pipe.detections(clip)) == 2
    hybrid_pipe = Pipeline(hybrid_cfg)
    fake_yolo = _FakeDetector(ObjectTable.empty())  # must not be called: its part is in the cache
    fake_bg = _FakeDetector(ObjectTable.build([1], [[40, 5, 60, 30]], [0.5]))
    hybrid_pipe.__dict__["detector"] = HybridDetector(fake_yolo, fake_bg)
    out = hybrid_pipe.detections(clip)
    assert fake_yolo.calls == 0 and fake_bg.calls == 1
    assert out.frame.tolist() == [0, 1, 3] and out.cls.tolist() == [7, UNKNOWN_CLASS, 7]


# ----- detect every k-th frame ----------------------------------------------------------------------------------
def test_interpolate_key_frames_pairs_boxes_of_the_same_class():
    frames = np.array([0, 4])
    boxes = [np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.array([[4, 0, 14, 10]], np.float32)]
    out = interpolate_key_frames(frames, boxes, [np.array([0.9, 0.5]), np.array([0.7])],
                                 [np.array([0, 2]), np.array([0])])
    assert out.frame.tolist() == [0, 0, 1, 2, 3, 4]
    np.testing.assert_allclose(out.xyxy[2:5, 0], [1, 2, 3])  # the person, interpolated
    np.testing.assert_allclose(out.score[2:5], 0.7)  # the lower of the two confidences
    assert out.cls.tolist() == [0, 2, 0, 0, 0, 0]  # the car of frame 0 had no partner: key frame only
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)


def test_yolo_stride_runs_the_model_on_key_frames_only():
    det = YoloDetector(weights="yolov8n.yaml", stride=4)
    seen = []

    def predict(frames):  # one box per frame whose x follows the frame index (read from the pixels)
        out = []
        for f in frames:
            i = int(f[0, 0, 0])
            seen.append(i)
            out.append((np.array([[i, 0, i + 10, 10]], np.float32), np.array([0.8], np.float32), np.array([0])))
        return out

    det.predict_frames = predict
    out = det.detect(_Frames(10))
    assert seen == [0, 4, 8, 9]
    assert out.frame.tolist() == list(range(10))
    np.testing.assert_allclose(out.xyxy[:, 0], np.arange(10))  # interpolation recovers the linear motion
    with pytest.raises(ValueError, match="stride"):
        YoloDetector(weights="yolov8n.yaml", stride=0)


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    cfg = compose("eval", ["detector=yolo", f"paths.weights_dir={tmp_path}"], tmp_path)
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    with pytest.raises((FileNotFoundError, InstantiationException),
                       match=r"yolo11n_int8\.tflite.*shared/weights.*PROVENANCE"):
        instantiate(cfg.detector)


# ----- the real int8 weights on Ped2 frames ---------------------------------------------------------------------
@pytest.mark.skipif(_why_no_real_weights() is not None, reason=str(_why_no_real_weights()))
def test_real_int8_yolo_finds_people_the_bicycle_and_the_cart_on_ped2():
    from hydra.utils import instantiate

    from tao_lab.dataset import load_ucsd

    cfg = compose("eval", ["detector=yolo", f"paths.weights_dir={WEIGHTS_DIR}"])
    det = instantiate(cfg.detector)
    data = load_ucsd(str(PED2_DIR), "ped2", clip_ids=["Test001", "Test004"], splits=("test",))
    clips = {c.clip_id: c for c in data.test}

    def gt_box(clip, i):
        ys, xs = np.nonzero(clip.gt.mask(i))
        return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)

    cases = [("Test001", 60), ("Test001", 99), ("Test004", 99)]
    found = det.predict_frames([clips[c].frame(i) for c, i in cases])
    names = det.class_names
    for (c, i), (xyxy, conf, cls) in zip(cases, found):
        assert (cls == 0).sum() >= 8, f"{c} frame {i}: crowded walkway, few persons found ({(cls == 0).sum()})"
        assert (conf >= cfg.detector.conf).all()
    # Test001 frame 60: the cyclist entering on the left is found as a person
    xyxy, _, cls = found[0]
    assert (box_iou(gt_box(clips["Test001"], 60), xyxy)[0][cls == 0] >= 0.2).any()
    # Test001 frame 99: the same cyclist's bicycle is found as a bicycle
    xyxy, _, cls = found[1]
    assert names[1] == "bicycle" and (box_iou(gt_box(clips["Test001"], 99), xyxy)[0][cls == 1] >= 0.3).any()
    # Test004 frame 99: the cart is found as a non-person class (COCO has no cart: truck)
    xyxy, _, cls = found[2]
    assert (box_iou(gt_box(clips["Test004"], 99), xyxy)[0][cls != 0] >= 0.5).any()


# ----- online mode accepts the same detectors -------------------------------------------------------------------
def test_online_mode_runs_the_hybrid_detector(tmp_path):
    from helpers import write_video
    from tao_lab.online import OnlinePipeline

    stream = write_video(tmp_path / "stream.mp4")
    cfg = compose("infer", ["input=unused", "buffer_frames=8", "detector=hybrid", f"paths.weights_dir={tmp_path}",
                            "detector.yolo.weights=yolov8n.yaml"], tmp_path)
    online = OnlinePipeline.from_config(cfg)
    calls = []

    def predict(frames):  # a "person" standing still in the top-left corner of every frame
        calls.append(len(frames))
        return [(np.array([[0, 0, 20, 30]], np.float32), np.array([0.9], np.float32), np.array([0]))
                for _ in frames]

    online.pipe.detector.yolo.predict_frames = predict
    results = list(online.run(str(stream), fit_seconds=2.0, max_frames=80))
    assert len(results) == 30
    assert sum(calls) >= 80  # the model ran on the warm-up frames (scorer fit) and on every streamed frame
    for r in results:
        assert (r.objects.cls == 0).sum() == 1  # the YOLO box, every frame
    # the moving synthetic objects come from the background model as unknown blobs
    assert sum(int((r.objects.cls == UNKNOWN_CLASS).sum()) for r in results) > 10
