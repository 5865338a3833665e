"""Prompt filters: geometry, TAO's published rules (tao_faithful) on hand-made cases, and property tests."""
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONFIG_DIR
from tao_lab.prompt_filter import (MatchRule, PassThroughPromptFilter, RobustPromptFilter, box_iou, merge_any_overlap,
                             merge_iou)
from tao_lab.types import ObjectTable, Prompts

CONFIGS = CONFIG_DIR / "prompt_filter"


def preset(name: str, **overrides):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    return instantiate(OmegaConf.merge(cfg, overrides))


def table(rows):
    """rows: (frame, x1, y1, x2, y2[, score[, track_id]])."""
    if not rows:
        return ObjectTable.empty()
    frame = [r[0] for r in rows]
    xyxy = [r[1:5] for r in rows]
    score = [r[5] if len(r) > 5 else 1.0 for r in rows]
    tid = [r[6] if len(r) > 6 else -1 for r in rows]
    return ObjectTable.build(frame, xyxy, score, tid)


def box_at(cx, cy, w=20, h=40):
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def prompts_of(p: Prompts, obj_id):
    return p.frame[p.obj_id == obj_id]


# ---------------------------------------------------------------------------------------------- geometry
def test_box_iou_and_match_rule():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0]])
    rule = MatchRule(iou=0.3, center_dist=20, combine="or")
    # centre distance exactly 20 px, no overlap -> match (OR); 21 px -> no match
    assert rule(box_at(0, 0), box_at(20, 0))[0, 0]
    assert not rule(box_at(0, 0, 10, 10), box_at(21, 0, 10, 10))[0, 0]
    # far centres (30 px) but IoU >= 0.3 with big boxes -> match through IoU
    big = np.array([[0, 0, 100, 100]], float)
    assert rule(big, big + [30, 0, 30, 0])[0, 0]
    assert not MatchRule(iou=0.3, center_dist=20, combine="and")(big, big + [30, 0, 30, 0])[0, 0]


def test_merge_any_overlap_is_single_pass_and_order_dependent():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [9, 0, 21, 10]], float)
    merged, scores, members = merge_any_overlap(boxes, np.array([0.1, 0.2, 0.3]))
    # C joins A (first overlapping kept box); the union [0, 21] still overlaps B but is not re-tested
    assert len(merged) == 2
    np.testing.assert_allclose(merged[1], [0, 0, 21, 10])
    assert members == [[1], [0, 2]]
    np.testing.assert_allclose(scores, [0.2, 0.3])
    # touching boxes (shared edge) merge
    touching, _, _ = merge_any_overlap(np.array([[0, 0, 10, 10], [10, 0, 20, 10]], float), np.ones(2))
    np.testing.assert_allclose(touching, [[0, 0, 20, 10]])


def test_merge_iou_reaches_fixed_point():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10], [50, 50, 60, 60]], float)
    merged, scores, members = merge_iou(boxes, np.array([1, 3, 2, 5.0]), 0.5)
    assert sorted(map(tuple, merged.tolist())) == [(0, 0, 12, 10), (50, 50, 60, 60)]
    assert sorted(scores.tolist()) == [3.0, 5.0]
    # an adjacent (touching) pair does not merge under the IoU rule
    assert len(merge_iou(np.array([[0, 0, 10, 10], [10, 0, 20, 10]], float), np.ones(2), 0.5)[0]) == 2


# ---------------------------------------------------------------------------------------------- TAO's rules
def steady(frames, cx, cy, vx=0.0, vy=0.0, score=1.0, tid=-1, w=20, h=40):
    return [(f, *box_at(cx + vx * f, cy + vy * f, w, h), score, tid) for f in frames]


def test_tao_or_match_at_20px_keeps_identity():
    f = preset("tao_faithful")
    # a box that jumps exactly 20 px per frame (IoU 0) is still the same object; 21 px would not be
    p = f(table(steady(range(0, 12), 20, 100, vx=20, w=10, h=10)), 40)
    assert set(p.obj_id) == {1} and 0 in p.frame
    p = f(table(steady(range(0, 12), 20, 100, vx=21, w=10, h=10)), 40)
    assert len(p) == 0  # no box has a match in the following frames (IoU 0, 21 px)


def test_tao_three_of_next_five():
    f = preset("tao_faithful")
    anchor = steady(range(0, 30), 300, 200)  # makes frame 0 the first anomalous frame
    b3 = [(t, *box_at(100, 100), 1.0, -1) for t in (10, 11, 13, 15)]  # 11, 13, 15: 3 of frames 11..15
    p = f(table(anchor + b3), 30)
    new = set(p.obj_id) - {1}
    assert len(new) == 1 and prompts_of(p, new.pop())[0] == 10
    b2 = [(t, *box_at(100, 100), 1.0, -1) for t in (10, 11, 13)]  # only 2 of 11..15 (11 has 1 of 12..16)
    p = f(table(anchor + b2), 30)
    assert set(p.obj_id) == {1}


