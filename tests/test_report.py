"""Report building blocks: overlays, timeline bar, atomic video writer, curves, the self-contained HTML report."""
import re

import numpy as np
import pytest


def test_draw_objects_paints_masks_boxes_and_labels():
    from tao_lab.report.overlay import color_for, draw_objects

    frame = np.full((60, 80, 3), 100, np.uint8)
    inst = np.zeros((60, 80), np.int32)
    inst[10:30, 10:30] = 3
    out = draw_objects(frame, inst, np.array([[10, 10, 30, 30], [50, 40, 70, 55]], np.float32), np.array([3, 7]),
                       np.array([2.0, 0.1]), tau=1.0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out[20, 20], frame[20, 20])  # mask blended in
    assert np.array_equal(frame, np.full((60, 80, 3), 100, np.uint8))  # input untouched
    # flagged box (score >= tau) is red; the other one is faint: its id colour blended 35% into the frame
    near = lambda px, col: np.abs(px.astype(int) - np.array(col)).max() < 40  # noqa: E731 (anti-aliased lines)
    faint = 0.35 * np.array(color_for(7)) + 0.65 * 100
    assert near(out[54, 60], faint) and not near(out[54, 60], (100, 100, 100))
    assert near(out[29, 20], (0, 0, 255))
    assert color_for(3) == color_for(3) and color_for(3) != color_for(4)
    # the flagged box carries a label (white text on red), an unflagged box none
    white = lambda img: int((img > 200).all(axis=2).sum())  # noqa: E731
    assert white(out) > 0
    assert white(draw_objects(frame, None, np.array([[50, 40, 70, 55]], np.float32), np.array([7]),
                              np.array([0.1]), tau=1.0)) == 0
    # with class names the label grows by the class
    wide = np.full((60, 200, 3), 100, np.uint8)
    box, one, high = np.array([[10, 20, 30, 40]], np.float32), np.array([3]), np.array([2.0])
    named = draw_objects(wide, None, box, one, high, tau=1.0, classes=["bicycle"])
    plain = draw_objects(wide, None, box, one, high, tau=1.0)
    assert white(named) > white(plain) + 10


def test_timeline_bar_and_compose():
    from tao_lab.report.overlay import TIMELINE_HEIGHT, TimelineBar, compose_frame

    scores = np.r_[np.zeros(50), np.ones(10) * 3, np.zeros(40)]
    bar = TimelineBar(scores, width=200, tau=1.0)
    assert bar.bar.shape == (TIMELINE_HEIGHT, 200, 3)
    # the flagged span (frames 50-59 -> columns 100-119) is drawn red-ish, the rest blue-ish
    col = bar.bar[TIMELINE_HEIGHT - 5, 110]
    assert col[2] > col[0]
    img = compose_frame(np.zeros((40, 200, 3), np.uint8), bar, 55, "frame 55")
    assert img.shape == (40 + TIMELINE_HEIGHT, 200, 3)
    # a video shorter than the bar is wide still fills the bar
    assert TimelineBar(np.arange(5.0), width=300).bar[TIMELINE_HEIGHT - 4, 299].sum() > 90


def test_video_writer_is_atomic(tmp_path):
    import cv2

    from tao_lab.report.overlay import VideoWriter

    w = VideoWriter(tmp_path / "a.mp4", fps=10)
    for i in range(5):
        w.write(np.full((32, 48, 3), i * 40, np.uint8))
    # the final name appears only on close (the partial file may not exist yet: the encoder buffers frames)
    assert not (tmp_path / "a.mp4").exists()
    w.close()
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    n = 0
    while cap.grab():
        n += 1
    assert n == 5
    w2 = VideoWriter(tmp_path / "b.mp4", fps=10)
    w2.write(np.zeros((32, 48, 3), np.uint8))
    w2.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_roc_pr_points_match_sklearn():
    from sklearn.metrics import auc, average_precision_score, roc_auc_score

    from tao_lab.report.plots import roc_pr_points

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = np.round(rng.normal(size=500) + y, 1)  # ties on purpose
    pts = roc_pr_points(s, y)
    assert auc(pts["roc"]["fpr"], pts["roc"]["tpr"]) == pytest.approx(roc_auc_score(y, s))
    r, p = pts["pr"]["recall"], pts["pr"]["precision"]
    assert np.sum(np.diff(r) * p[1:]) == pytest.approx(average_precision_score(y, s))
    assert roc_pr_points(s, np.zeros(500, bool)) == {}


