"""RBDC / TBDC: the vectorised implementation against a plain sequential loop written here, plus hand-computed
and edge cases (REFERENCE.md §3)."""
import math

import numpy as np
import pytest

from tao_lab.metrics import rbdc_tbdc
from tao_lab.types import ObjectTable


# ---------------------------------------------------------------------------------------------------------------
# the straightforward O(detections x tracks) reference, written from the definition
# ---------------------------------------------------------------------------------------------------------------
def _iou(a, b, pad):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + pad
    ih = min(a[3], b[3]) - max(a[1], b[1]) + pad
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0] + pad) * (a[3] - a[1] + pad) + (b[2] - b[0] + pad) * (b[3] - b[1] + pad) - inter
    return inter / union if union > 0 else 0.0


def loop_rbdc_tbdc(gt, dets, num_frames, group_ties=False, pad=0.0):
    videos = sorted(set(gt) | set(dets))
    tracks = {}                                   # (video, tid) -> {frame: [region index]}
    n_regions = 0
    region_box = []
    for v in videos:
        t = gt.get(v)
        for i in range(0 if t is None else len(t)):
            key = (v, int(t.track_id[i]))
            tracks.setdefault(key, {}).setdefault(int(t.frame[i]), []).append(n_regions)
            region_box.append([float(c) for c in t.xyxy[i]])
            n_regions += 1
    track_len = {k: sum(len(r) for r in fr.values()) for k, fr in tracks.items()}
    video_tracks = {v: [k for k in tracks if k[0] == v] for v in videos}
    det_list = []
    for vi, v in enumerate(videos):
        t = dets.get(v)
        for i in range(0 if t is None else len(t)):
            det_list.append((-float(t.score[i]), vi, int(t.frame[i]), i, v, [float(c) for c in t.xyxy[i]]))
    det_list.sort(key=lambda d: d[:4])
    matched = [False] * n_regions
    n_matched = 0
    track_hits = {k: 0 for k in tracks}
    detected = set()
    fp = 0
    pts = []
    for neg_score, _, frame, _, v, box in det_list:
        overlap = False
        for key in video_tracks[v]:
            for r in tracks[key].get(frame, []):
                if _iou(box, region_box[r], pad) >= 0.1:
                    overlap = True
                    if not matched[r]:
                        matched[r] = True
                        n_matched += 1
                        track_hits[key] += 1
                        if track_hits[key] / track_len[key] >= 0.1:
                            detected.add(key)
        if not overlap:
            fp += 1
        pts.append((fp / num_frames, n_matched / max(n_regions, 1), len(detected) / max(len(tracks), 1),
                    neg_score))
    if group_ties:
        pts = [p for i, p in enumerate(pts) if i == len(pts) - 1 or pts[i + 1][3] != p[3]]
    curve = [(0.0, 0.0, 0.0)] + [p[:3] for p in pts if p[0] <= 1.0]
    curve.append((1.0, curve[-1][1], curve[-1][2]))
    rbdc = math.fsum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(curve, curve[1:]))
    tbdc = math.fsum((b[0] - a[0]) * (a[2] + b[2]) / 2 for a, b in zip(curve, curve[1:]))
    return (rbdc if n_regions else float("nan")), (tbdc if tracks else float("nan")), curve


def random_case(rng, n_videos=4, frames=30, n_tracks=3, n_dets=300, integer=True, tie_levels=None):
    gt, dets = {}, {}
    for v in range(n_videos):
        name = f"vid{v:02d}"
        rows = []
        for tid in range(rng.integers(0, n_tracks + 1)):
            start = rng.integers(0, frames)
            length = rng.integers(1, frames - start + 1)
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(10, 60, 2)
            for f in range(start, start + length):
                x += rng.normal(0, 3)
                y += rng.normal(0, 3)
                rows.append((f, x, y, x + w, y + h, tid))
        if rows or rng.random() < 0.5:
            a = np.array(rows, np.float64).reshape(-1, 6)
            box = np.round(a[:, 1:5]) if integer else a[:, 1:5]
            gt[name] = ObjectTable.build(a[:, 0], box, track_id=a[:, 5])
        n = rng.integers(0, n_dets)
        f = rng.integers(0, frames, n)
        xy = rng.uniform(0, 230, (n, 2))
        wh = rng.uniform(5, 70, (n, 2))
        box = np.concatenate([xy, xy + wh], 1)
        if integer:
            box = np.round(box)
        score = rng.random(n) if tie_levels is None else rng.integers(0, tie_levels, n) / tie_levels
        if n or rng.random() < 0.5:
            dets[name] = ObjectTable.build(f, box, score=score)
    # a video with detections only (no GT entry at all)
    dets["zz_nogt"] = ObjectTable.build([0, 1], [[0, 0, 10, 10], [5, 5, 20, 20]], score=[0.9, 0.2])
    return gt, dets


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("group_ties", [False, True])
def test_matches_plain_loop(seed, group_ties):
    rng = np.random.default_rng(seed)
    gt, dets = random_case(rng, integer=seed % 2 == 0, tie_levels=None if seed < 4 else 7)
    num_frames = int(rng.integers(40, 400))
    r = rbdc_tbdc(gt, dets, num_frames, group_ties=group_ties)
    rb, tb, curve = loop_rbdc_tbdc(gt, dets, num_frames, group_ties=group_ties)
    assert r["rbdc"] == rb
    assert r["tbdc"] == tb
    c = np.array(curve)
    np.testing.assert_allclose(r["fpr"], c[:, 0], atol=1e-15)
    np.testing.assert_allclose(r["rbdr"], c[:, 1], atol=1e-15)
    np.testing.assert_allclose(r["tbdr"], c[:, 2], atol=1e-15)


