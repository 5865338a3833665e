"""Motion split of merged blobs (tao_lab.detector.motion_split, BackgroundSubtractionDetector.split_motion)."""
import pickle

import numpy as np
import pytest

from tao_lab.boxes import box_iou as iou_matrix
from tao_lab.detector import BackgroundSubtractionDetector
from tao_lab.detector.motion_split import motion_cuts
from tao_lab.types import Clip

CUT = dict(min_width=6, min_area=40, min_speed=1.0, ratio=0.5)


def _blob(widths, speeds, h=30):
    """A solid blob of side-by-side parts of the given widths, each moving at (speed, 0) px/frame."""
    comp = np.ones((h, sum(widths)), bool)
    flow = np.zeros((h, sum(widths), 2), np.float32)
    x = 0
    for w, v in zip(widths, speeds):
        flow[:, x:x + w, 0] = v
        x += w
    return comp, flow


def test_parts_moving_apart_are_cut_at_their_border():
    comp, flow = _blob([14, 10], [4.0, 1.0])  # a biker beside a walker
    assert motion_cuts(comp, flow, **CUT) == [(0, 14), (14, 24)]
    comp, flow = _blob([10, 10], [1.0, -1.0])  # two walkers passing the other way
    assert motion_cuts(comp, flow, **CUT) == [(0, 10), (10, 20)]
    comp, flow = _blob([10, 12, 10], [1.0, 4.0, -1.0])  # three: one cut only, off the part moving the other way
    assert motion_cuts(comp, flow, **CUT) == [(0, 22), (22, 32)]


def test_the_cut_sits_where_a_smooth_flow_crosses_between_the_parts():
    # DIS's flow ramps across a border; the cut goes to the ramp's middle, not towards the smaller part
    comp, flow = _blob([20], [1.0])
    flow[:, :, 0] = np.interp(np.arange(20), [5, 11], [1.0, 4.0])  # 1 px/frame up to column 5, 4 from column 11
    assert motion_cuts(comp, flow, **CUT) == [(0, 8), (8, 20)] or motion_cuts(comp, flow, **CUT) == [(0, 9), (9, 20)]


def test_parts_moving_together_are_not_cut():
    comp, flow = _blob([12, 12], [1.0, 1.4])  # two walkers side by side: gap 0.4 < 1 px/frame
    assert motion_cuts(comp, flow, **CUT) == [(0, 24)]
    comp, flow = _blob([12, 12], [6.0, 7.5])  # a fast object's own flow noise: gap 1.5 < 0.5 x 7.5
    assert motion_cuts(comp, flow, **CUT) == [(0, 24)]
    comp, flow = _blob([30], [1.0])
    comp[:, 8:16] = False  # a gap: columns without foreground count for nothing
    assert motion_cuts(comp, flow, **CUT) == [(0, 30)]


def test_a_walkers_swinging_legs_do_not_cut_it():
    # one walker at 2 px/frame whose legs (bottom third) swing hard: the back leg at -2 px/frame, the front one
    # at 6, the arms at the sides likewise; every column's median is the body's own motion
    comp, flow = _blob([14], [2.0], h=36)
    flow[24:, :7, 0], flow[24:, 7:, 0] = -2.0, 6.0
    flow[8:20, :2, 0], flow[8:20, 12:, 0] = 6.0, -2.0
    assert motion_cuts(comp, flow, **CUT) == [(0, 14)]
    # the same legs with pixel means per column would cut it: the guard is the median, not the bar
    means = (flow * comp[..., None]).sum(0) / comp.sum(0)[:, None]
    assert abs(means[:7, 0].mean() - means[7:, 0].mean()) > max(1.0, 0.5 * means[7:, 0].mean())


def test_cut_rejects_mismatched_flow():
    with pytest.raises(ValueError, match="does not match"):
        motion_cuts(np.ones((5, 20), bool), np.zeros((5, 19, 2)), **CUT)


