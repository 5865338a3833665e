"""GT tracks from masks and the standard tracks / detections txt formats."""

import numpy as np
import pytest

from helpers import PED2_DIR
from tao_lab.metrics import (read_detections_txt, read_tracks_txt, tracks_from_masks, write_detections_txt,
                             write_tracks_txt)
from tao_lab.types import ObjectTable

PED2_GT = PED2_DIR / "UCSDped2" / "Test" / "Test001_gt"


def moving_masks(n=12, h=40, w=60):
    """Two rectangles moving right; one speck of 3 pixels; a 2-frame annotation gap for the second object."""
    out = []
    for t in range(n):
        m = np.zeros((h, w), bool)
        m[5:15, 2 + t:12 + t] = True                 # object A, 10x10
        if not 6 <= t <= 7:
            m[25:33, 40 - t:46 - t] = True           # object B, 8x6, missing in frames 6-7
        m[38, 0:3] = True                            # speck (3 px)
        out.append(m)
    return out


def test_tracks_from_masks_boxes_ids_specks_and_gaps():
    masks = moving_masks()
    tr = tracks_from_masks(iter(masks), min_area=5, max_gap=2)
    assert isinstance(tr, ObjectTable)
    assert sorted(set(tr.track_id.tolist())) == [0, 1]          # speck dropped, gap bridged
    a = tr.take(tr.track_id == 0)
    np.testing.assert_array_equal(a.frame, np.arange(12))
    np.testing.assert_array_equal(a.xyxy[3], [5, 5, 15, 15])   # exclusive x2/y2
    b = tr.take(tr.track_id == 1)
    assert len(b) == 10 and 6 not in b.frame and 7 not in b.frame
    np.testing.assert_array_equal(b.xyxy[0], [40, 25, 46, 33])
    assert np.all(np.diff(tr.frame) >= 0) and np.all(tr.score == 1)
    # without gap tolerance the second object becomes two tracks; with min_area 1 the speck is a track
    assert len(set(tracks_from_masks(masks, min_area=5, max_gap=0).track_id.tolist())) == 3
    assert len(set(tracks_from_masks(masks, min_area=1, max_gap=2).track_id.tolist())) == 3


def test_tracks_from_masks_edge_cases():
    assert len(tracks_from_masks([np.zeros((4, 4), bool)] * 3)) == 0
    assert len(tracks_from_masks([])) == 0
    with pytest.raises(ValueError, match="shape"):
        tracks_from_masks([np.zeros((4, 4), bool), np.zeros((5, 4), bool)])
    one = tracks_from_masks([np.pad(np.ones((5, 5), np.uint8), 2)], min_area=1)   # integer masks work
    assert len(one) == 1 and one.xyxy[0].tolist() == [2, 2, 7, 7]


def test_txt_round_trip(tmp_path):
    tr = ObjectTable.build([0, 0, 3], [[1, 2, 11, 22], [5.5, 6, 7, 8.25], [0, 0, 1, 1]], track_id=[4, 9, 4])
    write_tracks_txt(tmp_path / "v.txt", tr)
    lines = (tmp_path / "v.txt").read_text().splitlines()
    assert lines[0] == "4,0,1,2,10,21"                        # inclusive x_max/y_max on disk
    back = read_tracks_txt(tmp_path / "v.txt")
    np.testing.assert_array_equal(back.xyxy, tr.xyxy)
    np.testing.assert_array_equal(back.frame, tr.frame)
    np.testing.assert_array_equal(back.track_id, tr.track_id)
    det = ObjectTable.build([2, 7], [[1, 2, 3, 4], [10, 10, 20, 30]], score=[0.123456789, 1.0])
    write_detections_txt(tmp_path / "d.txt", det, frame_base=1)
    assert (tmp_path / "d.txt").read_text().splitlines()[1] == "8,10,10,19,29,1"
    back = read_detections_txt(tmp_path / "d.txt", frame_base=1)
    np.testing.assert_array_equal(back.score, det.score)
    np.testing.assert_array_equal(back.frame, det.frame)
    np.testing.assert_array_equal(back.xyxy, det.xyxy)


def test_txt_single_row_empty_and_malformed(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("0,5,1,1,4,4\n")
    assert len(read_tracks_txt(p)) == 1
    p.write_text("")
    assert len(read_tracks_txt(p)) == 0
    p.write_text("# comment\n\n 1 , 2, 3, 4, 5, 0.5 \n")
    assert len(read_detections_txt(p)) == 1
    for text, msg in [("0,5,1,1,4\n", "expected 6"), ("0,5,1,1,4,nan\n", "NaN"), ("0,5.5,1,1,4,4\n", "integers"),
                      ("0,5,1,1,a,4\n", "non-numeric"), ("0,5,4,1,1,4\n", "x_max < x_min")]:
        p.write_text(text)
        with pytest.raises(ValueError, match=msg):
            read_tracks_txt(p)
    p.write_text("0,1,1,4,4,0.5\n")
    with pytest.raises(ValueError, match="frame_base"):
        read_detections_txt(p, frame_base=1)


@pytest.mark.slow
@pytest.mark.skipif(not PED2_GT.is_dir(), reason="real Ped2 copy not available")
def test_tracks_from_real_ped2_masks():
    import cv2

    files = sorted(PED2_GT.glob("*.png"), key=lambda p: int(p.stem))
    tr = tracks_from_masks(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) > 0 for f in files)
    # Test001: one cyclist through the anomalous part of the clip
    assert 1 <= len(set(tr.track_id.tolist())) <= 3
    assert len(tr) >= 100
