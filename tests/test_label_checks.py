"""Labels are checked, not guessed: UCSD .m files with gaps or orphan entries are refused naming the file and the
entry, and frame labels are cross-checked against non-empty masks during evaluation."""
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from tao_lab.dataset import DataError, load_ucsd, make_synthetic, parse_ucsd_m, write_ucsd_layout
from tao_lab.types import ClipGT, ObjectScores, ObjectTable, Segmentation


@pytest.fixture
def ucsd_copy(tmp_path):
    """A 3-test-clip UCSD layout (frames, masks, .m) written from the synthetic generator."""
    ds = make_synthetic(seed=0, num_train_clips=1, num_test_clips=3, num_frames=12, height=48, width=64)
    root = write_ucsd_layout(ds, str(tmp_path / "data"), "UCSDped2")
    return tmp_path / "data", os.path.join(root, "Test", "UCSDped2.m")


def _set_m(path, lines):
    with open(path, "w") as f:
        f.write("TestVideoFile = {};\n" + "\n".join(lines) + "\n")


def test_gap_in_m_entries_is_refused_naming_file_and_entry(ucsd_copy, tmp_path):
    data, m = ucsd_copy
    _set_m(m, ["TestVideoFile{1}.gt_frame = [3:5];", "TestVideoFile{3}.gt_frame = [2:9];"])
    with pytest.raises(DataError) as e:
        parse_ucsd_m(m)
    assert m in str(e.value) and "TestVideoFile{2}" in str(e.value)
    with pytest.raises(DataError, match=r"TestVideoFile\{2\}"):
        load_ucsd(str(data), "ped2")  # it was read as "Test002 all normal" before


def test_duplicate_m_entry_is_refused(tmp_path):
    p = tmp_path / "x.m"
    p.write_text("TestVideoFile{1}.gt_frame = [3:5];\nTestVideoFile{1}.gt_frame = [1:2];\n")
    with pytest.raises(DataError, match=r"TestVideoFile\{1\} is given twice"):
        parse_ucsd_m(str(p))


def test_m_entries_for_missing_clips_are_refused(ucsd_copy):
    data, m = ucsd_copy
    ranges = ["TestVideoFile{end+1}.gt_frame = [1:4];"] * 3
    _set_m(m, ranges + ["TestVideoFile{end+1}.gt_frame = [2:6];"])  # a 4th entry, only 3 clips
    with pytest.raises(DataError) as e:
        load_ucsd(str(data), "ped2")
    assert m in str(e.value) and "TestVideoFile{4} (Test004)" in str(e.value)
    _set_m(m, ranges)
    test_dir = os.path.dirname(m)
    shutil.rmtree(os.path.join(test_dir, "Test002"))  # folder gap: entry 2 now labels nothing
    shutil.rmtree(os.path.join(test_dir, "Test002_gt"))
    with pytest.raises(DataError, match=r"TestVideoFile\{2\} \(Test002\)"):
        load_ucsd(str(data), "ped2")


# --- labels vs masks in evaluation ---------------------------------------------------------------------------

class _StubPipe:
    """Just what evaluate_clips needs: empty scores/segmentations, so only the ground truth is exercised."""

    cache_dir = None
    show_progress = False
    threshold = SimpleNamespace(tau=1.0)

    def __init__(self):
        self.timings = {"metrics_pixel": 0.0}

    def prefetch(self, clips, split):
        pass

    def scores(self, clip, segment_next=False):
        return ObjectScores(ObjectTable.empty(), np.linspace(0, 1, clip.num_frames).astype(np.float32))

    def segmentation(self, clip, scores):
        return Segmentation(np.zeros((clip.num_frames, clip.height, clip.width), np.float16), ObjectTable.empty())


def _eval_cfg(**metrics):
    return OmegaConf.create({"metrics": {"pixel_standard": True, "pixel_tao": False, "object": False, **metrics}})


