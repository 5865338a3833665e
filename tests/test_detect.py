"""Detectors on synthetic clips with known objects; the YOLO path with random weights."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import MovingSquareClip, compose_group
from tao_lab.boxes import box_iou as iou_matrix
from tao_lab.detector import BackgroundModel, BackgroundSubtractionDetector, YoloDetector


def outside_box(mask, box, margin=3) -> int:
    """Foreground pixels farther than `margin` px from the box (the blur spreads an object's edge by ~2 px)."""
    x1, y1, x2, y2 = np.asarray(box, int) + np.array([-margin, -margin, margin, margin])
    inner = mask[max(y1, 0):y2, max(x1, 0):x2].sum()
    return int(mask.sum() - inner)


def box_iou(a, b) -> float:
    """IoU of two single boxes (the project's one implementation)."""
    return float(iou_matrix(a, b)[0, 0])


def test_background_model_finds_moving_square():
    clip = MovingSquareClip()
    model = BackgroundModel().fit(clip)
    assert model.background.shape == (96, 128)
    # the median background has no square in it: close to the true background everywhere
    assert np.percentile(np.abs(model.background - model.background.mean() - (clip.bg - clip.bg.mean())), 99) < 12
    fg = model.foreground(clip.frame(8))
    x1, y1, x2, y2 = clip.box(8).astype(int)
    assert fg[y1:y2, x1:x2].mean() > 0.9
    assert outside_box(fg, clip.box(8)) < 10
    d = model.difference(clip.frame(8))
    assert d.dtype == np.float32 and d.shape == (96, 128)
    assert d[y1 + 4:y2 - 4, x1 + 4:x2 - 4].min() > 50


def test_background_model_normalises_global_brightness():
    # the light changes during the clip: most frames at gain 1, the last four 30% brighter, the first two darker
    gain = np.ones(20)
    gain[-4:] = 1.3
    gain[:2] = 0.8
    clip = MovingSquareClip(gain=gain, squares=((10, 40, 5, 0, 16, 200),))
    model = BackgroundModel().fit(clip)
    for i in (0, 19):  # the darkest and the brightest frame
        fg = model.foreground(clip.frame(i))
        x1, y1, x2, y2 = clip.box(i).astype(int)
        assert outside_box(fg, clip.box(i)) < 10, "brightness drift must not turn the background to foreground"
        assert fg[y1:y2, x1:x2].mean() > 0.8
    unnormalised = BackgroundModel(normalize_brightness=False).fit(clip).foreground(clip.frame(19))
    assert unnormalised.sum() > 5 * fg.sum()


def whole_frame_shadow(model, grey):
    """The shadow test on every pixel of the frame, as it was before it was confined to the darker pixels' part: the
    independent reference of the test below."""
    import cv2

    ratio = grey / np.maximum(model.background, 1.0)
    lo, hi = model.shadow_ratio
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    bx = cv2.Sobel(model.background, cv2.CV_32F, 1, 0, ksize=3)
    by = cv2.Sobel(model.background, cv2.CV_32F, 0, 1, ksize=3)
    tex = cv2.blur(np.abs(gx - ratio * bx) + np.abs(gy - ratio * by), (5, 5)) * 0.5
    return (ratio >= lo) & (ratio <= hi) & (tex <= model.shadow_texture)


def test_the_shadow_test_on_the_darker_part_equals_the_whole_frame_one():
    """Shadows and dark objects anywhere, at the frame's edges and corners too, one pixel wide or none at all."""
    rng = np.random.default_rng(5)
    clip = MovingSquareClip(noise=1.5, height=60, width=80)
    model = BackgroundModel().fit(clip)
    darker_seen = 0
    for trial in range(40):
        grey = model.background * rng.uniform(0.995, 1.005, model.background.shape).astype(np.float32)
        for _ in range(0 if trial % 8 == 0 else int(rng.integers(1, 4))):  # no patch at all on every 8th trial
            y, x = int(rng.integers(-3, 60)), int(rng.integers(-3, 80))
            h, w = int(rng.integers(1, 15)), int(rng.integers(1, 20))
            grey[max(y, 0):y + h, max(x, 0):x + w] *= rng.uniform(0.5, 0.9)
        expected = whole_frame_shadow(model, grey)
        np.testing.assert_array_equal(model._shadow(grey), expected)
        darker_seen += int(expected.any())
    assert darker_seen >= 15  # most trials had shadow pixels to find (22 of the 40 with this seed)


def test_background_model_suppresses_cast_shadow():
    # a soft-edged shadow (background darkened to 70%, texture kept) trails under the square
    clip = MovingSquareClip(shadow=(-6, 16, 30, 50, 0.7), noise=1.5, height=120)
    with_shadow = BackgroundModel().fit(clip).foreground(clip.frame(8))
    without = BackgroundModel(shadow_ratio=None).fit(clip).foreground(clip.frame(8))
    x1, y1, x2, y2 = clip.box(8).astype(int)
    shadow_px = lambda m: m[y2 + 5:y2 + 30, x1 - 2:x2 + 10].mean()  # noqa: E731  (shadow interior)
    assert shadow_px(without) > 0.8 and shadow_px(with_shadow) < 0.2
    assert with_shadow[y1:y2, x1:x2].mean() > 0.9


def test_background_model_requires_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        BackgroundModel().difference(np.zeros((8, 8, 3), np.uint8))


def test_background_detector_box_iou():
    clip = MovingSquareClip(num_frames=20)
    det = BackgroundSubtractionDetector().detect(clip)
    assert (det.track_id == -1).all() and (det.cls == 0).all()
    assert np.all(np.diff(det.frame) >= 0)
    assert ((det.score > 0) & (det.score <= 1)).all()
    for i in range(1, 17):  # frames where the square is fully inside the image
        rows = det.xyxy[det.frame == i]
        assert len(rows) == 1, f"frame {i}: {len(rows)} boxes"
        assert box_iou(rows[0], clip.box(i)) > 0.5


def test_background_detector_splits_merged_blob():
    # two objects walking side by side 6 px apart: the dilation joins them into one component twice as wide as
    # high; the split at the column-profile valley separates them again
    clip = MovingSquareClip(num_frames=30, width=200,
                            squares=((10, 30, 4, 0, 20, 230), (36, 36, 4, 0, 20, 230)))
    det = BackgroundSubtractionDetector(dilate=11)
    model = BackgroundModel().fit(clip)
    boxes, _ = det.boxes_from_mask(model.foreground(clip.frame(10)))
    assert len(boxes) == 2
    assert max(box_iou(b, clip.box(10, 0)) for b in boxes) > 0.5
    assert max(box_iou(b, clip.box(10, 1)) for b in boxes) > 0.5
    unsplit, _ = BackgroundSubtractionDetector(dilate=11, split_aspect=0).boxes_from_mask(
        model.foreground(clip.frame(10)))
    assert len(unsplit) == 1


def test_min_area_height_keeps_small_blobs_only_where_objects_are_expected_small():
    """min_area_height: the area a blob needs follows the expected height at its footprint (clipped to
    [min_area_floor, min_area]); without the option, or near the camera, a 4x5 blob (20 px) is dropped."""
    mask = np.zeros((120, 160), bool)
    mask[10:15, 20:24] = True  # 20 px, footprint at row 15 (far: expected 10 px tall)
    mask[100:105, 120:124] = True  # 20 px, footprint at row 105 (near: expected 60 px tall)
    mask[60:80, 60:70] = True  # 200 px, kept everywhere
    expected = lambda foot_x, foot_y: 5.0 + 0.5 * foot_y  # noqa: E731  (far rows small, near rows large)
    plain = BackgroundSubtractionDetector(dilate=0, split_aspect=0, split_motion=0)
    boxes, _ = plain.boxes_from_mask(mask)
    assert len(boxes) == 1  # min_area 40: only the large blob
    relative = BackgroundSubtractionDetector(dilate=0, split_aspect=0, split_motion=0, min_area_height=0.1)
    assert relative._min_area_at(22, 15, expected) == pytest.approx(max(10, 0.1 * 12.5 ** 2))  # 15.6 px
    assert relative._min_area_at(122, 105, expected) == 40  # 0.1 x 57.5^2 capped at min_area
    assert relative._min_area_at(0, -100, expected) == 10  # a plane below 0: the floor
    boxes, _ = relative.boxes_from_mask(mask, area_height=expected)
    np.testing.assert_array_equal(sorted(map(tuple, boxes.astype(int))), [(20, 10, 24, 15), (60, 60, 70, 80)])
    boxes, _ = relative.boxes_from_mask(mask)  # no plane (too few blobs to fit it): min_area everywhere
    assert len(boxes) == 1
    with pytest.raises(ValueError, match="min_area_floor"):
        BackgroundSubtractionDetector(min_area_floor=0)
    # a min_area below the floor still holds without the option (the floor never exceeds it): the 20-px blobs stay
    small = BackgroundSubtractionDetector(min_area=5, dilate=0, split_aspect=0, split_motion=0)
    assert small.min_area_floor == 5 and len(small.boxes_from_mask(mask)[0]) == 3


def test_min_area_height_online_fits_its_plane_on_the_warm_up_frames():
    """Online, min_area_height's plane is fitted on the warm-up frames against the stream's background, as offline on
    the clip: warmed up on the clip itself, the stream finds the 4x4 square (too small for min_area 40) on every frame,
    as offline; without the option neither does."""
    from tao_lab.streaming import StreamContext

    clip = MovingSquareClip(num_frames=40, width=160, squares=((10, 40, 2, 0, 20, 230), (100, 10, 1, 0, 4, 230)))
    det = BackgroundSubtractionDetector(background={"scope": "clip"}, min_area_height=0.05, split_motion=0,
                                        split_rows_fit_frames=25)
    offline = det.detect(clip)
    assert (np.bincount(offline.frame.astype(int), minlength=40) == 2).all()
    assert len(BackgroundSubtractionDetector(split_motion=0).detect(clip)) == 40  # without it: the large one only
    ctx = StreamContext(clip.height, clip.width, clip.fps)
    stream = det.stream(ctx)
    ctx.fit(clip)
    for i, frame in enumerate(clip.frames()):
        np.testing.assert_array_equal(stream.step(frame).xyxy, offline.xyxy[offline.frame == i])


def test_yolo_missing_weights_is_clear(tmp_path):
    missing = tmp_path / "nope" / "yolov8s.pt"
    with pytest.raises(FileNotFoundError, match=r"yolov8s\.pt.*download"):
        YoloDetector(weights=str(missing))


def _random_yolo_emitting_boxes(tmp_path, yaml="yolov8n.yaml"):
    from tao_lab.no_network import set_offline_env

    set_offline_env(tmp_path / "ultralytics")
    from tao_lab.detector.yolo import load_yolo

    model = load_yolo(yaml)
    head = model.model.model[-1]  # the Detect head
    for seq in head.cv3:  # class-logit branches: a large bias makes every anchor confident
        seq[-1].bias.data.fill_(8.0)
    return model


def test_yolo_detector_random_weights(tmp_path):
    det = YoloDetector(weights="yolov8n.yaml", conf=0.5, imgsz=64, max_det=5, batch=2)
    det._model = _random_yolo_emitting_boxes(tmp_path)
    clip = MovingSquareClip(num_frames=3, height=48, width=64)
    out = det.detect(clip)
    assert len(out) > 0
    assert set(np.unique(out.frame)) == {0, 1, 2}
    assert (out.track_id == -1).all()
    assert (out.score >= 0.5).all() and (out.score <= 1).all()
    assert np.bincount(out.frame).max() <= 5
    assert out.xyxy.dtype == np.float32 and (out.xyxy[:, 2] >= out.xyxy[:, 0]).all()


def test_detector_configs_instantiate(tmp_path):
    from hydra.utils import instantiate

    det = instantiate(compose_group("detector", "background"))
    assert isinstance(det, BackgroundSubtractionDetector) and det.background_kwargs["num_samples"] == 60
    cfg = compose_group("detector", "yolo")
    assert cfg._target_ == "tao_lab.detector.YoloDetector"
    cfg.weights = str(tmp_path / "missing.pt")
    with pytest.raises(Exception, match=r"missing\.pt"):
        instantiate(cfg)
    cfg.weights = "yolov8n.yaml"
    assert isinstance(instantiate(cfg), YoloDetector)


def test_dilate_height_joins_the_pieces_of_a_near_body_and_nothing_else():
    """dilate_height: the dilation is that fraction of the expected height tall where the plane says people are tall,
    ``dilate`` elsewhere and across. Near the camera (expected about 65 px) a torso and legs 8 px apart become one box
    from their undilated pixels; far away (about 17 px) two blobs 8 px apart stay two, and near two walkers 8 px apart
    side by side stay two, as with ``dilate`` alone."""
    mask = np.zeros((160, 200), bool)
    mask[100:125, 50:62] = True  # near torso
    mask[133:150, 50:62] = True  # near legs, 8 rows below
    mask[100:150, 90:102] = True  # near walker ...
    mask[100:150, 110:122] = True  # ... and another 8 px to its right
    mask[10:18, 150:160] = True  # far blob
    mask[26:34, 150:160] = True  # far blob 8 rows below
    expected = lambda foot_x, foot_y: 5.0 + 0.4 * foot_y  # noqa: E731  (far rows small, near rows large)
    kwargs = dict(dilate=5, split_aspect=0, split_motion=0)
    plain, _ = BackgroundSubtractionDetector(**kwargs).boxes_from_mask(mask)
    assert len(plain) == 6
    det = BackgroundSubtractionDetector(dilate_height=0.25, **kwargs)
    dilation = det.dilation_map(expected, mask.shape)
    # a pixel in the torso-legs gap (row 129): h0 = 5 + 0.4 x 129 = 56.6, read again 28.3 rows below:
    # 5 + 0.4 x 157.3 = 67.9; a quarter of it is 16.98 -> 17 px tall (odd)
    assert dilation.heights[129, 55] == 17 and dilation.width == 5
    assert dilation.heights[20, 155] == 5  # far: h0 = 13, 0.25 x (5 + 0.4 x 26.5) = 3.9 -> at least dilate
    joined, _ = det.boxes_from_mask(mask, dilation=dilation)
    np.testing.assert_array_equal(sorted(map(tuple, joined.astype(int))),
                                  [(50, 100, 62, 150), (90, 100, 102, 150), (110, 100, 122, 150),
                                   (150, 10, 160, 18), (150, 26, 160, 34)])
    assert det.dilation_map(None, mask.shape) is None  # no plane: dilate everywhere
    assert BackgroundSubtractionDetector(**kwargs).dilation_map(expected, mask.shape) is None  # option off
    with pytest.raises(ValueError, match="dilate_height"):
        BackgroundSubtractionDetector(dilate_height=0)


def test_height_plane_reads_arrays_of_footprints_as_it_reads_one():
    """The detector's expected-height plane gives a float for one footprint and, elementwise, the same values for
    arrays of them (dilation_map reads it at every pixel at once)."""
    from tao_lab.detector.subtraction import _height_plane

    rng = np.random.default_rng(1)
    feet = rng.uniform([0, 20], [200, 120], (60, 2))
    plane = _height_plane([feet], [10 + 0.3 * feet[:, 1] + rng.normal(0, 1, 60)])
    one = plane(50.0, 80.0)
    assert isinstance(one, float) and one == pytest.approx(34.0, abs=2.0)  # 10 + 0.3 x 80, fitted on noisy heights
    xs, ys = np.meshgrid(np.arange(0, 200, 37.0), np.arange(20, 120, 23.0))
    grid = plane(xs, ys)
    assert grid.shape == xs.shape
    np.testing.assert_allclose(grid, [[plane(x, y) for x, y in zip(rx, ry)] for rx, ry in zip(xs, ys)], rtol=0,
                               atol=1e-12)
    assert _height_plane([feet[:19]], [np.ones(19)]) is None  # fewer than 20 blobs: no plane


def test_dilation_map_equals_a_pixel_by_pixel_dilation():
    """DilationMap.apply against an independent per-pixel computation: a pixel is set when a foreground pixel lies
    within the ellipse of its own height band (OpenCV's ellipse element, centred on the pixel)."""
    import cv2

    from tao_lab.detector.subtraction import DilationMap

    rng = np.random.default_rng(0)
    mask = (rng.random((40, 50)) < 0.03).astype(np.uint8)
    heights = np.where(np.arange(40)[:, None] < 20, 3, 11) * np.ones((1, 50), int)
    heights[:, 30:] = np.where(np.arange(40)[:, None] < 10, 7, heights[:, 30:])
    out = DilationMap(heights, 5).apply(mask)
    expected = np.zeros_like(mask)
    padded = np.pad(mask, 10)
    for y in range(40):
        for x in range(50):
            h = int(heights[y, x])
            element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, h))
            window = padded[y + 10 - h // 2:y + 10 - h // 2 + h, x + 10 - 2:x + 10 + 3]
            expected[y, x] = int((window * element).any())
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="applied to a mask"):
        DilationMap(heights, 5).apply(mask[:10])


def test_dilate_height_online_equals_offline():
    """Online, dilate_height's plane is fitted on the warm-up frames against the stream's background, as offline on
    the clip: warmed up on the clip itself, the stream's boxes equal the offline ones on every frame."""
    from tao_lab.streaming import StreamContext

    clip = MovingSquareClip(num_frames=40, width=160, squares=((10, 20, 2, 0, 14, 230), (10, 40, 2, 0, 14, 230),
                                                               (100, 60, -1, 0, 20, 230)))
    det = BackgroundSubtractionDetector(background={"scope": "clip"}, dilate_height=0.5, split_motion=0,
                                        split_rows_fit_frames=25)
    offline = det.detect(clip)
    plain = BackgroundSubtractionDetector(background={"scope": "clip"}, split_motion=0).detect(clip)
    assert len(offline) < len(plain)  # the two stacked squares 6 px apart are joined on some frames
    ctx = StreamContext(clip.height, clip.width, clip.fps)
    stream = det.stream(ctx)
    ctx.fit(clip)
    for i, frame in enumerate(clip.frames()):
        np.testing.assert_array_equal(stream.step(frame).xyxy, offline.xyxy[offline.frame == i])
