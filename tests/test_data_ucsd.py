"""UCSD reader: the real Ped2 copy, tiny layouts written in the original formats, and every error."""
from __future__ import annotations

import os
import pickle
import shutil

import cv2
import numpy as np
import pytest

from helpers import PED2_DIR
from tao_lab.dataset import DataError, FrameFolderClip, load_ucsd, parse_ucsd_m
from tao_lab.dataset.clips import list_images, natural_key

PED2 = str(PED2_DIR)
needs_ped2 = pytest.mark.skipif(not os.path.isdir(os.path.join(PED2, "UCSDped2")), reason="real Ped2 copy absent")

# (first, last) 1-based inclusive anomalous ranges and frame counts of the 12 Ped2 test clips (UCSDped2.m)
PED2_RANGES = [(61, 180), (95, 180), (1, 146), (31, 180), (1, 129), (1, 159), (46, 180), (1, 180), (1, 120),
               (1, 150), (1, 180), (88, 180)]
PED2_TEST_FRAMES = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]


# --- real Ped2 -------------------------------------------------------------------------------------------------

@needs_ped2
def test_real_ped2_counts_and_labels():
    ds = load_ucsd(PED2, "ped2")
    assert ds.name == "ucsd_ped2"
    assert len(ds.train) == 16 and len(ds.test) == 12
    assert sum(c.num_frames for c in ds.train) == 2550
    assert sum(c.num_frames for c in ds.test) == 2010
    assert sum(int(c.gt.frame_labels.sum()) for c in ds.test) == 1648
    assert [c.clip_id for c in ds.test] == [f"Test{k:03d}" for k in range(1, 13)]
    assert [c.clip_id for c in ds.train] == [f"Train{k:03d}" for k in range(1, 17)]
    assert [c.num_frames for c in ds.test] == PED2_TEST_FRAMES
    for c, (a, b) in zip(ds.test, PED2_RANGES):
        want = np.zeros(c.num_frames, bool)
        want[a - 1:b] = True
        np.testing.assert_array_equal(c.gt.frame_labels, want)
        assert c.gt.mask is not None and c.gt.tracks is None
    assert all(c.gt is None for c in ds.train)
    assert {(c.height, c.width) for c in ds.train + ds.test} == {(240, 360)}


@needs_ped2
def test_real_ped2_frames_masks_and_sources():
    ds = load_ucsd(os.path.join(PED2, "UCSDped2"), "ped2", max_clips=1, clip_ids=["Test001", "Train001"])
    assert [c.clip_id for c in ds.train] == ["Train001"] and [c.clip_id for c in ds.test] == ["Test001"]
    c = ds.test[0]
    f = c.frame(0)
    assert f.dtype == np.uint8 and f.shape == (240, 360, 3)
    assert np.array_equal(f[..., 0], f[..., 1]) and np.array_equal(f[..., 1], f[..., 2])  # grey JPEGs
    ref = cv2.imread(os.path.join(PED2, "UCSDped2", "Test", "Test001", "001.jpg"), cv2.IMREAD_COLOR)
    assert np.array_equal(f, ref)
    m = c.gt.mask(100)
    assert m.dtype == bool and m.shape == (240, 360)
    assert m.any() == c.gt.frame_labels[100] and not c.gt.mask(0).any()
    # masks agree with the .m labels on every frame of this clip
    assert np.array_equal(np.array([mm.any() for mm in c.gt.masks()]), c.gt.frame_labels)
    assert c.source.startswith("folder:") and "Test001" in c.source and "n=180" in c.source
    assert c.fps == 10.0
    # both roots give the same dataset
    ds2 = load_ucsd(PED2, "ped2", max_clips=1, clip_ids=["Test001", "Train001"])
    assert ds2.test[0].source == c.source


@needs_ped2
def test_real_ped2_max_frames_cuts_labels_and_masks():
    ds = load_ucsd(PED2, "ped2", max_clips=2, max_frames=70)
    assert [c.num_frames for c in ds.train + ds.test] == [70] * 4
    c = ds.test[0]
    assert len(c.gt.frame_labels) == 70 and c.gt.frame_labels.sum() == 10  # Test001 anomalous from frame 61
    assert len(list(c.gt.masks())) == 70
    assert len(list(c.frames())) == 70
    with pytest.raises(IndexError):
        c.frame(70)


@needs_ped2
def test_real_ped2_all_masks_agree_with_labels():
    ds = load_ucsd(PED2, "ped2", splits=("test",))
    for c in ds.test:
        assert np.array_equal(np.array([m.any() for m in c.gt.masks()]), c.gt.frame_labels), c.clip_id


# --- tiny layouts in the original formats -------------------------------------------------------------------