def test_labels_disagreeing_with_masks_are_refused_or_warned(caplog):
    from tao_lab.evaluation import evaluate_clips

    clip = make_synthetic(seed=0, num_train_clips=1, num_test_clips=1, num_frames=30, height=48, width=64).test[0]
    labels = np.asarray(clip.gt.frame_labels, bool).copy()
    assert labels.any() and not labels.all()
    assert evaluate_clips(_StubPipe(), [clip], _eval_cfg()).metrics["test/pixel_num_clips"] == 1  # agree: fine
    first = int(np.flatnonzero(labels)[0])
    labels[first] = False  # labelled normal, mask not empty
    clip.gt = ClipGT(labels, clip.gt.mask, clip.gt.tracks)
    with pytest.raises(DataError) as e:
        evaluate_clips(_StubPipe(), [clip], _eval_cfg())
    msg = str(e.value)
    assert clip.clip_id in msg and "disagree on 1 of 30 frames" in msg and f"{first} (labelled normal" in msg
    assert "label_mask_mismatch=warn" in msg
    with caplog.at_level("WARNING", logger="tao_lab.dataset.label_check"):
        res = evaluate_clips(_StubPipe(), [clip], _eval_cfg(label_mask_mismatch="warn"))
    assert "test/pixel_auroc" in res.metrics and "test/frame_auc_micro" in res.metrics
    assert any("disagree on 1 of 30" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="label_mask_mismatch"):
        evaluate_clips(_StubPipe(), [clip], _eval_cfg(label_mask_mismatch="ignore"))


# --- Avenue and ShanghaiTech label files -------------------------------------------------------------------------

def test_avenue_malformed_mask_entries_are_refused(tmp_path):
    from helpers import SMALL_H as H, SMALL_W as W, box_masks, write_avi, write_label_mat

    from tao_lab.dataset import load_avenue

    root = str(tmp_path)
    write_avi(os.path.join(root, "testing_videos", "01.avi"), 6)
    mat = os.path.join(root, "testing_label_mask", "1_label.mat")
    masks = list(box_masks(6))
    masks[4] = np.zeros((H, W, 3), np.uint8)  # an RGB image where a mask should be
    write_label_mat(mat, masks)
    with pytest.raises(DataError) as e:
        load_avenue(root, splits=("test",))
    assert mat in str(e.value) and "volLabel{5} (frame 4" in str(e.value) and "(H, W) mask" in str(e.value)
    masks[4] = np.zeros((H, W - 2), np.uint8)  # one mask of another size
    write_label_mat(mat, masks)
    with pytest.raises(DataError) as e:
        load_avenue(root, splits=("test",))
    assert f"volLabel{{5}} (frame 4, 0-based) has shape ({H}, {W - 2}) but volLabel{{1}} has ({H}, {W})" in str(e.value)
    write_label_mat(mat, box_masks(6))
    write_label_mat(os.path.join(root, "testing_label_mask", "7_label.mat"), box_masks(3))  # no video 07: harmless
    ds = load_avenue(root, splits=("test",))
    assert [c.clip_id for c in ds.test] == ["Test01"] and ds.test[0].gt.frame_labels.sum() == 3


def test_shanghaitech_frame_labels_must_be_0_1_per_frame(tmp_path, caplog):
    from helpers import box_masks, write_shanghaitech

    from tao_lab.dataset import load_shanghaitech

    root = str(tmp_path)
    write_shanghaitech(root)
    lab = os.path.join(root, "testing", "test_frame_mask", "01_0014.npy")
    np.save(lab, np.array([0, 0, 2, 1, 1, 0, 0, 0, 0, 0]))  # was read as "anomalous" by != 0
    with pytest.raises(DataError) as e:
        load_shanghaitech(root, splits=("test",))
    assert lab in str(e.value) and "other than 0 and 1 (2; first at frame 2" in str(e.value)
    np.save(lab, box_masks(10, on=range(2, 5)))  # a pixel mask in the frame-label folder was flattened before
    with pytest.raises(DataError, match="shape \\(10, 48, 64\\).*looks like a pixel mask"):
        load_shanghaitech(root, splits=("test",))
    np.save(lab, np.array([[0, 0, 1, 1, 1, 0, 0, 0, 0, 0]]))  # (1, T) as MATLAB exports write it: fine
    assert np.flatnonzero(load_shanghaitech(root, splits=("test",)).test[0].gt.frame_labels).tolist() == [2, 3, 4]
    np.save(os.path.join(root, "testing", "test_frame_mask", "03_0031.npy"), np.zeros(5, np.int64))
    with caplog.at_level("WARNING", logger="tao_lab.dataset.shanghaitech"):
        assert len(load_shanghaitech(root, splits=("test",)).test) == 2
    assert any("03_0031" in r.getMessage() and "not in" in r.getMessage() for r in caplog.records)