class _TexturedPair(Clip):
    """Two textured objects on a textured background, each on a straight path (x0, px/frame, top row); painted in
    ``ORDER`` (the last in front)."""

    SIZE: tuple = ()  # width, height
    PATHS: tuple = ()
    ORDER: tuple = (0, 1)

    def __init__(self, name, num_frames, height, width, seed):
        super().__init__(name, num_frames, height, width, source=name)
        rng = np.random.default_rng(seed)
        self.bg = rng.integers(40, 120, (height, width)).astype(np.uint8)
        self.texture = [rng.integers(150, 255, self.SIZE[::-1]).astype(np.uint8) for _ in range(2)]

    def box(self, i, k):
        x0, v, y0 = self.PATHS[k]
        w, h = self.SIZE
        return np.array([x0 + v * i, y0, x0 + v * i + w, y0 + h], np.float32)

    def _read(self, i):
        img = self.bg.copy()
        for k in self.ORDER:
            x1, y1, x2, y2 = self.box(i, k).astype(int)
            if 0 <= x1 and x2 <= self.width:
                img[y1:y2, x1:x2] = self.texture[k]
        return np.repeat(img[..., None], 3, axis=2)


class _PassingClip(_TexturedPair):
    """Tall objects: a fast one (4 px/frame) overtakes a slow one (1 px/frame), passing in front of it; from about
    frame 8 to 20 they touch or overlap and background subtraction sees one blob."""

    SIZE = (12, 34)
    PATHS = ((10, 4, 30), (50, 1, 30))
    ORDER = (1, 0)

    def __init__(self, num_frames=36):
        super().__init__("passing", num_frames, 96, 200, seed=0)


def test_detector_cuts_a_merged_blob_by_motion_and_not_otherwise():
    clip = _PassingClip()
    merged = [i for i in range(1, clip.num_frames)
              if clip.box(i, 0)[2] >= clip.box(i, 1)[0] - 2 and clip.box(i, 0)[0] <= clip.box(i, 1)[2] + 2]
    side_by_side = [i for i in merged if abs(clip.box(i, 0)[0] - clip.box(i, 1)[0]) >= 10]  # each shows >= 10 cols
    assert len(side_by_side) >= 4
    plain = BackgroundSubtractionDetector(min_width=6, split_motion=0).detect(clip)
    split = BackgroundSubtractionDetector(min_width=6, split_motion=1.0).detect(clip)
    for i in side_by_side:
        assert (plain.frame == i).sum() == 1, f"frame {i}: the plain detector should see one merged blob"
        rows = split.xyxy[split.frame == i]
        assert len(rows) == 2, f"frame {i}: {len(rows)} boxes"
        # the fast object's box is its own visible part; the slow one's box is what of it shows
        assert iou_matrix(rows, clip.box(i, 0)).max() > 0.6
    apart = [i for i in range(1, clip.num_frames) if (plain.frame == i).sum() == 2]
    assert len(apart) >= 10
    for i in apart:  # the plain detector already separates them: nothing changes
        np.testing.assert_array_equal(split.xyxy[split.frame == i], plain.xyxy[plain.frame == i])
    # the first frame has no previous one: no motion, no cut
    np.testing.assert_array_equal(split.xyxy[split.frame == 0], plain.xyxy[plain.frame == 0])


def test_motion_split_online_equals_offline_and_pickles(tmp_path):
    from tao_lab.streaming import StreamContext

    clip = _PassingClip()
    det = BackgroundSubtractionDetector(min_width=6, split_motion=1.0)
    offline = det.detect(clip)
    det = pickle.loads(pickle.dumps(det))  # a used detector (its flow object) goes to a worker
    ctx = StreamContext(clip.height, clip.width, clip.fps)
    stream = det.stream(ctx)
    ctx.fit(clip)  # warm-up = the whole clip: the same background model as offline
    for i, frame in enumerate(clip.frames()):
        rows = stream.step(frame).xyxy
        np.testing.assert_array_equal(rows, offline.xyxy[offline.frame == i])


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="split_motion"):
        BackgroundSubtractionDetector(split_motion=-1)


def test_min_aspect_keeps_slivers_from_being_cut_off():
    # a blob whose first 6 columns move apart from the rest: a part 6 px wide and 30 high (aspect 0.2); the bound
    # vetoes the cut (it does not move it)
    comp, flow = _blob([6, 24], [3.0, 1.0])
    assert motion_cuts(comp, flow, **CUT) == [(0, 6), (6, 30)]
    assert motion_cuts(comp, flow, **CUT, min_aspect=0.25) == [(0, 30)]
    # parts as wide as people (12 px = 0.4 x 30) are still cut
    comp, flow = _blob([12, 18], [3.0, 1.0])
    assert motion_cuts(comp, flow, **CUT, min_aspect=0.25) == [(0, 12), (12, 30)]
    # the bound reads each part's own box: a short part (the top half of its columns only) is 12 / 15 wide enough
    comp, flow = _blob([12, 18], [3.0, 1.0])
    comp[15:, :12] = False
    assert motion_cuts(comp, flow, **CUT, min_aspect=0.25) == [(0, 12), (12, 30)]
    comp[:, :12] = False
    comp[:4, :12] = True  # 12 wide, 4 high; the other part 18 x 30
    assert motion_cuts(comp, flow, min_width=6, min_area=10, min_speed=1.0, ratio=0.5, min_aspect=0.7) == [(0, 30)]


