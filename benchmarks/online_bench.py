"""Latency and memory of the online mode on this machine (a video file read as a stream).

    python benchmarks/online_bench.py                       # synthetic 240x360 stream, T = 8, 16, 32
    python benchmarks/online_bench.py --input my.mp4 --buffer 16 --frames 1000 --fit-seconds 10
    python benchmarks/online_bench.py --json out.json segmenter=boxes  # extra args = Hydra overrides

Without ``--input`` a synthetic surveillance video (normal warm-up part, then a part with anomalies) is written
to a temporary file first. For every buffer length T the stream is processed frame by frame with
``OnlinePipeline.run`` (warm-up frames fit the scorer and the background model and are not timed); the latency of
each frame is the wall time from reading it to its result (objects, scores, masks). Resident memory is sampled
every 50 frames to show that it stays flat. Prints a table and optionally writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def rss_mb() -> float:
    """Current resident set size (MiB) from /proc, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_video(path: Path, warm_frames: int, test_frames: int, height: int, width: int, seed: int = 0) -> Path:
    """One continuous synthetic clip: ``warm_frames`` without anomalies, then anomalies planted in the rest."""
    import cv2

    from tao_lab.dataset import SyntheticGenerator

    n = warm_frames + test_frames
    start = (warm_frames + 5) / n
    clip = SyntheticGenerator(seed=seed, num_train_clips=0, num_test_clips=1, num_frames=n, height=height,
                              width=width, anomalies_per_clip=(2, 3),
                              anomaly_start=(start, min(start + 0.3, 0.95))).dataset().test[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps, (width, height))
    for frame in clip.frames():
        writer.write(frame)
    writer.release()
    return path


CONFIG_DIR = ROOT / "configs"


def compose(overrides: list[str], tmp: Path):
    from tao_lab.config import compose_config

    return compose_config(["input=unused", f"paths.output_dir={tmp / 'run'}", "paths.cache_dir=null",
                           "progress=false", *overrides], config_name="infer", config_dir=CONFIG_DIR)


def bench(video: Path, buffer_frames: int, fit_seconds: float, max_frames, overrides: list[str], tmp: Path) -> dict:
    import numpy as np

    from tao_lab.online import OnlinePipeline, latency_summary

    cfg = compose([f"buffer_frames={buffer_frames}", *overrides], tmp)
    online = OnlinePipeline.from_config(cfg)
    online.keep_frames = False
    lat, mem, n_anom = [], [], 0
    start = time.perf_counter()
    for k, out in enumerate(online.run(str(video), max_frames=max_frames, fit_seconds=fit_seconds)):
        if k == 0:
            warm_s = time.perf_counter() - start
        lat.append(out.latency_s)
        n_anom += int(out.anomalous)
        if k % 50 == 0:
            mem.append(rss_mb())
    mem.append(rss_mb())
    summary = latency_summary(lat)
    frames = max(summary.get("frames", 1), 1)
    summary.update({"buffer_frames": buffer_frames, "warmup_s": round(warm_s, 2), "anomalous_frames": n_anom,
                    "rss_mb_first": round(mem[0], 1), "rss_mb_last": round(mem[-1], 1),
                    "rss_mb_max": round(float(np.max(mem)), 1),
                    "stage_ms": {k: round(v * 1000 / frames, 2) for k, v in online.timings.items()},
                    "size": f"{online.width}x{online.height}"})
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=None, help="a video file (default: a synthetic one)")
    ap.add_argument("--buffer", default="8,16,32", help="comma-separated ring-buffer lengths T")
    ap.add_argument("--frames", type=int, default=None, help="stop after this many frames (warm-up included)")
    ap.add_argument("--fit-seconds", type=float, default=4.0, help="warm-up length (s)")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=360)
    ap.add_argument("--test-frames", type=int, default=300, help="synthetic: frames after the warm-up")
    ap.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's choice)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--config-dir", default=None, help="Hydra config folder (default: the project's configs/)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/infer.yaml (e.g. segmenter=boxes)")
    args = ap.parse_args(argv)
    global CONFIG_DIR
    if args.config_dir:
        CONFIG_DIR = Path(args.config_dir).resolve()

    from tao_lab.no_network import set_offline_env

    set_offline_env()
    import cv2

    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tao_online_bench_") as d:
        tmp = Path(d)
        if args.input:
            video = Path(args.input)
        else:
            fps = 25.0
            video = synthetic_video(tmp / "stream.mp4", int(round(args.fit_seconds * fps)) + 5, args.test_frames,
                                    args.height, args.width)
        results = []
        for t in [int(v) for v in args.buffer.split(",") if v.strip()]:
            r = bench(video, t, args.fit_seconds, args.frames, list(args.overrides), tmp / f"T{t}")
            results.append(r)
    print(f"\nonline latency per frame on this machine ({os.cpu_count()} CPUs), stream {results[0]['size']}, "
          f"{results[0]['frames']} timed frames after a {args.fit_seconds:g} s warm-up")
    print(f"{'T':>4} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'fps':>7} {'RSS first->last MiB':>21}"
          f"  per-stage mean ms")
    for r in results:
        stages = " ".join(f"{k}={v}" for k, v in r["stage_ms"].items())
        print(f"{r['buffer_frames']:>4} {r['mean_ms']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8} "
              f"{r['fps']:>7} {r['rss_mb_first']:>10} -> {r['rss_mb_last']:<8}  {stages}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
