"""Video-file clips, Avenue, ShanghaiTech and single-input readers, on tiny files written in the real formats."""
from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest

from helpers import SMALL_H as H
from helpers import SMALL_W as W
from helpers import box_masks, write_avi, write_frames, write_label_mat, write_shanghaitech
from tao_lab.dataset import DataError, VideoFileClip, load_avenue, load_frames_or_video, load_shanghaitech



def _index_of(img):
    return int(round((float(np.median(img)) - 20) / 7))


class _CountingCapture:
    def __init__(self, cap):
        self.cap, self.sets = cap, 0

    def set(self, *a):
        self.sets += 1
        return self.cap.set(*a)

    def __getattr__(self, name):
        return getattr(self.cap, name)


# --- video clip ------------------------------------------------------------------------------------------------

def test_video_clip_streams_sequentially_and_seeks(tmp_path):
    p = str(tmp_path / "v.avi")
    write_avi(p, 30)
    c = VideoFileClip(p)
    assert (c.clip_id, c.num_frames, c.height, c.width, c.fps) == ("v", 30, H, W, 25.0)
    assert c.source.startswith("video:") and p in c.source and f"bytes={os.path.getsize(p)}" in c.source
    c._open()
    c._cap = _CountingCapture(c._cap)
    seq = list(c.frames())
    assert c._cap.sets == 0  # one sequential decode, no per-frame seek
    assert len(seq) == 30 and all(f.dtype == np.uint8 and f.shape == (H, W, 3) for f in seq)
    assert [_index_of(f) for f in seq] == list(range(30))
    for i in (5, 6, 29, 2, 17):  # random access: forward grab or seek, same decoded bytes
        assert np.array_equal(c.frame(i), seq[i])
    c2 = pickle.loads(pickle.dumps(c))
    assert np.array_equal(c2.frame(12), seq[12])
    assert VideoFileClip(p, "x", max_frames=7).num_frames == 7
    assert len(list(VideoFileClip(p, max_frames=7).frames())) == 7
    c.close()


def test_video_clip_mp4(tmp_path):
    p = str(tmp_path / "v.mp4")
    write_avi(p, 12, fourcc="mp4v")
    c = VideoFileClip(p)
    assert c.num_frames == 12
    assert [_index_of(f) for f in c.frames()] == list(range(12))


