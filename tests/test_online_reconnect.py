"""A network stream that drops is reconnected: a local server process is stopped and restarted mid-stream."""
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from helpers import write_video

SERVER = Path(__file__).with_name("mjpeg_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(video, port, start, stop):
    proc = subprocess.Popen([sys.executable, str(SERVER), str(video), str(port), str(start), str(stop)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"  # listening before the client connects
    return proc


def test_dropped_stream_is_reconnected_and_the_gap_recorded(tmp_path):
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    video = write_video(tmp_path / "stream.mp4", num_frames=120)
    port = _free_port()
    first = _serve(video, port, 0, 80)  # frames 0..79, then the server process exits: the stream drops
    second = {}

    def restart():  # the server comes back 1 s after it went away, with frames 80..119, then stops for good
        first.wait(timeout=300)
        time.sleep(1.0)
        second["proc"] = _serve(video, port, 80, 120)

    helper = threading.Thread(target=restart, daemon=True)
    helper.start()
    cfg = compose("infer", [f"input=http://127.0.0.1:{port}/stream.mjpg", "online=true", "fit_seconds=2",
                            "write_video=false", "reconnect.attempts=6", "reconnect.delay_s=0.5",
                            "reconnect.backoff=1.5"], tmp_path)
    try:
        summary = run_task(cfg, infer)
    finally:
        helper.join(timeout=60)
        for p in (first, second.get("proc")):
            if p is not None and p.poll() is None:
                p.kill()
    out = tmp_path / "run" / "outputs"
    gaps = summary["gaps"]
    # the drop after frame 79 was bridged; the final stop (no server any more) spent the attempts
    assert gaps[0]["reconnected"] and gaps[0]["after_frame"] == 79 and gaps[0]["length_s"] > 0
    assert not gaps[-1]["reconnected"] and gaps[-1]["attempts"] == 6 and len(gaps) == 2
    assert "reconnection attempts failed" in summary["stopped"]
    # frames after the gap were scored, with the same scorer and tracker state (indices continue)
    rows = np.loadtxt(out / "frame_scores.csv", delimiter=",", skiprows=1, ndmin=2)
    assert rows[0, 0] == 50 and rows[-1, 0] == 119 and len(rows) == 70
    assert json.loads((out / "summary.json").read_text())["gaps"] == gaps
    assert (out / "gaps.csv").read_text().splitlines()[1].startswith("79,")
    assert "Stream gaps" in (out / "report.html").read_text()


def test_latency_stats_in_constant_memory_match_the_exact_ones():
    from tao_lab.online import LatencyStats, latency_summary

    lat = np.linspace(0.010, 0.050, 401)  # 10..50 ms
    stats = LatencyStats()
    for v in lat:
        stats.add(v)
    got, exact = stats.summary(), latency_summary(list(lat))
    assert got["frames"] == 401 and got["mean_ms"] == exact["mean_ms"] and got["max_ms"] == exact["max_ms"]
    assert abs(got["p50_ms"] - exact["p50_ms"]) <= 0.1 and abs(got["p95_ms"] - exact["p95_ms"]) <= 0.1
    assert stats.hist.nbytes == LatencyStats.BINS * 8  # the same size after 401 frames as after 4 million


def test_a_file_that_ends_is_not_reconnected(tmp_path):
    from tao_lab.online import ReconnectingSource

    video = write_video(tmp_path / "short.mp4", num_frames=12)
    src = ReconnectingSource(str(video), attempts=3, delay_s=5.0)
    assert sum(1 for _ in src) == 12 and src.gaps == [] and src.stopped == "end of stream"