class _StackedClip(_TexturedPair):
    """Two objects one above the other (touching: background subtraction sees one blob while they overlap in x), the
    upper one walking right at 1 px/frame, the lower one left at 1 px/frame (each pixel is covered on a quarter of
    the frames at most, so the clip's median background is clean)."""

    SIZE = (20, 22)
    PATHS = ((60, 1, 30), (140, -1, 52))

    def __init__(self, num_frames=80):
        super().__init__("stacked", num_frames, 120, 240, seed=1)


class _TallStackedClip(_StackedClip):
    """The stacked pair as two people: 14 px wide, 30 high."""

    SIZE = (14, 30)
    PATHS = ((60, 1, 20), (120, -1, 50))


@pytest.mark.parametrize("clip_type, rows_options", [
    (_StackedClip, {}), (_TallStackedClip, {"split_motion_rows_aspect": 1.0, "split_motion_rows_flow": "mean"})])
def test_row_cut_separates_objects_stacked_in_the_image(clip_type, rows_options):
    """While the two objects overlap in x by at least 3/4 of their width, the column cuts alone leave one box over
    both; with split_motion_rows the box is cut between them and each object has its own box (IoU > 0.6) on all but
    at most one of those frames; where the objects are apart, nothing changes. The same with round 4's row cut (parts
    at least as tall as wide, rows' mean flow) on two objects shaped like people."""
    clip = clip_type()
    stacked = [i for i in range(1, clip.num_frames)
               if min(clip.box(i, 0)[2], clip.box(i, 1)[2]) - max(clip.box(i, 0)[0], clip.box(i, 1)[0])
               >= 0.75 * clip.SIZE[0]]
    assert len(stacked) >= 3
    cols = BackgroundSubtractionDetector(split_motion=1.0).detect(clip)
    rows = BackgroundSubtractionDetector(split_motion=1.0, split_motion_rows=True, **rows_options).detect(clip)
    separated = 0
    for i in stacked:
        assert (cols.frame == i).sum() == 1, f"frame {i}: the column cut alone should leave one box"
        boxes = rows.xyxy[rows.frame == i]
        separated += len(boxes) == 2 and all(iou_matrix(boxes, clip.box(i, k)).max() > 0.6 for k in (0, 1))
    # at 1 px/frame each way DIS's half-resolution flow is noisy: one frame of the stack may stay uncut
    assert separated >= len(stacked) - 1, (separated, stacked)
    apart = [i for i in range(1, clip.num_frames)  # not one column in common, 3 px between them
             if min(clip.box(i, 0)[2], clip.box(i, 1)[2]) + 3 <= max(clip.box(i, 0)[0], clip.box(i, 1)[0])]
    assert len(apart) >= 10
    for i in apart:
        np.testing.assert_array_equal(rows.xyxy[rows.frame == i], cols.xyxy[cols.frame == i])


