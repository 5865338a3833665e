"""tao_lab.boxes.box_iou, the one IoU of the project: matrix and pairwise forms, both box conventions, degenerate
boxes, and the precision each caller relies on."""
import numpy as np
import pytest

from tao_lab.boxes import box_iou


def test_matrix_and_pairwise_give_the_known_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], np.float64)
    b = np.array([[5, 0, 15, 10], [0, 0, 4, 4], [20, 20, 30, 30]], np.float64)
    m = box_iou(a, b)
    assert m.shape == (2, 3) and m.dtype == np.float64
    np.testing.assert_array_equal(m, [[50 / 150, 16 / 100, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(box_iou(a, b[:2], pairwise=True), [50 / 150, 1.0])
    # AED's inclusive convention: an 11x11 box against one shifted by 5 -> 6*11 / (2*121 - 66)
    assert box_iou(a[:1], b[:1], pairwise=True, convention="inclusive")[0] == 66 / 176


def test_empty_and_inverted_boxes_have_iou_zero():
    point = np.array([[5, 5, 5, 5]], np.float64)
    inverted = np.array([[10, 10, 0, 0]], np.float64)
    full = np.array([[0, 0, 10, 10]], np.float64)
    assert box_iou(point, point)[0, 0] == 0.0
    assert box_iou(inverted, full)[0, 0] == 0.0 and box_iou(inverted, inverted, pairwise=True)[0] == 0.0


def test_float32_arithmetic_when_asked_and_bad_input_refused():
    a = np.array([[0.1, 0.2, 10.3, 10.7]], np.float32)
    b = np.array([[5.1, 0.3, 15.2, 10.9]], np.float32)
    got = box_iou(a, b, dtype=np.float32)
    assert got.dtype == np.float32
    ix, iy = np.float32(10.3) - np.float32(5.1), np.float32(10.7) - np.float32(0.3)
    inter = ix * iy
    union = (np.float32(10.2) * np.float32(10.5) + (np.float32(15.2) - np.float32(5.1)) *
             (np.float32(10.9) - np.float32(0.3))) - inter
    assert got[0, 0] == pytest.approx(float(inter / union), rel=1e-6)
    with pytest.raises(ValueError, match="as many boxes"):
        box_iou(a, np.zeros((2, 4)), pairwise=True)
    with pytest.raises(ValueError, match="'exclusive' or 'inclusive'"):
        box_iou(a, b, convention="aed")


def test_every_import_path_is_the_one_implementation():
    from tao_lab.detector import yolo
    from tao_lab.prompt_filter import geometry
    from tao_lab import boxes
    from tao_lab.metrics import objects

    assert geometry.box_iou is boxes.box_iou and yolo.box_iou is boxes.box_iou
    a = np.array([[0, 0, 10, 10], [1, 1, 3, 3]], np.float64)
    np.testing.assert_array_equal(objects.box_iou(a, a[::-1]), np.diag(boxes.box_iou(a, a[::-1])))
