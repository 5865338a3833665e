"""Mask IoU and boundary F1 (tao_lab.metrics.masks) against hand computations and a brute-force pair loop."""
import math

import numpy as np
import pytest

from tao_lab.metrics import MaskAgreement, boundary_f1, mask_iou
from tao_lab.metrics.masks import mask_boundary


def square(top, left, size, shape=(10, 10)):
    m = np.zeros(shape, bool)
    m[top:top + size, left:left + size] = True
    return m


def test_iou_of_shifted_squares_by_hand():
    # 4x4 squares, the prediction one column to the right: overlap 4 x 3 = 12, union 4 x 5 = 20
    assert mask_iou(square(2, 3, 4), square(2, 2, 4)) == pytest.approx(12 / 20)
    assert mask_iou(square(2, 2, 4), square(2, 2, 4)) == 1.0
    assert mask_iou(np.zeros((5, 5), bool), square(0, 0, 2, (5, 5))) == 0.0
    assert math.isnan(mask_iou(np.zeros((5, 5), bool), np.zeros((5, 5), bool)))


def test_boundary_is_the_ring_and_the_image_edge_is_not_a_boundary():
    ring = mask_boundary(square(2, 2, 4))
    assert ring.sum() == 12  # 16 pixels of the square minus its 2x2 interior
    assert not ring[3:5, 3:5].any()
    # a mask filling the left half: only its right column is boundary (the frame edge is not)
    half = np.zeros((6, 6), bool)
    half[:, :3] = True
    assert np.array_equal(np.flatnonzero(mask_boundary(half).any(axis=0)), [2])
    assert mask_boundary(half).sum() == 6


def test_boundary_f1_of_shifted_squares_by_hand():
    pred, gt = square(2, 3, 4), square(2, 2, 4)
    # tolerance 0: the common boundary pixels are rows 2 and 5 at columns 3..5 -> 6 of 12 on each side
    assert boundary_f1(pred, gt, tolerance=0) == pytest.approx(0.5)
    assert boundary_f1(pred, gt, tolerance=0.5) == pytest.approx(0.5)
    # tolerance 1: every boundary pixel of one has a boundary pixel of the other one column away
    assert boundary_f1(pred, gt, tolerance=1) == pytest.approx(1.0)
    # a 2-column shift: pred ring cols 4..7; at tol 1, pred pixels of column 7 (rows 2..5: 4 px) and of column 4
    # rows 3,4 are 1 away from gt column 5 -> matched; rows 2 and 5 at cols 4..6 match (cols 4,5 exact, 6 one
    # away). Unmatched pred: column 7 rows 2..5 (distance 2) -> precision 8/12; by symmetry recall 8/12
    assert boundary_f1(square(2, 4, 4), gt, tolerance=1) == pytest.approx(8 / 12)
    assert boundary_f1(np.zeros_like(gt), gt) == 0.0
    assert math.isnan(boundary_f1(np.zeros_like(gt), np.zeros_like(gt)))


def brute_force_bf1(pred, gt, tol):
    """Independent: boundary pixels by looping over 4-neighbours, distances by looping over all pixel pairs."""
    def boundary(m):
        H, W = m.shape
        out = []
        for y in range(H):
            for x in range(W):
                if m[y, x] and any(0 <= y + dy < H and 0 <= x + dx < W and not m[y + dy, x + dx]
                                   for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))):
                    out.append((y, x))
        return out

    pb, gb = boundary(pred), boundary(gt)
    if not pb and not gb:
        return float("nan")
    if not pb or not gb:
        return 0.0

    def share(a, b):
        return sum(any((ya - yb) ** 2 + (xa - xb) ** 2 <= tol ** 2 for yb, xb in b) for ya, xa in a) / len(a)

    p, r = share(pb, gb), share(gb, pb)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tol", [0, 1, 2, 2.5])
def test_boundary_f1_equals_brute_force_on_random_blobs(seed, tol):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    pred = ndimage.binary_opening(rng.random((14, 17)) < 0.55)
    gt = ndimage.binary_opening(rng.random((14, 17)) < 0.55)
    expected = brute_force_bf1(pred, gt, tol)
    got = boundary_f1(pred, gt, tolerance=tol)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_mask_agreement_pooling_by_hand():
    acc = MaskAgreement(tolerance=1)
    gt1, pred1 = square(2, 2, 4), square(2, 3, 4)          # IoU 12/20, BF1 1.0 at tol 1
    gt2, pred2 = square(0, 0, 2), np.zeros((10, 10), bool)  # missed: IoU 0, BF1 0
    gt3, pred3 = np.zeros((10, 10), bool), square(6, 6, 3)  # normal frame with a false mask: not in the means
    for p, g in ((pred1, gt1), (pred2, gt2), (pred3, gt3)):
        acc.update(p, g)
    out = acc.compute()
    assert out["mask_iou"] == pytest.approx((12 / 20 + 0) / 2)
    assert out["boundary_f1"] == pytest.approx((1.0 + 0.0) / 2)
    # pooled over all frames: intersection 12, union 20 + 4 + 9
    assert out["mask_iou_pooled"] == pytest.approx(12 / 33)
    assert out["mask_precision"] == pytest.approx(12 / (16 + 9))
    assert out["mask_recall"] == pytest.approx(12 / (16 + 4))
    assert (out["mask_frames_scored"], out["mask_num_frames"]) == (2, 3)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        mask_iou(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