def test_curve_specs_recognise_families():
    from tao_lab.report.plots import curve_specs, curves_figure_png

    x = np.linspace(0, 1, 50)
    curves = {"object": {"fpr": x, "rbdr": x, "tbdr": x ** 0.5}, "frame_roc": {"fpr": x, "tpr": x},
              "pixel": {"pro": {"fpr": x, "pro": x}, "pr": {"recall": x, "precision": 1 - x}},
              "junk": {"a": x}}
    specs = curve_specs(curves)
    keys = [s["key"] for s in specs]
    assert keys == ["object", "frame_roc", "pixel_pro", "pixel_pr"]
    assert set(specs[0]["series"]) == {"object rbdr", "object tbdr"}
    assert curves_figure_png(specs)[:4] == b"\x89PNG"
    assert curves_figure_png([]) is None


def test_html_report_is_self_contained(tmp_path):
    from tao_lab.report.html import write_report
    from tao_lab.report.plots import timeline_png

    png = timeline_png(np.sin(np.linspace(0, 6, 100)), tau=0.5, fps=10, flagged=np.sin(np.linspace(0, 6, 100)) > .5)
    path = write_report(tmp_path / "r.html", "title <x>", notes=["fitted on the first 2 s"],
                        summary={"frames": 100, "tau": 0.5}, plots=[("Score timeline", png)],
                        gallery=[(np.zeros((20, 20, 3), np.uint8), "track 1\nscore 2.0")],
                        tables=[("rows", [{"a": 1, "b": "x"}])], config_text="a: 1\n")
    text = path.read_text()
    assert "title &lt;x&gt;" in text and "fitted on the first 2 s" in text
    assert text.count("data:image/png;base64,") == 1 and text.count("data:image/jpeg;base64,") == 1
    assert not re.search(r"(src|href)=['\"]https?://", text)
    assert "<script" not in text
    assert not (tmp_path / "r.html.tmp").exists()


def test_pixel_curves_agree_with_the_pixel_metrics():
    from sklearn.metrics import auc

    from tao_lab.metrics import PixelMetrics
    from tao_lab.report.plots import pixel_curves

    rng = np.random.default_rng(1)
    pm = PixelMetrics()
    for _ in range(3):
        gt = np.zeros((20, 30), bool)
        gt[5:12, 8:20] = True
        pm.update((rng.random((20, 30)) + gt * 0.6).astype(np.float32), gt)
    m = pm.compute(fpr_limit=0.3)
    c = pixel_curves(pm)
    assert set(c) == {"pixel_roc", "pixel_pr", "pixel_pro"}
    assert auc(c["pixel_roc"]["fpr"], c["pixel_roc"]["tpr"]) == pytest.approx(m["auroc"], abs=1e-3)
    pro = c["pixel_pro"]
    assert pro["fpr"].max() <= 0.3 + 1e-9 and 0 <= pro["pro"].min() and pro["pro"].max() <= 1


def test_annotated_video_is_browser_playable_h264(tmp_path):
    """H.264 (avc1) in MP4 with the index first (+faststart): what browsers play; mp4v is refused by them."""
    import cv2

    from tao_lab.report.overlay import VideoWriter

    w = VideoWriter(tmp_path / "odd.mp4", fps=10)
    assert w.codec == "h264"
    for i in range(12):
        w.write(np.full((33, 47, 3), i * 20, np.uint8))  # odd size: yuv420p needs even, padded by one pixel
    w.close()
    data = (tmp_path / "odd.mp4").read_bytes()
    assert b"avc1" in data and b"mp4v" not in data
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while loading
    cap = cv2.VideoCapture(str(tmp_path / "odd.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 12 and frames[0].shape == (34, 48, 3)
    assert abs(float(frames[5][:33, :47].mean()) - 100) < 8  # frame 5 (grey 100; neighbours 80, 120) survives
