"""``python -m tao_lab.metrics``: valid runs print one JSON object; malformed input exits 2 with a clear message."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tao_lab.metrics import rbdc_tbdc, read_txt_dir
from tao_lab.metrics.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.fixture
def object_dirs(tmp_path):
    t, d = tmp_path / "tracks", tmp_path / "dets"
    t.mkdir()
    d.mkdir()
    (t / "v1.txt").write_text("0,0,10,10,19,19\n0,1,11,10,20,19\n")
    (t / "v2.txt").write_text("")                                 # a video without anomalous objects
    (d / "v1.txt").write_text("0,10,10,19,19,0.9\n1,50,50,60,60,0.8\n1,11,10,20,19,0.7\n")
    (d / "v2.txt").write_text("3,0,0,5,5,0.95\n")                  # one row
    return t, d


def test_object(capsys, object_dirs):
    t, d = object_dirs
    code, out, _ = run(capsys, "object", "--tracks", t, "--detections", d, "--num-frames", 20)
    assert code == 0
    ref = rbdc_tbdc(read_txt_dir(t, "tracks"), read_txt_dir(d, "detections"), 20)
    assert out["rbdc"] == pytest.approx(ref["rbdc"]) and out["tbdc"] == pytest.approx(ref["tbdc"])
    # hand check: FP 0.95 (v2) -> (0.05, 0); hit -> (.05, .5); FP -> (.1, .5); hit -> (.1, 1); flat to 1
    assert out["rbdc"] == pytest.approx(0.05 * 0.5 + 0.9 * 1.0)
    assert out["num_regions"] == 2 and out["num_false_positives"] == 2 and "fpr" not in out


def test_object_errors(capsys, object_dirs, tmp_path):
    t, d = object_dirs
    (d / "v3.txt").write_text("0,1,1,2,2,0.5\n")
    code, _, err = run(capsys, "object", "--tracks", t, "--detections", d, "--num-frames", 20)
    assert code == 2 and "unknown video" in err and "v3" in err
    code, out, _ = run(capsys, "object", "--tracks", t, "--detections", d, "--num-frames", 20,
                       "--missing-tracks-ok")
    assert code == 0
    (d / "v3.txt").write_text("0,1,1,2,2\n")
    code, _, err = run(capsys, "object", "--tracks", t, "--detections", d, "--num-frames", 20)
    assert code == 2 and "v3.txt:1: expected 6" in err
    (d / "v3.txt").unlink()
    (d / "v1.txt").write_text("0,10,10,19,19,nan\n")
    code, _, err = run(capsys, "object", "--tracks", t, "--detections", d, "--num-frames", 20)
    assert code == 2 and "NaN" in err
    code, _, err = run(capsys, "object", "--tracks", tmp_path / "nope", "--detections", d, "--num-frames", 20)
    assert code == 2 and "not found" in err


@pytest.fixture
def pixel_dirs(tmp_path):
    rng = np.random.default_rng(0)
    s, m = tmp_path / "scores", tmp_path / "masks"
    s.mkdir()
    m.mkdir()
    data = {}
    for v, T in (("a", 3), ("b", 2)):
        masks = np.zeros((T, 12, 16), bool)
        masks[:, 3:7, 4:9] = True
        masks[1] = False
        scores = (rng.random((T, 12, 16)) + 0.5 * masks).astype(np.float32)
        np.save(s / f"{v}.npy", scores)
        data[v] = (scores, masks)
    np.save(m / "a.npy", data["a"][1])
    (m / "b").mkdir()                                             # b: a folder of mask images
    for i, mk in enumerate(data["b"][1]):
        cv2.imwrite(str(m / "b" / f"{i + 1}.png"), mk.astype(np.uint8) * 255)
    return s, m, data


def test_pixel_standard_and_tao(capsys, pixel_dirs):
    s, m, data = pixel_dirs
    code, out, _ = run(capsys, "pixel", "--scores", s, "--masks", m, "--threshold", 0.6)
    assert code == 0
    sc = np.concatenate([data[v][0].ravel() for v in ("a", "b")]).astype(np.float64)
    mk = np.concatenate([data[v][1].ravel() for v in ("a", "b")])
    assert abs(out["auroc"] - roc_auc_score(mk, sc)) < 1e-9
    assert {"ap", "aupro@0.3", "f1_max", "f1@thr"} <= set(out) and out["protocol"] == "standard"
    code, out, _ = run(capsys, "pixel", "--scores", s, "--masks", m, "--protocol", "tao")
    assert code == 0 and {"auroc_tao", "ap_tao", "aupro_tao", "f1_tao"} <= set(out)
    assert out["frames_scored"] == 3 and out["frames_skipped_empty_gt"] == 2
    code, out, _ = run(capsys, "pixel", "--scores", s, "--masks", m, "--binned")
    assert code == 0 and "auroc_error_bound" in out


def test_pixel_errors(capsys, pixel_dirs):
    s, m, data = pixel_dirs
    np.save(s / "c.npy", np.zeros((1, 12, 16), np.float32))
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "unknown video" in err and "c" in err
    np.save(m / "c.npy", np.zeros((1, 12, 15), bool))
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "video c" in err and "(1, 12, 15)" in err
    bad = data["a"][0].copy()
    bad[2, 0, 0] = np.nan
    np.save(m / "c.npy", np.zeros((1, 12, 16), bool))
    np.save(s / "a.npy", bad)
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "video a frame 2" in err and "NaN" in err


def test_frame(capsys, tmp_path):
    sc, lb, vd = tmp_path / "s.txt", tmp_path / "l.txt", tmp_path / "v.txt"
    sc.write_text("0.1\n0.4\n0.35\n0.8\n0.2\n0.3\n")
    lb.write_text("0\n0\n1\n1\n0\n0\n")
    vd.write_text("x\nx\nx\nx\ny\ny\n")
    code, out, _ = run(capsys, "frame", "--scores", sc, "--labels", lb, "--videos", vd)
    assert code == 0
    assert out["auc_micro"] == pytest.approx(roc_auc_score([0, 0, 1, 1, 0, 0], [0.1, 0.4, .35, .8, .2, .3]))
    assert out["auc_macro"] == pytest.approx(0.75) and out["macro_videos_skipped"] == 1
    code, out, _ = run(capsys, "frame", "--scores", sc, "--labels", lb)
    assert code == 0 and out["auc_macro"] is None
    lb.write_text("0\n0\n1\n")
    code, _, err = run(capsys, "frame", "--scores", sc, "--labels", lb)
    assert code == 2 and "6 scores" in err
    lb.write_text("0\n0\n1\n1\n0\n0\n")
    sc.write_text("0.1\nnan\n0.35\n0.8\n0.2\n0.3\n")
    code, _, err = run(capsys, "frame", "--scores", sc, "--labels", lb)
    assert code == 2 and "line 2" in err


def test_module_entry_point(object_dirs):
    t, d = object_dirs
    p = subprocess.run([sys.executable, "-m", "tao_lab.metrics", "object", "--tracks", str(t), "--detections",
                        str(d), "--num-frames", "20"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)) >= {"rbdc", "tbdc"}
    p = subprocess.run([sys.executable, "-m", "tao_lab.metrics", "object", "--tracks", str(t), "--detections",
                        str(d), "--num-frames", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error:")


def test_object_refuses_a_detections_folder_without_txt_files(capsys, object_dirs, tmp_path):
    t, _ = object_dirs
    csv_only = tmp_path / "csv_dets"
    csv_only.mkdir()
    (csv_only / "v1.csv").write_text("frame_id,x_min,y_min,x_max,y_max,score\n0,10,10,19,19,0.9\n")
    code, out, err = run(capsys, "object", "--tracks", t, "--detections", csv_only, "--num-frames", 20)
    assert code == 2 and out is None  # not RBDC = TBDC = 0 with exit 0
    assert "no <video>.txt detections files" in err and "v1.csv" in err and "csv_dets" in err
    empty = tmp_path / "empty_dets"
    empty.mkdir()
    code, _, err = run(capsys, "object", "--tracks", t, "--detections", empty, "--num-frames", 20)
    assert code == 2 and "folder is empty" in err
    p = subprocess.run([sys.executable, "-m", "tao_lab.metrics", "object", "--tracks", str(t), "--detections",
                        str(csv_only), "--num-frames", "20"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == "" and "v1.csv" in p.stderr


def test_pixel_names_a_file_that_is_not_npy(capsys, pixel_dirs):
    s, m, _ = pixel_dirs
    (s / "a.npy").write_text("0.1 0.2 0.3\n")  # text saved under a .npy name
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "a.npy" in err and "not a readable .npy score array" in err
    np.save(s / "a.npy", np.zeros((3, 12, 16), np.float32))
    np.save(m / "a.npy", np.array([{"x": 1}] * 3, dtype=object))  # pickled objects
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "a.npy" in err and "mask" in err
    for f in s.glob("*.npy"):
        f.rename(f.with_suffix(".npz"))
    code, _, err = run(capsys, "pixel", "--scores", s, "--masks", m)
    assert code == 2 and "no <video>.npy score files" in err and "a.npz" in err
