"""Trackers: one id per steadily moving object, ids restart per clip, rows are kept."""
from __future__ import annotations

import numpy as np

from tao_lab.tracker import ByteTracker, NoTracker, relabel_tracks
from tao_lab.types import Clip, ObjectTable


class BlankClip(Clip):
    def __init__(self, n=30):
        super().__init__("blank", n, 120, 200)

    def _read(self, i):
        return np.zeros((120, 200, 3), np.uint8)


def two_walkers(n=30):
    """Two boxes moving steadily (3 px/frame right, 2 px/frame left), one detection each per frame."""
    frame, xyxy = [], []
    for i in range(n):
        frame += [i, i]
        xyxy += [[10 + 3 * i, 20, 30 + 3 * i, 60], [180 - 2 * i, 60, 200 - 2 * i, 100]]
    return ObjectTable.build(np.array(frame), np.array(xyxy, np.float32), np.full(2 * n, 0.9))


def test_bytetrack_keeps_one_id_per_steady_object():
    dets = two_walkers()
    out = ByteTracker().track(dets, BlankClip())
    assert len(out) == len(dets)
    np.testing.assert_array_equal(out.frame, dets.frame)
    np.testing.assert_array_equal(out.xyxy, dets.xyxy)  # detection boxes are kept, not Kalman boxes
    ids_a, ids_b = set(out.track_id[0::2]), set(out.track_id[1::2])
    assert ids_a == {1} and ids_b == {2}


def test_bytetrack_ids_restart_per_clip():
    tracker = ByteTracker()
    first = tracker.track(two_walkers(), BlankClip())
    second = tracker.track(two_walkers(), BlankClip())
    assert sorted(set(first.track_id)) == [1, 2]
    np.testing.assert_array_equal(first.track_id, second.track_id)


def test_bytetrack_keeps_unmatched_low_score_detections():
    dets = two_walkers(10)
    dets.score[:] = 0.05  # below every ByteTrack threshold
    out = ByteTracker().track(dets, BlankClip(10))
    assert len(out) == len(dets) and len(set(out.track_id)) == len(dets) and out.track_id.min() == 1
    dropped = ByteTracker(keep_unmatched=False).track(dets, BlankClip(10))
    assert len(dropped) == 0


def test_bytetrack_empty_and_gaps():
    assert len(ByteTracker().track(ObjectTable.empty(), BlankClip(5))) == 0
    dets = two_walkers(10).take(np.r_[0:8, 12:20])  # frames 4 and 5 have no detections
    out = ByteTracker().track(dets, BlankClip(10))
    assert set(out.track_id[0::2]) == {1}


def test_no_tracker_gives_each_row_its_own_id():
    dets = two_walkers(5)
    out = NoTracker().track(dets, BlankClip(5))
    np.testing.assert_array_equal(out.track_id, np.arange(1, 11))


def test_relabel_tracks_first_appearance_order():
    np.testing.assert_array_equal(relabel_tracks(np.array([7, 3, 7, 9, 3])), [1, 2, 1, 3, 2])


def test_tracker_configs_instantiate():
    from hydra.utils import instantiate

    from helpers import compose_group

    bt = instantiate(compose_group("tracker", "bytetrack"))
    assert isinstance(bt, ByteTracker) and bt.keep_unmatched and bt.args.track_buffer == 30
    assert isinstance(instantiate(compose_group("tracker", "none")), NoTracker)


def test_width_jumps_known_answers():
    from tao_lab.tracker.bytetrack import width_jumps

    dets = np.array([20, 39, 41, 11, 9], np.float64)
    got = width_jumps(np.array([20.0]), dets, 2.0)  # a walker 20 px wide
    assert got.shape == (1, 5)
    # the same width, wider by < 2 / > 2, narrower by < 2 / > 2
    np.testing.assert_array_equal(got[0], [False, False, True, False, True])
    two = width_jumps(np.array([20.0, 50.0]), dets[:3], 2.0)
    np.testing.assert_array_equal(two, [[False, False, True], [True, False, False]])


def walker_then_cart(n_walk=15, n_cart=15):
    """A walker 20 px wide moving right at 2 px/frame; where it is on frame n_walk a cart 60 px wide, 30 px tall
    (its bottom on the walker's feet) takes its place and moves on at the same pace; then a walker whose box is cut
    to its upper half for a few frames."""
    frame, xyxy = [], []
    for i in range(n_walk):
        frame.append(i)
        xyxy.append([40 + 2 * i, 40, 60 + 2 * i, 100])
    for i in range(n_walk, n_walk + n_cart):
        frame.append(i)
        xyxy.append([30 + 2 * i, 70, 90 + 2 * i, 100])
    return ObjectTable.build(np.array(frame), np.array(xyxy, np.float32), np.full(len(frame), 0.9))