def _write_clip(folder, n, h=24, w=32, ext=".tif", name="{:03d}", value=None, grey=True):
    os.makedirs(folder, exist_ok=True)
    frames = []
    rng = np.random.default_rng(len(folder) + n)
    for i in range(n):
        img = rng.integers(0, 256, (h, w), dtype=np.uint8) if value is None else np.full((h, w), value, np.uint8)
        if not grey:
            img = np.stack([img, 255 - img, img // 2], -1)
        cv2.imwrite(os.path.join(folder, name.format(i + 1) + ext), img)
        frames.append(img)
    return frames


def _ped1_layout(root, m_text=None):
    """UCSDped1-like: tif frames, 3 test clips; Test001_gt with 'frameNNN.bmp' masks, Test002 without gt."""
    base = os.path.join(root, "UCSD_Anomaly_Dataset.v1p2", "UCSDped1")
    _write_clip(os.path.join(base, "Train", "Train001"), 5)
    _write_clip(os.path.join(base, "Train", "Train002"), 6)
    with open(os.path.join(base, "Train", "Train001", "Thumbs.db"), "w") as f:
        f.write("junk")  # non-image files are ignored
    _write_clip(os.path.join(base, "Test", "Test001"), 12)
    _write_clip(os.path.join(base, "Test", "Test002"), 10)
    _write_clip(os.path.join(base, "Test", "Test003"), 8)
    gt = os.path.join(base, "Test", "Test001_gt")
    os.makedirs(gt)
    for i in range(12):
        m = np.zeros((24, 32), np.uint8)
        if 2 <= i <= 4 or 9 <= i <= 10:
            m[3 + i:8 + i, 5:9] = 255
        cv2.imwrite(os.path.join(gt, f"frame{i + 1:03d}.bmp"), m)
    if m_text is None:
        m_text = ("TestVideoFile = {};\n% a comment [1:2]\n"
                  "TestVideoFile{end+1}.gt_frame = [3:5, 10:11];\n"
                  "TestVideoFile{end+1}.gt_frame = [1:4];\n"
                  "TestVideoFile{end+1}.gt_frame = [];\n")
    with open(os.path.join(base, "Test", "UCSDped1.m"), "w") as f:
        f.write(m_text)
    return base


def test_ped1_layout_multi_ranges_and_missing_gt_folders(tmp_path):
    base = _ped1_layout(str(tmp_path))
    for d in (str(tmp_path), os.path.join(str(tmp_path), "UCSD_Anomaly_Dataset.v1p2"), base):
        ds = load_ucsd(d, "ped1")
        assert ds.name == "ucsd_ped1"
        assert [c.num_frames for c in ds.train] == [5, 6]
        assert [c.num_frames for c in ds.test] == [12, 10, 8]
    t1, t2, t3 = ds.test
    np.testing.assert_array_equal(np.flatnonzero(t1.gt.frame_labels), [2, 3, 4, 9, 10])
    np.testing.assert_array_equal(np.flatnonzero(t2.gt.frame_labels), [0, 1, 2, 3])
    assert not t3.gt.frame_labels.any()
    assert t2.gt.mask is None and t3.gt.mask is None  # labels still from the .m file
    assert np.array_equal([m.any() for m in t1.gt.masks()], t1.gt.frame_labels)
    m = t1.gt.mask(3)
    assert m.sum() == 20 and m[6:11, 5:9].all()
    # grey tif expanded to 3 identical channels, exact values
    ref = cv2.imread(os.path.join(base, "Test", "Test002", "007.tif"), cv2.IMREAD_GRAYSCALE)
    f = t2.frame(6)
    assert f.shape == (24, 32, 3) and all(np.array_equal(f[..., k], ref) for k in range(3))
    # clips pickle (for worker processes) and keep reading the same frames
    t1b = pickle.loads(pickle.dumps(t1))
    assert np.array_equal(t1b.frame(5), t1.frame(5)) and np.array_equal(t1b.gt.mask(3), m)


def test_parse_ucsd_m_forms(tmp_path):
    p = tmp_path / "x.m"
    p.write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [61:180];\n"
                 "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\nTestVideoFile{3}.gt_frame = [];\n"
                 "TestVideoFile{4}.gt_frame = [7 9:1:10];\n"
                 "TestVideoFile{end+1}.gt_frame = [1:2:5]; % odd frames\n")
    assert parse_ucsd_m(str(p)) == [[(61, 180)], [(5, 90), (140, 200)], [], [(7, 7), (9, 10)],
                                    [(1, 1), (3, 3), (5, 5)]]


def test_natural_sort_and_frame_folder_clip(tmp_path):
    d = tmp_path / "clip"
    d.mkdir()
    for i, v in ((1, 10), (2, 20), (10, 100), (9, 90)):
        cv2.imwrite(str(d / f"img{i}.png"), np.full((6, 8, 3), v, np.uint8))
    cv2.imwrite(str(d / "img3.JPG"), np.full((6, 8), 30, np.uint8))
    (d / ".hidden.png").write_bytes(b"")
    assert [os.path.basename(p) for p in list_images(str(d))] == ["img1.png", "img2.png", "img3.JPG", "img9.png",
                                                                  "img10.png"]
    c = FrameFolderClip(str(d))
    assert c.clip_id == "clip" and c.num_frames == 5 and (c.height, c.width) == (6, 8)
    assert [int(f[0, 0, 0]) for f in c.frames()] == [10, 20, 30, 90, 100]
    assert sorted(["a10", "a9", "b1", "a10b2", "a10b10"], key=natural_key) == ["a9", "a10", "a10b2", "a10b10", "b1"]
    assert FrameFolderClip(str(d), max_frames=2).num_frames == 2


# --- errors ----------------------------------------------------------------------------------------------------

def test_missing_dataset_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as e:
        load_ucsd(str(tmp_path / "nope"), "ped2")
    assert str(tmp_path / "nope") in str(e.value) and "paths.data_dir" in str(e.value)
    assert "UCSD_Anomaly_Dataset.tar.gz" in str(e.value)
    with pytest.raises(DataError, match="UCSDped2"):
        load_ucsd(str(tmp_path), "ped2")  # exists but holds no dataset
    with pytest.raises(ValueError):
        load_ucsd(str(tmp_path), "ped3")


def test_mask_count_mismatch_names_both_numbers(tmp_path):
    base = _ped1_layout(str(tmp_path))
    os.remove(os.path.join(base, "Test", "Test001_gt", "frame012.bmp"))
    with pytest.raises(DataError) as e:
        load_ucsd(str(tmp_path), "ped1")
    msg = str(e.value)
    assert "Test001_gt" in msg and "11 masks" in msg and "12 frames" in msg
    # the train split alone still loads
    assert len(load_ucsd(str(tmp_path), "ped1", splits=("train",)).train) == 2


def test_m_range_beyond_clip_names_both_numbers(tmp_path):
    _ped1_layout(str(tmp_path), "TestVideoFile{end+1}.gt_frame = [3:15];\nTestVideoFile{end+1}.gt_frame = [1:4];\n"
                                "TestVideoFile{end+1}.gt_frame = [];\n")
    with pytest.raises(DataError) as e:
        load_ucsd(str(tmp_path), "ped1")
    assert "[3:15]" in str(e.value) and "12 frames" in str(e.value) and "UCSDped1.m" in str(e.value)


def test_m_file_with_too_few_clips_and_missing_m(tmp_path):
    base = _ped1_layout(str(tmp_path), "TestVideoFile{end+1}.gt_frame = [3:5];\n")
    with pytest.raises(DataError, match="1 test clips but .* has 3"):
        load_ucsd(str(tmp_path), "ped1")
    os.remove(os.path.join(base, "Test", "UCSDped1.m"))
    with pytest.raises(DataError, match="UCSDped1.m"):
        load_ucsd(str(tmp_path), "ped1")


def test_unreadable_frame_and_size_change(tmp_path):
    base = _ped1_layout(str(tmp_path))
    bad = os.path.join(base, "Train", "Train002", "003.tif")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    ds = load_ucsd(str(tmp_path), "ped1", clip_ids=["Train002"])
    with pytest.raises(DataError, match="003.tif"):
        list(ds.train[0].frames())
    cv2.imwrite(bad, np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="003.tif.*10x10"):
        ds.train[0].frame(2)


def test_unknown_clip_id_and_empty_folder(tmp_path):
    base = _ped1_layout(str(tmp_path))
    with pytest.raises(DataError, match="Test099"):
        load_ucsd(str(tmp_path), "ped1", clip_ids=["Test099"])
    shutil.rmtree(os.path.join(base, "Train", "Train002"))
    os.makedirs(os.path.join(base, "Train", "Train002"))
    with pytest.raises(DataError, match="Train002"):
        load_ucsd(str(tmp_path), "ped1")
    with pytest.raises(ValueError):
        load_ucsd(str(tmp_path), "ped1", max_frames=0)


@needs_ped2
def test_subset_mismatch_and_dataset_parent_dir():
    with pytest.raises(DataError, match="UCSDped2.*ped1"):
        load_ucsd(os.path.join(PED2, "UCSDped2"), "ped1")
    ds = load_ucsd(os.path.dirname(os.path.abspath(PED2)), "ped2", max_clips=1, max_frames=2)  # datasets/ parent
    assert ds.test[0].clip_id == "Test001"