def test_video_frame_count_is_verified_not_taken_from_header(tmp_path):
    p = str(tmp_path / "full.avi")
    write_avi(p, 30)
    data = open(p, "rb").read()
    t = str(tmp_path / "cut.avi")
    with open(t, "wb") as f:
        f.write(data[:len(data) * 2 // 3])  # header still says 30 frames
    cap = cv2.VideoCapture(t)
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    decodable = 0
    while cap.grab():
        decodable += 1
    cap.release()
    assert decodable < 30
    c = VideoFileClip(t)
    assert c.num_frames == decodable
    assert len(list(c.frames())) == decodable
    with pytest.raises(DataError) as e:
        VideoFileClip(t, expected_frames=header)
    assert "cut.avi" in str(e.value) and f"{decodable} decodable" in str(e.value) and str(header) in str(e.value)


def test_video_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        VideoFileClip(str(tmp_path / "none.avi"))
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="bad.avi"):
        VideoFileClip(str(bad))


# --- Avenue ----------------------------------------------------------------------------------------------------

def _avenue(root, variant="videos"):
    n_train, n_test = (10, 12), (9, 11)
    for k, n in enumerate(n_train, 1):
        if variant == "videos":
            write_avi(os.path.join(root, "training_videos", f"{k:02d}.avi"), n)
        else:
            write_frames(os.path.join(root, "training", "frames", f"{k:02d}"), n)
    for k, n in enumerate(n_test, 1):
        if variant == "videos":
            write_avi(os.path.join(root, "testing_videos", f"{k:02d}.avi"), n)
        else:
            write_frames(os.path.join(root, "testing", "frames", f"{k:02d}"), n)
        write_label_mat(os.path.join(root, "testing_label_mask", f"{k}_label.mat"), box_masks(n, on=range(k, k + 4)))


@pytest.mark.parametrize("variant", ["videos", "frames"])
def test_avenue_layouts(tmp_path, variant):
    _avenue(str(tmp_path), variant)
    ds = load_avenue(str(tmp_path))
    assert ds.name == "avenue"
    assert [c.clip_id for c in ds.train] == ["Train01", "Train02"]
    assert [c.clip_id for c in ds.test] == ["Test01", "Test02"]
    assert [c.num_frames for c in ds.train + ds.test] == [10, 12, 9, 11]
    for k, c in enumerate(ds.test, 1):
        want = np.zeros(c.num_frames, bool)
        want[k:k + 4] = True
        np.testing.assert_array_equal(c.gt.frame_labels, want)
        m = c.gt.mask(k)
        assert m.dtype == bool and m.shape == (H, W) and m.sum() == 100 and m[5:15, 2 + k:12 + k].all()
        assert not c.gt.mask(0).any()
        assert [_index_of(f) for f in c.frames()] == list(range(c.num_frames))
    small = load_avenue(str(tmp_path), max_clips=1, max_frames=5)
    assert [c.num_frames for c in small.train + small.test] == [5, 5]
    assert len(small.test[0].gt.frame_labels) == 5 and small.test[0].gt.frame_labels.sum() == 4


def test_avenue_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DataError) as e:
        load_avenue(os.path.join(root, "missing"))
    assert "paths.data_dir" in str(e.value) and "missing" in str(e.value)
    _avenue(root)
    write_label_mat(os.path.join(root, "testing_label_mask", "2_label.mat"), box_masks(10))  # video has 11
    with pytest.raises(DataError) as e:
        load_avenue(root)
    assert "02.avi" in str(e.value) and "11" in str(e.value) and "10" in str(e.value)
    write_label_mat(os.path.join(root, "testing_label_mask", "2_label.mat"), box_masks(11, h=20))  # wrong size
    with pytest.raises(DataError, match="2_label.mat"):
        load_avenue(root)
    os.remove(os.path.join(root, "testing_label_mask", "2_label.mat"))
    with pytest.raises(DataError, match="2_label.mat"):
        load_avenue(root)
    assert len(load_avenue(root, splits=("train",)).train) == 2  # GT only needed for the test split


# --- ShanghaiTech ----------------------------------------------------------------------------------------------


def test_shanghaitech_layout(tmp_path):
    root = str(tmp_path)
    write_shanghaitech(root)
    ds = load_shanghaitech(root)
    assert ds.name == "shanghaitech"
    assert [c.clip_id for c in ds.train] == ["01_001", "02_001"]
    assert [c.clip_id for c in ds.test] == ["01_0014", "02_0128"]
    assert [c.num_frames for c in ds.train + ds.test] == [8, 9, 10, 7]
    assert isinstance(ds.train[0], VideoFileClip)
    for c in ds.test:
        np.testing.assert_array_equal(np.flatnonzero(c.gt.frame_labels), [2, 3, 4])
        assert np.array_equal([m.any() for m in c.gt.masks()], c.gt.frame_labels)
        assert c.gt.mask(3).sum() == 100
        assert [_index_of(f) for f in c.frames()] == list(range(c.num_frames))
    ds = load_shanghaitech(root, clip_ids=["02_0128"], max_frames=3, splits=("test",))
    assert ds.train == [] and [c.clip_id for c in ds.test] == ["02_0128"]
    assert ds.test[0].num_frames == 3 and list(ds.test[0].gt.frame_labels) == [False, False, True]