def test_row_cut_leaves_a_walker_with_swinging_legs_whole():
    """A walker's legs move differently from its torso, but each row's median flow follows the body: the rows of the
    legs block (half of them moving 2x, half 0 px/frame, the body 1) do not make a cut, in rows or columns."""
    h, w = 40, 12
    comp = np.ones((h, w), bool)
    flow = np.zeros((h, w, 2))
    flow[:24, :, 0] = 1.0  # torso
    flow[24:, : w // 2, 0] = 2.0  # swinging leg
    flow[24:, w // 2:, 0] = 0.0  # standing leg
    det = BackgroundSubtractionDetector(split_motion=1.0, split_motion_rows=True, min_width=6, min_area=20)
    assert det._pieces(comp, (0, 0), lambda y1, y2, x1, x2: flow[y1:y2, x1:x2]) == [(0, 0, w, h)]


def _legs_walker(body_speed: float, h: int = 40, w: int = 12):
    """A walker's blob: torso rows (0-24) at ``body_speed``, leg rows with the swinging leg at twice that and the
    standing one still (their mean is the body's speed)."""
    comp = np.ones((h, w), bool)
    flow = np.zeros((h, w, 2))
    flow[:24, :, 0] = body_speed
    flow[24:, : w // 2, 0] = 2 * body_speed
    return comp, flow


def test_row_mean_follows_a_walkers_legs_where_the_median_does_not():
    """At 1.5 px/frame the legs' lower-middle value is the standing leg (0): the median rows cut the walker at its
    hips, the mean rows (1.5, the body's speed) do not; the columns' median is not changed by the option."""
    comp, flow = _legs_walker(1.5)
    rows = lambda y1, y2, x1, x2: flow[y1:y2, x1:x2]
    options = dict(split_motion=1.0, split_motion_rows=True, min_width=6, min_area=20)
    assert BackgroundSubtractionDetector(**options)._pieces(comp, (0, 0), rows) == [(0, 0, 12, 24), (0, 24, 12, 40)]
    mean = BackgroundSubtractionDetector(**options, split_motion_rows_flow="mean")
    assert mean._pieces(comp, (0, 0), rows) == [(0, 0, 12, 40)]
    # the same statistic on its own: row means of the transposed blob
    assert motion_cuts(comp.T, flow.transpose(1, 0, 2), 6, 20, 1.0, 0.5, column_flow="mean") == [(0, 40)]
    assert motion_cuts(comp.T, flow.transpose(1, 0, 2), 6, 20, 1.0, 0.5) == [(0, 24), (24, 40)]
    # two objects stacked and moving apart are still cut with the mean, at their border
    comp, flow = np.ones((60, 12), bool), np.zeros((60, 12, 2))
    flow[:28, :, 0], flow[28:, :, 0] = 1.0, -1.0
    assert mean._pieces(comp, (0, 0), lambda y1, y2, x1, x2: flow[y1:y2, x1:x2]) == [(0, 0, 12, 28), (0, 28, 12, 60)]
    with pytest.raises(ValueError, match="column_flow"):
        motion_cuts(comp, flow, **CUT, column_flow="mode")


def test_row_aspect_keeps_each_row_part_person_shaped():
    """A 14 px wide walker whose feet (the bottom 8 rows) move apart from the rest: round 3's bound (a part a quarter
    as tall as wide) lets the flat feet strip be cut off; split_motion_rows_aspect 1.0 (each part at least as tall
    as wide) vetoes it, and still cuts two people stacked (parts 28 and 32 px high, 12 wide); None = the columns'
    bound; bad settings are refused."""
    comp, flow = np.ones((40, 14), bool), np.zeros((40, 14, 2))
    flow[:32, :, 0], flow[32:, :, 0] = 2.0, -1.0
    feet = lambda y1, y2, x1, x2: flow[y1:y2, x1:x2]
    options = dict(split_motion=1.0, split_motion_rows=True, min_width=6, min_area=20)
    assert BackgroundSubtractionDetector(**options)._pieces(comp, (0, 0), feet) == [(0, 0, 14, 32), (0, 32, 14, 40)]
    person = BackgroundSubtractionDetector(**options, split_motion_rows_aspect=1.0)
    assert person._pieces(comp, (0, 0), feet) == [(0, 0, 14, 40)]
    stacked = np.zeros((60, 12, 2))
    stacked[:28, :, 0], stacked[28:, :, 0] = 1.0, -1.0
    assert person._pieces(np.ones((60, 12), bool), (0, 0), lambda y1, y2, x1, x2: stacked[y1:y2, x1:x2]) == [
        (0, 0, 12, 28), (0, 28, 12, 60)]
    assert BackgroundSubtractionDetector(split_motion_aspect=0.4).split_motion_rows_aspect == 0.4
    with pytest.raises(ValueError, match="split_motion_rows_aspect"):
        BackgroundSubtractionDetector(split_motion_rows_aspect=-1.0)
    with pytest.raises(ValueError, match="split_motion_rows_flow"):
        BackgroundSubtractionDetector(split_motion_rows_flow="max")


def test_row_cut_online_equals_offline():
    from tao_lab.streaming import StreamContext

    clip = _StackedClip()
    det = BackgroundSubtractionDetector(split_motion=1.0, split_motion_rows=True)
    offline = det.detect(clip)
    ctx = StreamContext(clip.height, clip.width, clip.fps)
    stream = det.stream(ctx)
    ctx.fit(clip)
    for i, frame in enumerate(clip.frames()):
        np.testing.assert_array_equal(stream.step(frame).xyxy, offline.xyxy[offline.frame == i])
