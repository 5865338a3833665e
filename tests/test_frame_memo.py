"""The frame memo (tao_lab/frame_memo.py): a clip's stages decode each frame once, get their own copies, within a
byte bound."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from tao_lab.frame_memo import FRAMES, FrameMemo
from tao_lab.types import SubClip
from helpers import MovingSquareClip, write_avi


class CountingClip(MovingSquareClip):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.reads: list[int] = []

    def _read(self, i):
        self.reads.append(i)
        return super()._read(i)


def fresh(i):
    """Frame i of the reference clip, decoded without any memo."""
    return MovingSquareClip(num_frames=8, seed=3)._read(i)


@pytest.fixture
def memo():
    """The process's memo, emptied, with its bound given back afterwards."""
    bound = FRAMES.max_bytes
    FRAMES.clear()
    yield FRAMES
    FRAMES.clear()
    FRAMES.set_max_bytes(bound)


def test_the_stages_of_a_clip_decode_each_frame_once(memo):
    clip = CountingClip(num_frames=8, seed=3)
    first = list(clip.frames())                       # e.g. the detector's pass
    samples = [clip.frame(i) for i in (0, 3, 7)]      # a background's samples
    second = list(clip.frames(2, 6))                  # e.g. the segmenter's frames
    assert sorted(clip.reads) == list(range(8))
    for i, f in enumerate(first):
        np.testing.assert_array_equal(f, fresh(i))
    for i, f in zip((0, 3, 7), samples):
        np.testing.assert_array_equal(f, fresh(i))
    for i, f in zip(range(2, 6), second):
        np.testing.assert_array_equal(f, fresh(i))
    assert memo.hits == 3 + 4 and len(memo) == 8


def test_every_reader_gets_its_own_copy(memo):
    clip = CountingClip(num_frames=3, seed=3)
    a = clip.frame(1)
    a[:] = 0                                          # a reader drawing on its frame
    b = clip.frame(1)
    np.testing.assert_array_equal(b, fresh(1))
    b[:] = 1
    np.testing.assert_array_equal(list(clip.frames())[1], fresh(1))
    assert clip.reads == [1, 0, 2]


def test_a_pass_over_frames_mixes_kept_and_decoded_frames_in_order(memo):
    clip = CountingClip(num_frames=8, seed=3)
    clip.frame(2), clip.frame(5)
    got = list(clip.frames(1, 7))
    assert clip.reads == [2, 5, 1, 3, 4, 6]           # only the frames not kept are decoded, once each
    for i, f in zip(range(1, 7), got):
        np.testing.assert_array_equal(f, fresh(i))


def test_the_bound_keeps_the_first_frames_of_a_long_clip_and_drops_older_clips_first():
    frame_bytes = fresh(0).nbytes
    memo = FrameMemo(max_bytes=3 * frame_bytes)
    old, new = CountingClip(num_frames=5, seed=3), CountingClip(num_frames=5, seed=4)
    for i in range(2):
        memo.put(old, i, old._read(i))
    for i in range(5):
        memo.put(new, i, new._read(i))
    assert memo.nbytes <= memo.max_bytes
    assert memo.get(old, 0) is None and memo.get(old, 1) is None          # the older clip went first
    assert [memo.get(new, i) is not None for i in range(5)] == [True, True, True, False, False]
    np.testing.assert_array_equal(memo.get(new, 2), new._read(2))


def test_a_bound_of_zero_keeps_nothing(memo):
    memo.set_max_bytes(0)
    clip = CountingClip(num_frames=4, seed=3)
    list(clip.frames()), list(clip.frames())
    assert clip.reads == [0, 1, 2, 3] * 2 and len(memo) == 0


def test_the_frames_of_a_clip_that_died_are_freed(memo):
    clip = CountingClip(num_frames=4, seed=3)
    list(clip.frames())
    assert memo.nbytes == 4 * fresh(0).nbytes
    del clip
    gc.collect()
    other = CountingClip(num_frames=1, seed=4)
    other.frame(0)                                    # the next call frees what the dead clip held
    assert memo.nbytes == fresh(0).nbytes and len(memo) == 1


def test_a_sub_clip_reads_through_its_parents_frames(memo):
    parent = CountingClip(num_frames=8, seed=3)
    list(parent.frames())
    sub = SubClip(parent, 2, 6)
    got = list(sub.frames()) + [sub.frame(1)]
    assert parent.reads == list(range(8)) and len(memo) == 8              # nothing decoded or kept twice
    for i, f in zip([2, 3, 4, 5, 3], got):
        np.testing.assert_array_equal(f, fresh(i))


def test_a_video_read_in_pieces_gives_the_frames_of_one_sequential_decode(tmp_path, memo):
    from tao_lab.dataset.clips import VideoFileClip

    path = str(tmp_path / "v.avi")
    write_avi(path, 30)
    memo.set_max_bytes(0)
    plain = list(VideoFileClip(path).frames())
    memo.set_max_bytes(1 << 30)
    clip = VideoFileClip(path)
    samples = {i: clip.frame(i) for i in (0, 7, 8, 20, 29)}               # seeks, as a background's samples
    again = list(clip.frames())                                           # the decoder restarts after kept frames
    assert len(again) == 30
    for i, f in enumerate(again):
        np.testing.assert_array_equal(f, plain[i])
    for i, f in samples.items():
        np.testing.assert_array_equal(f, plain[i])