def test_tao_one_match_at_first_anomalous_frame():
    rows = [(3, *box_at(100, 100)), (7, *box_at(100, 100))]  # one match in the 5 frames after the first one
    p = preset("tao_faithful")(table(rows), 20)
    assert p.frame.tolist() == [3] and p.obj_id.tolist() == [1]
    assert len(preset("robust")(table(rows), 20)) == 0  # robust asks 3 matches everywhere
    assert len(preset("tao_faithful", first_frame_matches=2)(table(rows), 20)) == 0


def test_tao_reprompts_on_frame_index_multiple_of_five():
    rows = steady(range(2, 23), 100, 100, vx=2)
    p = preset("tao_faithful")(table(rows), 30)
    assert p.frame.tolist() == [2, 5, 10, 15, 20] and set(p.obj_id) == {1}
    np.testing.assert_allclose(p.xyxy[1], rows[3][1:5])  # the frame's own box
    q = preset("robust")(table(rows), 30)
    assert q.frame.tolist() == [2, 7, 12, 17, 22] and set(q.obj_id) == {1}


def test_tao_any_overlap_union_merge():
    rows = []
    for t in range(0, 8):
        rows += [(t, 10, 10, 30, 50, 0.5, 1), (t, 30, 20, 45, 60, 0.9, 2)]  # touching at x = 30
    p = preset("tao_faithful")(table(rows), 8)
    assert set(p.obj_id) == {1}
    np.testing.assert_allclose(p.xyxy[0], [10, 10, 45, 60])
    assert p.score[0] == pytest.approx(0.9)
    q = preset("robust")(table(rows), 8)  # IoU merge keeps touching objects apart
    assert set(q.obj_id) == {1, 2}


@pytest.mark.parametrize("frame_new", [11, 10])
def test_tao_stale_centre(frame_new):
    a = steady(range(0, 30), 300, 200)
    b = steady(range(frame_new, 30), 100, 100)
    rows = [r for r in b + a]  # B listed before A within each frame, so A is the frame's last box
    own = np.array([100.0, 100.0])
    stale = np.array([300.0, 200.0])
    p = preset("tao_faithful")(table(rows), 30)
    first_b = p.point[(p.obj_id == 2)][0]
    if frame_new % 5:
        np.testing.assert_allclose(first_b, stale)  # the bug: the centre of the frame's last box
    else:
        np.testing.assert_allclose(first_b, own)  # the same-frame re-prompt overrides it, as in TAO's code
    p = preset("tao_faithful", stale_center=False)(table(rows), 30)
    np.testing.assert_allclose(p.point[p.obj_id == 2][0], own)
    p = preset("robust")(table(rows), 30)
    np.testing.assert_allclose(p.point[p.obj_id == 2][0], own)


def test_tao_inherits_from_oldest_matching_frame():
    # X stays at x=100 on frames 0..8; Y appears 15 px to its right at frame 4 (it matches X's boxes too).
    # At frame 5 Y is listed first: TAO scans the previous frames oldest first, finds X's frame-0 box (id 1, still
    # free) and gives Y the id 1, then X takes Y's id 2 -> the ids swap. The robust association keeps them.
    x = steady(range(0, 9), 100, 100)
    y = steady(range(4, 9), 115, 100)
    rows = [r for r in x if r[0] < 4] + [r for t in range(4, 9) for r in
                                         ([x[t], y[t - 4]] if t == 4 else [y[t - 4], x[t]])]
    y5 = np.array(y[1][1:5], np.float32)
    p = preset("tao_faithful", merge="none")(table(rows), 10)
    assert p.obj_id[(p.frame == 4)].tolist() == [2]  # Y confirmed as a new object at frame 4
    assert p.obj_id[(p.frame == 5) & (p.xyxy == y5).all(1)].tolist() == [1]  # ... and renamed 1 at frame 5
    q = preset("robust", merge="none", use_track_ids=False)(table(rows), 10)
    assert q.obj_id[(q.frame == 4)].tolist() == [2]
    assert 1 not in q.obj_id[(q.xyxy[:, 0] == y5[0])]  # Y never takes X's id


