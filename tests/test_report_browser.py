"""The annotated video plays in a real headless browser (Debian's chromium), and the report renders.

Slow (starts chromium; the second test runs infer): ``pytest -m slow tests/test_report_browser.py``.
"""
import struct

import numpy as np
import pytest

from helpers import load_benchmark
from tao_lab.report.browser import find_chromium

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install chromium)")]


def _page_with_video(folder, name):
    (folder / "page.html").write_text(f"<!DOCTYPE html><html><body><video src='{name}' controls></video></body></html>")
    return folder / "page.html"


def test_h264_plays_where_mp4v_is_refused(tmp_path):
    from tao_lab.report.browser import probe_video
    from tao_lab.report.overlay import VideoWriter

    frames = [np.full((64, 96, 3), 10 * i, np.uint8) for i in range(25)]
    for codec in ("h264", "mp4v"):
        d = tmp_path / codec
        d.mkdir()
        w = VideoWriter(d / "v.mp4", fps=25, codec=codec)
        for f in frames:
            w.write(f)
        w.close()
    ok = probe_video(_page_with_video(tmp_path / "h264", "v.mp4"))
    assert ok["found"] and ok.get("error") is None and ok["readyState"] >= 2
    assert ok["duration"] == pytest.approx(1.0, abs=0.05) and (ok["videoWidth"], ok["videoHeight"]) == (96, 64)
    assert ok["currentTime"] > 0
    refused = probe_video(_page_with_video(tmp_path / "mp4v", "v.mp4"))
    assert refused["error"] == 4  # MEDIA_ERR_SRC_NOT_SUPPORTED: why annotated.mp4 is H.264 now


def test_infer_report_screenshot_and_video(tmp_path):
    bench = load_benchmark("report_browser_check")
    assert bench.main(["--out", str(tmp_path)]) == 0
    png = (tmp_path / "run" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 2400)
    report = (tmp_path / "run" / "outputs" / "report.html").read_text()
    assert "<video" in report and "src='annotated.mp4'" in report