def test_inclusive_convention_matches_loop_with_plus_one():
    rng = np.random.default_rng(11)
    gt, dets = random_case(rng)
    r = rbdc_tbdc(gt, dets, 100, box_convention="inclusive")
    rb, tb, _ = loop_rbdc_tbdc(gt, dets, 100, pad=1.0)
    assert (r["rbdc"], r["tbdc"]) == (rb, tb)


def _t(frames, boxes, tids=None, scores=None):
    return ObjectTable.build(np.array(frames), np.array(boxes, np.float64).reshape(-1, 4), score=scores,
                             track_id=tids)


def test_hand_computed():
    # one track of 2 regions (frames 0, 1), 10 test frames
    gt = {"a": _t([0, 1], [[0, 0, 10, 10], [0, 0, 10, 10]], tids=[7, 7])}
    # d1 (0.9) hits frame 0; d2 (0.8) is a false positive; d3 (0.7) hits frame 1
    dets = {"a": _t([0, 0, 1], [[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 10, 10]], scores=[0.9, 0.8, 0.7])}
    r = rbdc_tbdc(gt, dets, num_frames=10)
    # points: (0,0) (0,.5) (.1,.5) (.1,1) -> flat to (1,1): area = 0.1*0.5 + 0.9*1 = 0.95
    assert r["rbdc"] == pytest.approx(0.95)
    # the track is detected at the first hit (1/2 >= 10 %): area = 1.0
    assert r["tbdc"] == pytest.approx(1.0)
    np.testing.assert_allclose(r["fpr"], [0, 0, 0.1, 0.1, 1])
    assert r["num_false_positives"] == 1


def test_one_detection_credits_several_regions_and_iou_threshold():
    gt = {"a": _t([0, 0], [[0, 0, 10, 10], [10, 0, 20, 10]], tids=[0, 1])}
    big = {"a": _t([0], [[0, 0, 20, 10]], scores=[1.0])}
    r = rbdc_tbdc(gt, big, num_frames=1)
    assert r["rbdc"] == pytest.approx(1.0) and r["tbdc"] == pytest.approx(1.0)
    # IoU exactly 0.1 counts (>=), just below does not: 10x10 GT, 100x10 detection sharing 10x10 -> 100/1000
    gt1 = {"a": _t([0], [[0, 0, 10, 10]], tids=[0])}
    assert rbdc_tbdc(gt1, {"a": _t([0], [[0, 0, 100, 10]], scores=[1])}, 1)["rbdc"] == pytest.approx(1.0)
    assert rbdc_tbdc(gt1, {"a": _t([0], [[0, 0, 101, 10]], scores=[1])}, 1)["rbdc"] == 0.0