def test_prompt_types_and_none_filter():
    rows = steady(range(0, 10), 100, 100, tid=4) + [(3, 0, 0, 10, 10, 0.2, -1), (3, 50, 0, 60, 10, 0.3, -1)]
    p = preset("none")(table(rows), 10)
    assert len(p) == 12
    assert set(p.obj_id[p.frame != 3]) == {5}  # tracker id + 1
    assert sorted(p.obj_id[p.frame == 3].tolist()) == [5, 6, 7]  # fresh ids for untracked boxes
    np.testing.assert_allclose(p.point[0], [100, 100])
    pb = PassThroughPromptFilter("box")(table(rows), 10)
    assert np.isnan(pb.point).all() and not np.isnan(pb.xyxy).any()
    pp = preset("robust", prompt_type="point")(table(rows), 10)
    assert len(pp) and np.isnan(pp.xyxy).all() and not np.isnan(pp.point).any()
    assert len(preset("robust")(ObjectTable.empty(), 10)) == 0
    with pytest.raises(ValueError):
        RobustPromptFilter(merge="sometimes")


# ---------------------------------------------------------------------------------------------- properties
FILTERS = ["robust", "tao_faithful"]


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("seed", range(15))
def test_isolated_one_frame_boxes_never_become_prompts(name, seed):
    rng = np.random.default_rng(seed)
    T = 80
    rows = steady(range(5, 60), 60, 200, vx=rng.uniform(-1, 1), vy=rng.uniform(-0.5, 0.5))
    isolated = set()
    # isolated boxes: one frame each, on a coarse grid far (> 60 px) from each other and from the steady object
    cells = [(cx, cy) for cx in (200, 300, 400, 500) for cy in (60, 160, 260, 360)]
    for t in rng.choice(T, size=25, replace=True):
        cx, cy = cells[rng.integers(len(cells))]
        if any(r[0] in range(t - 6, t + 7) and abs((r[1] + r[3]) / 2 - cx) < 60 and abs((r[2] + r[4]) / 2 - cy) < 60
               for r in rows):
            continue  # would not be isolated
        box = box_at(cx + rng.uniform(-5, 5), cy + rng.uniform(-5, 5), rng.uniform(10, 40), rng.uniform(10, 60))
        rows.append((int(t), *box, rng.uniform(0, 5), -1))
        isolated.add((int(t), tuple(np.float32(box))))
    order = rng.permutation(len(rows))
    p = preset(name)(table([rows[i] for i in order]), T)
    for t, box in zip(p.frame, p.xyxy):
        assert (int(t), tuple(np.float32(box))) not in isolated
    assert len(p) > 0  # the steady object is prompted


@pytest.mark.parametrize("name", FILTERS + ["none"])
@pytest.mark.parametrize("seed", range(10))
def test_steadily_moving_box_keeps_one_id(name, seed):
    rng = np.random.default_rng(100 + seed)
    vx, vy = rng.uniform(-6, 6, size=2)
    w, h = rng.uniform(10, 60, size=2)
    start = int(rng.integers(0, 10))
    rows = steady(range(start, start + 60), 200, 200, vx=vx, vy=vy, w=w, h=h, score=rng.uniform(1, 2), tid=3)
    p = preset(name)(table(rows), 80)
    assert len(set(p.obj_id)) == 1
    assert p.frame.min() == start and len(p) >= 60 // 5


@pytest.mark.parametrize("use_tracks", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_two_crossing_objects_keep_distinct_ids(use_tracks, seed):
    rng = np.random.default_rng(200 + seed)
    speed = rng.uniform(2, 5)
    dy = rng.uniform(15, 25)  # vertical offset: at full overlap IoU = (40 - dy) / (40 + dy) < 0.5
    a = steady(range(0, 50), 100, 200, vx=speed, tid=7 if use_tracks else -1)
    b = steady(range(0, 50), 100 + 49 * speed, 200 + dy, vx=-speed, tid=9 if use_tracks else -1)
    rows = [r for pair in zip(a, b) for r in (pair if rng.random() < 0.5 else pair[::-1])]
    f = preset("robust", reprompt_interval=1)  # a prompt on every frame: every assignment is visible
    p = f(table(rows), 50)
    ids_a = {int(i) for i, box in zip(p.obj_id, p.xyxy)
             if any(np.allclose(box, r[1:5], atol=1e-3) for r in a)}
    ids_b = {int(i) for i, box in zip(p.obj_id, p.xyxy)
             if any(np.allclose(box, r[1:5], atol=1e-3) for r in b)}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b
    assert len(p) == 100


def test_every_prompt_filter_knob_is_in_the_configs_and_documented():
    import inspect

    knobs = set(inspect.signature(RobustPromptFilter).parameters)
    for name in ("robust", "tao_faithful"):
        cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
        assert set(cfg.keys()) - {"_target_"} == knobs, name
    for path in CONFIGS.glob("*.yaml"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith(("#", " ", "_target_")):
                assert lines[i - 1].startswith("#"), f"{path.name}: undocumented key {line!r}"