def test_shanghaitech_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DataError, match="paths.data_dir"):
        load_shanghaitech(os.path.join(root, "missing"))
    write_shanghaitech(root)
    lab = os.path.join(root, "testing", "test_frame_mask", "02_0128.npy")
    np.save(lab, np.zeros(6, np.int64))
    with pytest.raises(DataError) as e:
        load_shanghaitech(root)
    assert "02_0128" in str(e.value) and "7" in str(e.value) and "6" in str(e.value)
    np.save(lab, np.zeros(7, np.int64))
    np.save(os.path.join(root, "testing", "test_pixel_mask", "02_0128.npy"), np.zeros((7, 10, 10), np.uint8))
    with pytest.raises(DataError, match="02_0128.npy"):
        load_shanghaitech(root)
    os.remove(lab)
    with pytest.raises(DataError, match="test_frame_mask"):
        load_shanghaitech(root)
    with pytest.raises(DataError, match="unknown clip ids"):
        load_shanghaitech(root, clip_ids=["99_9999"], splits=("train",))


# --- single input ----------------------------------------------------------------------------------------------

def test_load_frames_or_video(tmp_path):
    v = str(tmp_path / "cam.avi")
    write_avi(v, 6)
    ds = load_frames_or_video(v)
    assert ds.train == [] and len(ds.test) == 1
    c = ds.test[0]
    assert c.clip_id == "cam" and c.num_frames == 6 and c.gt is None
    write_frames(str(tmp_path / "frames"), 5, name="img_{}.png", start=1)
    ds = load_frames_or_video(str(tmp_path / "frames"), max_frames=4)
    assert ds.test[0].clip_id == "frames" and ds.test[0].num_frames == 4 and ds.test[0].gt is None
    assert [_index_of(f) for f in ds.test[0].frames()] == [0, 1, 2, 3]
    ds = load_frames_or_video(str(tmp_path))  # a folder of videos and frame folders
    assert [c.clip_id for c in ds.test] == ["cam", "frames"]
    with pytest.raises(DataError, match="not found"):
        load_frames_or_video(str(tmp_path / "nothing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt"):
        load_frames_or_video(str(tmp_path / "notes.txt"))


def test_a_video_dataset_evaluates_on_worker_processes(tmp_path):
    """The path a held-out camera takes: a dataset of MPEG-4 videos (decoded on FFmpeg's threads) with a training
    split, evaluated on two forked worker processes after the parent has read the clips (frame counts, object scale,
    camera background). Before VideoFileClip opened a capture of its own in each worker, this hung at the first
    parallel pass. In a subprocess with a timeout, so a hang fails the test instead of blocking the run."""
    import json
    import signal
    import subprocess
    import sys

    from helpers import QUICK_SEGMENTER, ROOT, MovingSquareClip

    root = tmp_path / "avenue"
    squares = ((10, 40, 3, 0, 16, 230), (100, 20, -2, 1, 14, 200))
    for split, folder, n in (("train", "training_videos", 2), ("test", "testing_videos", 2)):
        for k in range(1, n + 1):
            path = root / folder / f"{k:02d}.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            clip = MovingSquareClip(num_frames=40, squares=squares, seed=k + (10 if split == "test" else 0))
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (clip.width, clip.height))
            for frame in clip.frames():
                writer.write(frame)
            writer.release()
            if split == "test":
                write_label_mat(str(root / "testing_label_mask" / f"{k}_label.mat"),
                                box_masks(40, on=range(5, 15), h=clip.height, w=clip.width))
    cmd = [sys.executable, str(ROOT / "eval.py"), "dataset=avenue", f"paths.data_dir={root}", "workers=2",
           "worker_kind=process", "validation=none", "progress=false", f"paths.output_dir={tmp_path / 'run'}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}", *QUICK_SEGMENTER]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the evaluation of a video dataset on two worker processes did not finish in 240 s (a hang)")
    assert proc.returncode == 0, err[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test/num_clips"] == 2 and metrics["test/frames"] == 80
