"""BlazePose through LiteRT (features=pose_blazepose, scorer=attribute_pose, segmenter=pose_person).

Fast tests need no weights: the pre-processing (ROI, letterbox transform, heatmap refinement) on synthetic inputs,
the feature's rows and the segmenter's masks with a stand-in for the model, the pose attribute on synthetic
keypoints, the missing-weights errors. The real-weights tests on Ped2 crops are ``slow`` (real Ped2) and skip
without ../shared/weights or ../shared/datasets/ucsd_ped2.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CONFIG_DIR, PED2_DIR, WEIGHTS_DIR, ArrayClip
from tao_lab.features import FrameContext, FlowEstimator, PoseFeature, extract_features
from tao_lab.features.blazepose import (NUM_KEYPOINTS, TENSOR_SIZE, BlazePose, LetterboxTransform, PoseResult,
                                        refine_from_heatmap, roi_from_box)
from tao_lab.segmenter import ForegroundSegmenter, PosePersonSegmenter
from tao_lab.types import ObjectScores, ObjectTable, Prompts

LANDMARK = WEIGHTS_DIR / "pose_landmark_full.tflite"
PED2_TRAIN = PED2_DIR / "UCSDped2" / "Train"
# Hand-picked on Train001 frame 060 (checked by viewing the frame): three lone walkers, three empty patches.
WALKERS = [(84, 195, 104, 238), (205, 126, 225, 157), (301, 118, 313, 145)]
EMPTY = [(150, 70, 190, 110), (200, 185, 240, 225), (20, 20, 60, 60)]


# ------------------------------------------------------------------------------------------ pre-processing
def test_roi_is_mediapipes_square_with_the_125_margin():
    np.testing.assert_allclose(roi_from_box((10, 20, 30, 100)), [20.0, 60.0, 100.0])  # 1.25 x the longer side 80
    np.testing.assert_allclose(roi_from_box((0, 0, 40, 10), scale=1.0), [20.0, 5.0, 40.0])


def test_letterbox_maps_a_known_crop_pixel_to_a_known_tensor_pixel_and_back():
    # ROI centred at (50, 50), side 128 -> 2 tensor px per image px, left/top edge at -14
    tf = LetterboxTransform.square((50.0, 50.0, 128.0))
    np.testing.assert_allclose(tf.to_tensor([[40.0, 30.0], [-14.0, -14.0], [114.0, 114.0]]),
                               [[108.0, 88.0], [0.0, 0.0], [256.0, 256.0]])
    pts = np.random.default_rng(0).uniform(-20, 120, (50, 2))
    np.testing.assert_allclose(tf.to_image(tf.to_tensor(pts)), pts, atol=1e-9)
    # the crop: one bright pixel lands exactly on its tensor pixel, values scaled to [0, 1] (float range 0..1)
    img = np.zeros((100, 100, 3), np.uint8)
    img[30, 40] = (255, 128, 0)
    crop = tf.crop(img)
    assert crop.shape == (TENSOR_SIZE, TENSOR_SIZE, 3) and crop.dtype == np.float32
    np.testing.assert_allclose(crop[88, 108], [1.0, 128 / 255, 0.0], atol=1e-6)
    np.testing.assert_allclose(crop[88, 109], [0.5, 64 / 255, 0.0], atol=1e-2)  # bilinear half-way
    assert crop[88, 110].max() == 0.0
    # outside the frame the border is replicated (ImageToTensorCalculator's default), not zero
    img2 = np.full((100, 100, 3), 200, np.uint8)
    assert np.allclose(tf.crop(img2)[0, 0], 200 / 255)


def test_letterbox_of_a_non_square_roi_equals_mediapipes_padding_removal_and_projection():
    tf = LetterboxTransform(cx=60.0, cy=40.0, width=50.0, height=100.0)  # padded left/right to 100 x 100
    assert tf.pad == pytest.approx((0.25, 0.0, 0.25, 0.0))
    t = np.random.default_rng(1).uniform(64, 192, (20, 2))  # tensor px inside the unpadded part
    pl, pt, pr, pb = tf.pad
    xn = (t[:, 0] / TENSOR_SIZE - pl) / (1 - pl - pr)  # LandmarkLetterboxRemovalCalculator
    yn = (t[:, 1] / TENSOR_SIZE - pt) / (1 - pt - pb)
    expected = np.stack([tf.cx + (xn - 0.5) * tf.width, tf.cy + (yn - 0.5) * tf.height], axis=1)  # projection
    np.testing.assert_allclose(tf.to_image(t), expected, atol=1e-9)


def test_mask_back_projection_inverts_the_crop():
    tf = LetterboxTransform.square((30.0, 40.0, 64.0))
    prob = np.zeros((TENSOR_SIZE, TENSOR_SIZE), np.float32)
    prob[64:192, 96:160] = 1.0  # ROI top-left (-2, 8), 4 tensor px per image px: y 8 + [16, 48), x -2 + [24, 40)
    back = tf.mask_to_image(prob, 80, 60)
    on = back > 0.5
    ys, xs = np.nonzero(on)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (24, 55, 22, 37)
    assert back[0, 0] == 0.0 and back.shape == (80, 60)


def test_heatmap_refinement_follows_the_published_calculator():
    hm = np.full((64, 64, 2), -20.0, np.float32)
    hm[10, 20, 0] = 5.0  # a confident peak near landmark 0
    hm[40, 40, 1] = -1.0  # landmark 1: max sigmoid 0.27 < 0.5 -> unchanged
    xy = np.array([[21.5 / 64, 11.2 / 64], [40.2 / 64, 40.2 / 64]])
    out = refine_from_heatmap(xy, hm)
    np.testing.assert_allclose(out[0], [20 / 64, 10 / 64], atol=1e-6)  # weighted (col, row) / size
    np.testing.assert_allclose(out[1], xy[1])


# ------------------------------------------------------------------------------------------ missing weights
def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    missing = tmp_path / "pose_landmark_full.tflite"
    for build in (lambda: PoseFeature(weights=str(missing), backend="litert"),
                  lambda: PosePersonSegmenter(weights=str(missing)), lambda: BlazePose(str(missing))):
        with pytest.raises(FileNotFoundError, match=r"pose_landmark_full\.tflite.*PROVENANCE\.md") as exc:
            build()
        assert str(missing) in str(exc.value)
    with pytest.raises(ValueError, match="backend"):
        PoseFeature(weights=str(missing), backend="onnx")


# ------------------------------------------------------------------------------------------ feature rows
class FakePose:
    """Stands in for BlazePose: keypoints on a fixed grid of the ROI, presence per call from a list."""

    def __init__(self, presences):
        self.presences = list(presences)
        self.boxes = []

    def __call__(self, rgb, box, mask=False):
        self.boxes.append(np.asarray(box, np.float64))
        x1, y1, x2, y2 = box
        kp = np.stack([np.linspace(x1, x2, NUM_KEYPOINTS), np.linspace(y1, y2, NUM_KEYPOINTS)], axis=1)
        tf = LetterboxTransform.square(roi_from_box(box))
        prob = np.ones((TENSOR_SIZE, TENSOR_SIZE), np.float32) if mask else None
        return PoseResult(kp, np.full(NUM_KEYPOINTS, 0.9), self.presences.pop(0), tf, prob)


def litert_feature(tmp_path, presences):
    weights = tmp_path / "pose_landmark_full.tflite"
    weights.write_bytes(b"")  # the interpreter loads lazily; FakePose replaces it
    feat = PoseFeature(weights=str(weights), backend="litert")
    feat._blazepose = FakePose(presences)
    return feat


def test_litert_rows_are_box_relative_with_nan_for_non_persons_and_absent_poses(tmp_path):
    feat = litert_feature(tmp_path, [0.99, 0.2, 0.97])
    assert feat.dim == 100
    frame = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[10, 20, 30, 60], [50, 20, 70, 60], [80, 10, 100, 50], [120, 30, 150, 90]], np.float32)
    # classes: person, person (low presence), bicycle (not run), unknown hybrid blob (run)
    ctx = FrameContext(0, frame, FlowEstimator(), None, None, np.array([0, 0, 1, -1]))
    out = feat.compute(ctx, boxes)
    assert len(feat._blazepose.boxes) == 3  # the bicycle never reaches the model
    np.testing.assert_allclose(out[0, 0:2], [0.0, 0.0], atol=1e-6)  # first keypoint at the box's top-left
    np.testing.assert_allclose(out[0, 64:66], [1.0, 1.0], atol=1e-6)  # last at its bottom-right
    np.testing.assert_allclose(out[0, 66:99], 0.9, atol=1e-6)
    assert out[0, 99] == pytest.approx(0.99)
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    assert np.isfinite(out[3]).all() and out[3, 99] == pytest.approx(0.97)


def test_extract_features_passes_each_frames_classes(tmp_path):
    feat = litert_feature(tmp_path, [0.9] * 10)
    frames = np.zeros((3, 40, 50, 3), np.uint8)
    objects = ObjectTable.build([0, 1, 1, 2], [[1, 1, 10, 20]] * 4, klass=[0, 2, 0, 7])
    out = extract_features(ArrayClip(frames), objects, {"pose": feat}, progress=False)["pose"]
    assert np.isfinite(out[[0, 2]]).all() and np.isnan(out[[1, 3]]).all()


# ------------------------------------------------------------------------------------------ pose attribute
def _poses(rng, n, unusual=False):
    """(n, 66) box-relative keypoints: an upright template with jitter; unusual = the same body lying (x <-> y)."""
    t = np.linspace(0, 1, NUM_KEYPOINTS)
    base = np.stack([0.5 + 0.15 * np.sin(6 * t), t], axis=1)
    if unusual:
        base = base[:, ::-1]
    return (base[None] + rng.normal(0, 0.02, (n, NUM_KEYPOINTS, 2))).reshape(n, -1)


def _pose_clip(rng, n=30, unusual=0, missing=0):
    x = np.full((n + unusual + missing, 100), np.nan, np.float32)
    x[:n, :66] = _poses(rng, n)
    if unusual:
        x[n:n + unusual, :66] = _poses(rng, unusual, unusual=True)
    x[:n + unusual, 66:] = 0.9
    m = len(x)
    objects = ObjectTable.build(np.arange(m) % 10, np.tile([0, 0, 10, 20], (m, 1)), track_id=np.arange(m))
    return objects, {"pose": x}, 10


def _pose_scorer():
    import yaml

    from tao_lab.scorer import AttributeScorer

    spec = yaml.safe_load(open(CONFIG_DIR / "scorer" / "attribute_pose.yaml"))["attributes"]["pose"]
    return AttributeScorer({"pose": spec}, frame_sigma=0.0)


def test_pose_attribute_scores_an_unusual_pose_above_normal_ones_and_missing_poses_zero(tmp_path):
    rng = np.random.default_rng(0)
    train = [_pose_clip(rng, missing=5) for _ in range(3)]  # missing poses in training are left out of the bank
    scorer = _pose_scorer().fit_clips(train)
    assert len(scorer.pose__bank) == 90 and scorer.pose__bank.shape[1] == 66
    objects, feats, n = _pose_clip(rng, n=20, unusual=3, missing=4)
    part = scorer.object_parts(objects, feats)["pose"]
    assert part[20:23].min() > part[:20].max()
    assert part[20:23].min() > 1.0  # beyond the training calibration point
    np.testing.assert_array_equal(part[23:], 0.0)  # missing pose: the calibrated minimum
    # the checkpoint restores the memory bank and calibration exactly
    from tao_lab.scorer import AttributeScorer

    path = tmp_path / "pose.ckpt"
    scorer.save_checkpoint(path)
    restored = AttributeScorer.load_from_checkpoint(path)
    np.testing.assert_array_equal(restored.object_parts(objects, feats)["pose"], part)
    np.testing.assert_array_equal(restored.pose__bank.numpy(), scorer.pose__bank.numpy())


def test_pose_scorer_config_is_the_default_plus_pose():
    from omegaconf import OmegaConf

    from tao_lab.config import compose_config

    default = OmegaConf.to_container(compose_config(["scorer=attribute"]).scorer)
    pose = OmegaConf.to_container(compose_config(["scorer=attribute_pose"]).scorer)
    assert {k: v for k, v in pose["attributes"].items() if k != "pose"} == default["attributes"]
    assert {k: v for k, v in pose.items() if k != "attributes"} == {k: v for k, v in default.items()
                                                                    if k != "attributes"}
    assert pose["attributes"]["pose"]["columns"] == list(range(66))


def test_pose_person_segmenter_config_is_classical_plus_pose_options():
    from omegaconf import OmegaConf

    from tao_lab.config import compose_config

    classical = OmegaConf.to_container(compose_config(["segmenter=classical"]).segmenter)
    person = OmegaConf.to_container(compose_config(["segmenter=pose_person"]).segmenter)
    assert person["_target_"] == "tao_lab.segmenter.PosePersonSegmenter"
    assert {k: v for k, v in person.items() if k in classical and k != "_target_"} == \
        {k: v for k, v in classical.items() if k != "_target_"}
    assert person["presence_threshold"] == 0.5


# ------------------------------------------------------------------------------------------ pose_person segmenter
def _segment_with_fake(tmp_path, classes, presences):
    weights = tmp_path / "pose_landmark_full.tflite"
    weights.write_bytes(b"")
    seg = PosePersonSegmenter(weights=str(weights), box_score=0.0)
    seg.blazepose = FakePose(presences)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 60, 80, 3)).astype(np.uint8)
    boxes = np.array([[10, 10, 30, 50], [45, 5, 70, 40]], np.float32)
    prompts = Prompts(np.array([1, 1]), np.array([1, 2]), boxes, np.full((2, 2), np.nan), np.array([1.0, 2.0]))
    objects = ObjectTable.build([1, 1], boxes, [1.0, 2.0], [5, 6], classes)
    out = seg.segment(ArrayClip(frames), prompts, ObjectScores(objects, np.zeros(4, np.float32)))
    return seg, out, boxes, ArrayClip(frames), prompts, ObjectScores(objects, np.zeros(4, np.float32))


def test_pose_person_masks_stay_in_the_enlarged_box_and_non_persons_fall_back(tmp_path):
    seg, out, boxes, clip, prompts, scores = _segment_with_fake(tmp_path, classes=[0, 2], presences=[0.99])
    inst = out.instance_maps[1]
    # object 1 (person): the stand-in says "person everywhere" -> exactly its enlarged box (margin 0.1 per side)
    m1 = inst == 1
    ys, xs = np.nonzero(m1)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (8, 32, 6, 54)
    # object 2 (class 2, a car): never sent to the model, its mask is the classical one
    assert len(seg.blazepose.boxes) == 1
    classical = ForegroundSegmenter(box_score=0.0).segment(clip, prompts, scores)
    np.testing.assert_array_equal(inst == 2, classical.instance_maps[1] == 2)
    assert seg.counts == {"person": 1, "classical": 1}


def test_pose_person_low_presence_falls_back_to_classical(tmp_path):
    seg, out, _, clip, prompts, scores = _segment_with_fake(tmp_path, classes=[0, 0], presences=[0.1, 0.2])
    classical = ForegroundSegmenter(box_score=0.0).segment(clip, prompts, scores)
    np.testing.assert_array_equal(out.instance_maps, classical.instance_maps)
    assert seg.counts == {"person": 0, "classical": 2}


# ------------------------------------------------------------------------------------------ real weights, Ped2
def _real_inputs():
    if not LANDMARK.is_file():
        pytest.skip(f"real BlazePose weights absent ({LANDMARK}; see ../shared/weights/PROVENANCE.md)")
    if not (PED2_TRAIN / "Train001" / "060.jpg").is_file():
        pytest.skip(f"the real Ped2 copy is absent ({PED2_TRAIN})")
    import cv2

    return cv2.imread(str(PED2_TRAIN / "Train001" / "060.jpg"))


@pytest.mark.slow
def test_real_blazepose_on_ped2_walkers_and_empty_patches():
    import cv2

    frame = _real_inputs()
    bp = BlazePose(str(LANDMARK))
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    for box in WALKERS:
        r = bp(rgb, box)
        x1, y1, x2, y2 = box
        kp = r.keypoints
        inside = (kp[:, 0] >= x1 - 2) & (kp[:, 0] <= x2 + 2) & (kp[:, 1] >= y1 - 2) & (kp[:, 1] <= y2 + 2)
        assert r.presence > 0.9, box
        assert inside.mean() >= 0.9, (box, inside.mean())
        assert kp[0, 1] < kp[27, 1] and kp[0, 1] < kp[28, 1]  # nose above both ankles: upright
    for box in EMPTY:
        assert bp(rgb, box).presence < 0.1, box


@pytest.mark.slow
def test_real_pose_feature_and_person_masks_on_ped2():
    frame = _real_inputs()
    boxes = np.array(WALKERS + EMPTY[:1], np.float32)
    feat = PoseFeature(weights=str(LANDMARK), backend="litert")
    out = feat.compute(FrameContext(0, frame, FlowEstimator(), None, None, np.zeros(4, np.int64)), boxes)
    assert np.isfinite(out[:3]).all() and np.isnan(out[3]).all()
    assert (out[:3, 99] > 0.9).all()
    seg = PosePersonSegmenter(weights=str(LANDMARK))
    H, W = frame.shape[:2]
    for box in WALKERS:
        got = seg.person_mask(frame, np.array(box, np.float64))
        assert got is not None
        mask = got[0]
        inside = np.zeros((H, W), bool)
        inside[seg._region(np.array(box, np.float64), H, W)] = True
        assert mask.any() and not (mask & ~inside).any()
        area = (box[2] - box[0]) * (box[3] - box[1])
        assert 0.2 * area < mask.sum() < 1.2 * area  # person-sized, not the whole box region
    assert seg.person_mask(frame, np.array(EMPTY[0], np.float64)) is None