def test_tied_scores_break_by_video_frame_row_and_grouping():
    gt = {"a": _t([0], [[0, 0, 10, 10]], tids=[0])}
    # same score: the false positive (row 0) comes first, then the hit (row 1)
    dets = {"a": _t([0, 0], [[50, 50, 60, 60], [0, 0, 10, 10]], scores=[0.5, 0.5])}
    r = rbdc_tbdc(gt, dets, num_frames=2)
    np.testing.assert_allclose(r["fpr"], [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(r["rbdr"], [0, 0, 1, 1])
    assert r["rbdc"] == pytest.approx(0.5)
    # grouped: one operating point (FPR 0.5, RBDR 1) -> area 0.25 + 0.5
    g = rbdc_tbdc(gt, dets, num_frames=2, group_ties=True)
    np.testing.assert_allclose(g["fpr"], [0, 0.5, 1])
    assert g["rbdc"] == pytest.approx(0.75)
    # dict order does not matter; the video id order does
    dets2 = {"b": _t([0], [[0, 0, 1, 1]], scores=[0.5]), **dets}
    assert rbdc_tbdc(gt, dets2, 2)["rbdc"] == rbdc_tbdc(gt, dict(reversed(list(dets2.items()))), 2)["rbdc"]


def test_fpr_beyond_one_is_dropped_without_interpolation():
    gt = {"a": _t([0], [[0, 0, 10, 10]], tids=[0])}
    # 3 false positives on a 2-frame set, then the hit: FPR reaches 1.5 before the hit -> RBDR stays 0
    dets = {"a": _t([0, 0, 0, 0], [[50, 50, 60, 60]] * 3 + [[0, 0, 10, 10]], scores=[0.9, 0.8, 0.7, 0.1])}
    r = rbdc_tbdc(gt, dets, num_frames=2)
    assert r["rbdc"] == 0.0
    np.testing.assert_allclose(r["fpr"], [0, 0.5, 1.0, 1.0])


def test_edge_cases_empty_inputs_and_videos_without_gt():
    empty = ObjectTable.empty()
    # no detections at all: curve is flat at 0
    gt = {"a": _t([0], [[0, 0, 10, 10]], tids=[0])}
    r = rbdc_tbdc(gt, {}, num_frames=5)
    assert r["rbdc"] == 0.0 and r["tbdc"] == 0.0 and r["num_detections"] == 0
    assert rbdc_tbdc(gt, {"a": empty}, 5)["rbdc"] == 0.0
    # no GT at all: undefined
    r = rbdc_tbdc({"a": empty}, {"a": _t([0], [[0, 0, 1, 1]], scores=[1])}, 5)
    assert np.isnan(r["rbdc"]) and np.isnan(r["tbdc"]) and r["num_false_positives"] == 1
    r = rbdc_tbdc({}, {}, 1)
    assert np.isnan(r["rbdc"])
    # a video present only in detections: all its detections are false positives
    dets = {"a": _t([0], [[0, 0, 10, 10]], scores=[0.5]), "other": _t([0, 1], [[0, 0, 10, 10]] * 2, scores=[0.9, 0.8])}
    r = rbdc_tbdc(gt, dets, num_frames=4)
    np.testing.assert_allclose(r["fpr"], [0, 0.25, 0.5, 0.5, 1])
    assert r["rbdc"] == pytest.approx(0.5 * 1.0)
    # single detection row and single region
    r = rbdc_tbdc(gt, {"a": _t([0], [[0, 0, 10, 10]], scores=[0.3])}, num_frames=1)
    assert r["rbdc"] == 1.0


def test_tbdc_ten_percent_rule():
    # a track of 20 regions: 1 hit = 5 % (not detected), 2 hits = 10 % (detected)
    frames = list(range(20))
    gt = {"a": _t(frames, [[0, 0, 10, 10]] * 20, tids=[3] * 20)}
    one = rbdc_tbdc(gt, {"a": _t([0], [[0, 0, 10, 10]], scores=[1])}, 20)
    two = rbdc_tbdc(gt, {"a": _t([0, 1], [[0, 0, 10, 10]] * 2, scores=[1, 1])}, 20)
    assert one["tbdc"] == 0.0 and two["tbdc"] == 1.0
    assert one["rbdc"] == pytest.approx(0.05) and two["rbdc"] == pytest.approx(0.1)


def test_rejects_bad_inputs():
    gt = {"a": _t([0], [[0, 0, 10, 10]], tids=[0])}
    with pytest.raises(ValueError, match="num_frames"):
        rbdc_tbdc(gt, {}, 0)
    with pytest.raises(ValueError, match="NaN"):
        rbdc_tbdc(gt, {"a": _t([0], [[0, 0, 1, 1]], scores=[np.nan])}, 1)


def test_large_random_matches_loop_quickly():
    rng = np.random.default_rng(5)
    gt, dets = random_case(rng, n_videos=10, frames=200, n_tracks=4, n_dets=1500, tie_levels=50)
    r = rbdc_tbdc(gt, dets, 2000)
    rb, tb, _ = loop_rbdc_tbdc(gt, dets, 2000)
    assert (r["rbdc"], r["tbdc"]) == (rb, tb)