def test_size_gate_keeps_a_cart_out_of_the_walkers_track_and_a_piece_in_it():
    dets = walker_then_cart()
    clip = BlankClip(30)
    plain = ByteTracker().track(dets, clip)
    gated = ByteTracker(max_size_change=1.5).track(dets, clip)
    walker, cart = slice(0, 15), slice(15, 30)
    # plain IoU hands the walker's identity on to the cart that took its place
    assert set(plain.track_id[walker]) == {1} and plain.track_id[15] == 1
    # the gate starts a new track for the cart and keeps it for the cart's frames
    assert set(gated.track_id[walker]) == {1}
    assert 1 not in set(gated.track_id[cart]) and len(set(gated.track_id[17:30])) == 1

    # a walker whose box is cut to its upper half for five frames keeps one track with the gate
    frame, xyxy = [], []
    for i in range(30):
        top, bottom = 40, (70 if 10 <= i < 15 else 100)
        frame.append(i)
        xyxy.append([40 + 2 * i, top, 60 + 2 * i, bottom])
    walker_cut = ObjectTable.build(np.array(frame), np.array(xyxy, np.float32), np.full(30, 0.9))
    assert set(ByteTracker(max_size_change=1.5).track(walker_cut, clip).track_id) == {1}


def test_size_gate_refuses_a_factor_not_above_one():
    import pytest

    with pytest.raises(ValueError, match="max_size_change"):
        ByteTracker(max_size_change=1.0)


def test_size_gate_online_matches_offline():
    dets = walker_then_cart()
    tracker = ByteTracker(max_size_change=1.5)
    offline = tracker.track(dets, BlankClip(30)).track_id
    stream = tracker.stream()
    online = np.concatenate([stream.update(dets.take(dets.frame == f)) for f in range(30)])
    np.testing.assert_array_equal(online, offline)


def test_buffered_iou_known_answers():
    from tao_lab.tracker.bytetrack import buffered_iou

    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[12.0, 0.0, 22.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    # plain: no overlap 2 px apart; half a box apart 50 / 150
    np.testing.assert_allclose(buffered_iou(a, b, 0.0), [[0.0, 50.0 / 150.0]])
    # buffer 0.3: both boxes 16 x 16, [-3, 13] and [9, 25] overlap 4 x 16 = 64 of 2 * 256 - 64
    got = buffered_iou(a, b, 0.3)
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got[0, 0], 64.0 / 448.0)
    # [-3, 13] and [2, 18]: 11 x 16 = 176 of 512 - 176
    np.testing.assert_allclose(got[0, 1], 176.0 / 336.0)
    # scale-free: the same layout 3x larger gives the same IoU
    np.testing.assert_allclose(buffered_iou(a * 3, b * 3, 0.3), got)


def fast_object(n=12, step=8.0, size=10.0):
    """One 10 x 10 box moving ``step`` px/frame to the right: more than half its width, so plain IoU with its last
    position (2 / 18 = 0.11 at 8 px) is below what ByteTrack needs to confirm a new track."""
    x = 5.0 + step * np.arange(n)
    xyxy = np.stack([x, np.full(n, 50.0), x + size, np.full(n, 50.0 + size)], axis=1).astype(np.float32)
    return ObjectTable.build(np.arange(n), xyxy, np.full(n, 0.9))


def test_buffer_keeps_a_fast_object_in_one_track_online_and_offline():
    import pytest

    dets, clip = fast_object(), BlankClip(12)
    plain = ByteTracker().track(dets, clip)
    assert len(set(plain.track_id)) > 6  # plain IoU: a new track nearly every frame
    buffered = ByteTracker(buffer=0.3).track(dets, clip)
    assert set(buffered.track_id) == {1}
    # two steady walkers side by side are still two tracks with the buffer
    walkers = ByteTracker(buffer=0.3).track(two_walkers(), BlankClip())
    assert set(walkers.track_id[0::2]) == {1} and set(walkers.track_id[1::2]) == {2}
    stream = ByteTracker(buffer=0.3).stream()
    online = np.concatenate([stream.update(dets.take(dets.frame == f)) for f in range(12)])
    np.testing.assert_array_equal(online, buffered.track_id)
    with pytest.raises(ValueError, match="buffer"):
        ByteTracker(buffer=-0.1)
