"""Row cut of stacked walkers (BackgroundSubtractionDetector.split_rows_valley, subtraction.valley_cuts)."""
import numpy as np
import pytest

from tao_lab.detector import BackgroundSubtractionDetector
from tao_lab.detector.subtraction import valley_cuts
from tests.helpers import MovingSquareClip

ROWS = dict(split_rows_valley=0.5, min_width=6, min_area=20, split_motion=0)


def _stack(upper=(20, 10), bridge=(4, 2), lower=(26, 12)):
    """A blob of two bodies one above the other, (height, width) each, joined by a thin bridge (height, width)."""
    parts = [upper, bridge, lower]
    width = max(w for _, w in parts)
    rows = []
    for h, w in parts:
        row = np.zeros(width, bool)
        row[(width - w) // 2:(width - w) // 2 + w] = True
        rows += [row] * h
    return np.array(rows)


def test_valley_cuts_known_answers():
    profile = np.array([10] * 10 + [2] * 3 + [10] * 10, np.float32)
    assert valley_cuts(profile, 4, 0.5) == [(0, 11), (11, 23)]          # the smoothed valley's first minimum
    assert valley_cuts(profile, 4, 0.1) == [(0, 23)]                    # 2 is not below 0.1 x 10
    assert valley_cuts(profile, 12, 0.5) == [(0, 23)]                   # a part shorter than 12 bins: no cut
    head = np.array([4] * 4 + [1] * 2 + [10] * 20, np.float32)          # a head above a neck above a body
    assert valley_cuts(head, 3, 0.5) == [(0, 26)]                       # smoothed: 2 is not below 0.5 x 4
    assert valley_cuts(head, 3, 0.6) == [(0, 4), (4, 26)]
    assert valley_cuts(head, 3, 0.6, min_share=0.25) == [(0, 26)]       # the head holds 7 % of the pixels
    assert valley_cuts(np.zeros(5), 1, 0.5) == [(0, 5)]


def test_the_column_split_is_unchanged_by_the_shared_valley_code():
    comp = np.zeros((20, 40), bool)
    comp[:, 2:16] = True
    comp[:, 24:38] = True
    comp[9:11, 16:24] = True                                            # a thin bridge between two walkers
    det = BackgroundSubtractionDetector(min_width=6)
    assert det._split(comp) == [(0, 0, 17, 20), (17, 0, 40, 20)]       # the bridge's first smoothed minimum


def test_a_stack_taller_than_the_expected_height_is_cut_at_its_bridge():
    comp = _stack()                                                     # 50 rows: 20 + 4 + 26
    det = BackgroundSubtractionDetector(**ROWS)
    assert det._split(comp, (0, 0), lambda x, y: 30.0) == [(0, 0, 12, 21), (0, 21, 12, 50)]
    # not taller than 1.35 x the expected height at its footprint, or no height model: one part
    assert det._split(comp, (0, 0), lambda x, y: 40.0) == [(0, 0, 12, 50)]
    assert det._split(comp, (0, 0), None) == [(0, 0, 12, 50)]
    # off by default
    assert BackgroundSubtractionDetector(min_width=6).height_planes(MovingSquareClip(), None) == (None, None)


def test_the_height_model_is_read_at_the_blobs_footprint_in_the_frame():
    comp = _stack()
    seen = []
    BackgroundSubtractionDetector(**ROWS)._split(comp, (100, 40), lambda x, y: seen.append((x, y)) or 30.0)
    assert seen == [(106.0, 90)]                                        # centre column, bottom row + 1, frame px


def test_a_single_body_with_short_legs_below_a_gap_is_not_cut():
    # legs below a waist gap are 16 of 52 rows (< 0.4 of the height): they stay on their body however tall
    comp = _stack(upper=(34, 12), bridge=(2, 2), lower=(16, 12))
    assert BackgroundSubtractionDetector(**ROWS)._split(comp, (0, 0), lambda x, y: 10.0) == [(0, 0, 12, 52)]
    assert BackgroundSubtractionDetector(**dict(ROWS, split_rows_length=0.2))._split(
        comp, (0, 0), lambda x, y: 10.0) == [(0, 0, 12, 34), (0, 34, 12, 52)]


def test_detect_separates_two_stacked_walkers_on_a_clip():
    # nine 14 px walkers in three rows, and a stack: a 20 px square on top of another, joined by a 2 px bridge (the
    # clip's expected height comes from its own blobs, mostly the walkers')
    class StackClip(MovingSquareClip):
        def _read(self, i):
            img = super()._read(i).astype(np.int16)
            x = 150 - 3 * i
            img[60:78, x + 6:x + 8] = 230                                 # the bridge between the stacked squares
            return np.clip(img, 0, 255).astype(np.uint8)

    walkers = tuple((5 + 40 * j, 40 + 25 * k, 1, 0, 14, 230) for k in range(3) for j in range(3))
    stack = ((150, 40, -3, 0, 20, 230), (150, 78, -3, 0, 20, 230))
    clip = StackClip(num_frames=30, height=140, width=200, squares=walkers + stack, noise=1.0)
    plain = BackgroundSubtractionDetector(dilate=1, min_width=6, min_area=20, split_motion=0).detect(clip)
    rows = BackgroundSubtractionDetector(dilate=1, **ROWS).detect(clip)
    frame = 10                                                          # the stack at x 120-140, the walkers left of 110
    # (and faint ghosts at 114-118 where the slow walkers stood long enough to enter the median background)
    at_stack = lambda t: t.xyxy[(t.frame == frame) & (t.xyxy[:, 0] > 116)].tolist()
    assert len(at_stack(plain)) == 1 and at_stack(plain)[0][3] - at_stack(plain)[0][1] > 50
    walkers_boxes = lambda t: t.xyxy[(t.frame == frame) & (t.xyxy[:, 2] < 112)].tolist()
    assert walkers_boxes(rows) == walkers_boxes(plain)                  # the walkers are not cut
    assert len(at_stack(rows)) == 2
    upper, lower = sorted(at_stack(rows), key=lambda b: b[1])
    assert upper[1] == pytest.approx(40, abs=1) and upper[3] < 78     # the upper square (and a piece of the bridge)
    assert lower[3] == pytest.approx(98, abs=1) and lower[1] > 60     # the lower one


def test_bad_row_cut_settings_are_refused():
    for bad in (dict(split_rows_valley=1.0), dict(split_rows_valley=-0.1), dict(split_rows_share=0.5),
                dict(split_rows_length=0.6), dict(split_rows_height=0), dict(split_rows_fit_frames=0)):
        with pytest.raises(ValueError, match="split_rows"):
            BackgroundSubtractionDetector(**bad)
