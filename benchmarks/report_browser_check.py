"""Opens infer's report.html in a real headless browser (Debian's chromium): a screenshot, and does the video play?

    python benchmarks/report_browser_check.py                    # synthetic 4 s clip, outputs under a temp dir
    python benchmarks/report_browser_check.py --input ../shared/datasets/avenue_partial/testing_videos/21.avi
    python benchmarks/report_browser_check.py --out outputs/report_check segmenter=boxes   # extra args = Hydra overrides

Runs ``infer`` on the input (without ``--input``: a synthetic surveillance clip written to a temporary mp4), then
starts chromium headless with a fresh profile and no network services, saves ``report.png`` (a screenshot of the
report) and probes its ``<video>``: it must load (readyState >= 2), have the clip's duration and frame size, and
its currentTime must advance while playing. Prints what the browser reported and exits 1 if the video does not
play. Needs ``apt-get install -y chromium``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def synthetic_input(path: Path, num_frames: int = 100, height: int = 160, width: int = 240) -> Path:
    """A synthetic surveillance clip (anomalies in its second half) as an mp4 to feed infer."""
    import cv2

    from tao_lab.dataset import SyntheticGenerator

    gen = SyntheticGenerator(seed=0, num_train_clips=0, num_test_clips=1, num_frames=num_frames, height=height,
                             width=width, anomalies_per_clip=(2, 2), anomaly_start=(0.5, 0.6))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for frame in gen.dataset().test[0].frames():
        writer.write(frame)
    writer.release()
    return path


def run_infer(input_path: Path, out_dir: Path, overrides: list[str]) -> Path:
    """infer on ``input_path`` with outputs and cache under ``out_dir``; returns the outputs folder."""
    from tao_lab.config import compose_config
    from tao_lab.tasks import infer, run_task

    cfg = compose_config([f"input={input_path}", f"paths.output_dir={out_dir / 'run'}",
                          f"paths.cache_dir={out_dir / 'cache'}", "fit_seconds=2", "progress=false", *overrides],
                         config_name="infer")
    run_task(cfg, infer)
    return out_dir / "run" / "outputs"


def check(outputs: Path, frames: int, fps: float, size: tuple[int, int]) -> dict:
    """Screenshot + video probe of ``outputs/report.html``; returns the findings with ``ok``."""
    from tao_lab.report.browser import probe_video, screenshot

    report = outputs / "report.html"
    png = screenshot(report, outputs.parent / "report.png")
    probe = probe_video(report)
    want_duration = frames / fps
    problems = []
    if not probe.get("found"):
        problems.append("no <video> element in the report")
    if probe.get("error") is not None:
        problems.append(f"the browser refused the video (MediaError {probe['error']})")
    if probe.get("readyState", 0) < 2:
        problems.append(f"readyState {probe.get('readyState')} < 2: no frame decoded")
    if abs(float(probe.get("duration") or 0) - want_duration) > 2.0 / fps:
        problems.append(f"duration {probe.get('duration')} s, expected {want_duration:.2f} s")
    if (probe.get("videoWidth"), probe.get("videoHeight")) != size:
        problems.append(f"video size {probe.get('videoWidth')}x{probe.get('videoHeight')}, expected "
                        f"{size[0]}x{size[1]}")
    if not float(probe.get("currentTime") or 0) > 0:
        problems.append(f"currentTime {probe.get('currentTime')} did not advance while playing")
    return {"screenshot": str(png), "probe": probe, "expected_duration_s": round(want_duration, 3),
            "problems": problems, "ok": not problems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, help="video or frame folder (default: a synthetic clip)")
    ap.add_argument("--out", type=Path, help="where the run and report.png go (default: a temp dir, kept)")
    args, overrides = ap.parse_known_args(argv)

    from tao_lab.report.browser import find_chromium

    if find_chromium() is None:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="tao_browser_check_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    source = args.input.resolve() if args.input else synthetic_input(out / "input.mp4")
    outputs = run_infer(source, out, overrides)
    summary = json.loads((outputs / "summary.json").read_text())
    width, height = (int(v) for v in summary["size"].split("x"))
    from tao_lab.report.overlay import TIMELINE_HEIGHT

    # the annotated frame has the timeline bar under it; H.264 (yuv420p) pads odd sizes by one pixel
    h = height + TIMELINE_HEIGHT
    result = check(outputs, summary["frames"], summary["fps"], (width + width % 2, h + h % 2))
    print(json.dumps(result, indent=2))
    print(f"report: {outputs / 'report.html'}\nscreenshot: {result['screenshot']}")
    print("OK: the report's video plays in chromium" if result["ok"] else "FAILED: " + "; ".join(result["problems"]))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
