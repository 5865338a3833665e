"""Speed and memory of tao_lab.metrics against scikit-learn (pixel AUROC/AP) and the plain RBDC/TBDC loop.

    python benchmarks/metrics_bench.py                 # full Ped2 size: 2010 x 240 x 360 = 173.6 M pixels
    python benchmarks/metrics_bench.py --frames 300    # quick look
    python benchmarks/metrics_bench.py --no-sklearn    # skip scikit-learn (~64 bytes per pixel: ~11 GB at full size)

Pixel part: GT masks are the real Ped2 test masks when ../shared/datasets/ucsd_ped2 exists (else synthetic moving
boxes); score maps are continuous float32 (0.7 U + 0.5 U' inside the mask, every pixel a fresh random value: the
worst case for an exact method), plus the same maps rounded to float16 (what tao_lab's segmenters emit).
scikit-learn runs on the float32 maps (``--sklearn-f16`` adds the float16 ones); if the machine lacks the memory
it gets fewer frames, and the table says so. The data is written once to ``--workdir``; every method then runs in
a fresh subprocess that streams frames from disk (tao_lab) or loads them all (scikit-learn needs the pooled
arrays), so the reported peak memory is the child's peak RSS above its RSS after imports. Times are wall clock
including reading from the page cache; CPU time (all threads) is shown next to it because the benchmark machines
are shared.

Object part: 50,000 detections on synthetic tracks; the vectorised ``rbdc_tbdc`` against a straightforward loop
(per detection, every GT track of its video) written here; both must give identical values.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PED2_TEST = ROOT.parent / "shared" / "datasets" / "ucsd_ped2" / "UCSDped2" / "Test"
H, W = 240, 360
PED2_FRAMES = 2010


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------
def _ped2_mask_files() -> list[Path]:
    if not PED2_TEST.is_dir():
        return []
    files = []
    for d in sorted(PED2_TEST.glob("Test*_gt")):
        files += sorted(d.glob("*.png"), key=lambda p: int(p.stem))
    return files


def mem_available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def make_data(workdir: Path, frames: int) -> str:
    import cv2

    workdir.mkdir(parents=True, exist_ok=True)
    stamp = workdir / f"data_{frames}.json"
    if stamp.is_file():
        return json.loads(stamp.read_text())["masks"]
    files = _ped2_mask_files()
    source = "real Ped2 test masks" if files else "synthetic moving boxes"
    with open(workdir / "scores.f32", "wb") as fs, open(workdir / "masks.u8", "wb") as fm:
        for i in range(frames):
            if files:
                m = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_GRAYSCALE) > 0
            else:
                m = np.zeros((H, W), bool)
                x = (7 * i) % (W - 40)
                m[100:150, x:x + 30] = (i // 50) % 5 != 0
            rng = np.random.default_rng(i)
            s = 0.7 * rng.random((H, W), dtype=np.float32) + 0.5 * m * rng.random((H, W), dtype=np.float32)
            s.astype(np.float32).tofile(fs)
            m.astype(np.uint8).tofile(fm)
    stamp.write_text(json.dumps({"frames": frames, "masks": source}))
    return source


def stream(workdir: Path, frames: int, dtype=np.float32):
    n = H * W
    with open(workdir / "scores.f32", "rb") as fs, open(workdir / "masks.u8", "rb") as fm:
        for _ in range(frames):
            s = np.fromfile(fs, np.float32, n).reshape(H, W)
            m = np.fromfile(fm, np.uint8, n).reshape(H, W).view(bool)
            yield (s if dtype == np.float32 else s.astype(dtype)), m


# ----------------------------------------------------------------------------------------------------------------
# one measured method per subprocess
# ----------------------------------------------------------------------------------------------------------------
def child(method: str, workdir: Path, frames: int) -> dict:
    from tao_lab.metrics import PixelMetrics

    if method.startswith("sklearn"):
        from sklearn.metrics import average_precision_score, roc_auc_score
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    if method.startswith("tao"):
        kw = {"binned": True} if "binned" in method else {}
        if method.endswith("2threads"):
            kw["num_threads"] = 2
        pm = PixelMetrics(**kw)
        for s, m in stream(workdir, frames, np.float16 if "f16" in method else np.float32):
            pm.update(s, m)
        r = pm.compute(fpr_limit=0.3, threshold=0.5)
        values = {k: r[k] for k in ("auroc", "ap", "aupro@0.3", "f1_max")}
        values.update({k: r[k] for k in r if k.endswith("error_bound")})
    else:
        n = frames * H * W
        scores = np.fromfile(workdir / "scores.f32", np.float32, n)
        masks = np.fromfile(workdir / "masks.u8", np.uint8, n).view(bool)
        if "f16" in method:
            scores = scores.astype(np.float16).astype(np.float32)
        values = {"auroc": float(roc_auc_score(masks, scores)), "ap": float(average_precision_score(masks, scores))}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"method": method, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak, "values": values}


def run_child(method: str, workdir: Path, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--workdir", str(workdir), "--frames", str(frames)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"method": method, "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# object part
# ----------------------------------------------------------------------------------------------------------------
def object_case(n_dets: int = 50_000, videos: int = 50, frames: int = 400, tracks: int = 20, seed: int = 0):
    from tao_lab.types import ObjectTable

    rng = np.random.default_rng(seed)
    gt, dets = {}, {}
    per_video = np.full(videos, n_dets // videos)
    per_video[: n_dets - per_video.sum()] += 1
    for v in range(videos):
        rows = []
        for tid in range(tracks):
            start = int(rng.integers(0, frames - 20))
            length = int(rng.integers(20, min(300, frames - start) + 1))
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(15, 60, 2)
            for f in range(start, start + length):
                x, y = x + rng.normal(0, 2), y + rng.normal(0, 2)
                rows.append((f, round(x), round(y), round(x + w), round(y + h), tid))
        a = np.array(rows, np.float64)
        gt[f"v{v:03d}"] = ObjectTable.build(a[:, 0], a[:, 1:5], track_id=a[:, 5])
        n = int(per_video[v])
        # half the detections near GT regions (jittered), half random; scores with ties (3 decimals)
        pick = rng.integers(0, len(a), n // 2)
        near = a[pick, 1:5] + rng.normal(0, 6, (len(pick), 4))
        xy = rng.uniform(0, 330, (n - len(pick), 2))
        rand = np.concatenate([xy, xy + rng.uniform(10, 60, (len(xy), 2))], 1)
        box = np.round(np.concatenate([near, rand]))
        box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + 1)
        f = np.concatenate([a[pick, 0], rng.integers(0, frames, len(xy))])
        score = np.round(np.concatenate([rng.uniform(0.3, 1, len(pick)), rng.uniform(0, 0.8, len(xy))]), 3)
        dets[f"v{v:03d}"] = ObjectTable.build(f, box, score=score)
    return gt, dets, videos * frames


def plain_loop(gt, dets, num_frames):
    """Straightforward RBDC/TBDC: per detection (score order, ties by video, frame, row), every GT track of its
    video; IoU with the +1 convention on inclusive coordinates == exclusive boxes without it."""
    videos = sorted(set(gt) | set(dets))
    tracks, regions = {}, 0
    for v in videos:
        t = gt.get(v)
        for i in range(0 if t is None else len(t)):
            tracks.setdefault((v, int(t.track_id[i])), {}).setdefault(int(t.frame[i]), []).append(
                (regions, tuple(float(c) for c in t.xyxy[i])))
            regions += 1
    by_video = {v: [k for k in tracks if k[0] == v] for v in videos}
    length = {k: sum(len(r) for r in fr.values()) for k, fr in tracks.items()}
    order = []
    for vi, v in enumerate(videos):
        t = dets.get(v)
        for i in range(0 if t is None else len(t)):
            order.append((-float(t.score[i]), vi, int(t.frame[i]), i, v, tuple(float(c) for c in t.xyxy[i])))
    order.sort(key=lambda d: d[:4])
    matched, hits, found = set(), dict.fromkeys(tracks, 0), set()
    fp, curve = 0, [(0.0, 0.0, 0.0)]
    for _, _, frame, _, v, b in order:
        overlap = False
        for key in by_video[v]:
            for r, g in tracks[key].get(frame, ()):
                iw = min(b[2], g[2]) - max(b[0], g[0])
                ih = min(b[3], g[3]) - max(b[1], g[1])
                inter = max(iw, 0.0) * max(ih, 0.0)
                union = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                if union > 0 and inter / union >= 0.1:
                    overlap = True
                    if r not in matched:
                        matched.add(r)
                        hits[key] += 1
                        if hits[key] / length[key] >= 0.1:
                            found.add(key)
        fp += not overlap
        curve.append((fp / num_frames, len(matched) / regions, len(found) / len(tracks)))
    curve = [c for c in curve if c[0] <= 1.0]
    curve.append((1.0, curve[-1][1], curve[-1][2]))
    rbdc = math.fsum((q[0] - p[0]) * (p[1] + q[1]) / 2 for p, q in zip(curve, curve[1:]))
    tbdc = math.fsum((q[0] - p[0]) * (p[2] + q[2]) / 2 for p, q in zip(curve, curve[1:]))
    return rbdc, tbdc


def object_bench() -> list[str]:
    from tao_lab.metrics import rbdc_tbdc

    gt, dets, num_frames = object_case()
    n_det = sum(len(t) for t in dets.values())
    n_reg = sum(len(t) for t in gt.values())
    n_trk = sum(len(set(t.track_id.tolist())) for t in gt.values())
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = rbdc_tbdc(gt, dets, num_frames)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    rb, tb = plain_loop(gt, dets, num_frames)
    t_loop = time.perf_counter() - t0
    t_vec = min(times)
    diff = max(abs(r["rbdc"] - rb), abs(r["tbdc"] - tb))
    return [f"Object metrics: {n_det:,} detections, {n_trk:,} GT tracks, {n_reg:,} regions, {num_frames:,} frames",
            f"| method | time (s) | RBDC | TBDC |", "|---|---|---|---|",
            f"| tao_lab rbdc_tbdc (vectorised, best of 5) | {t_vec:.3f} | {r['rbdc']:.6f} | {r['tbdc']:.6f} |",
            f"| plain loop (detections x tracks) | {t_loop:.3f} | {rb:.6f} | {tb:.6f} |",
            f"speed-up {t_loop / t_vec:.1f}x; max |difference| = {diff:.1e} "
            f"({'identical' if diff == 0 else 'DIFFERENT'})"]


# ----------------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=PED2_FRAMES)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tao_lab_metrics_bench",
                    help="where the data is written once (default: tao_lab_metrics_bench in the temp dir)")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--sklearn-f16", action="store_true", help="also run scikit-learn on the float16 maps")
    ap.add_argument("--no-object", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.frames)))
        return

    workdir = args.workdir / f"f{args.frames}"
    t0 = time.perf_counter()
    source = make_data(workdir, args.frames)
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {workdir} ({source})", file=sys.stderr)
    methods = [("tao_exact_f32", "tao_lab PixelMetrics, exact (default, 1 thread)", "float32"),
               ("tao_exact_f32_2threads", "tao_lab PixelMetrics, exact, num_threads=2", "float32"),
               ("tao_exact_f16", "tao_lab PixelMetrics, exact", "float16"),
               ("tao_binned_f32", "tao_lab PixelMetrics, binned 2^20", "float32")]
    sk_frames = args.frames
    if not args.no_sklearn:
        # scikit-learn holds the pooled arrays plus sort indices and cumulative sums: ~64 bytes per pixel
        need_mb = args.frames * H * W * 64 / 2 ** 20
        avail_mb = mem_available_mb()
        if need_mb > 0.6 * avail_mb:
            sk_frames = max(1, int(args.frames * 0.6 * avail_mb / need_mb))
            print(f"scikit-learn would need ~{need_mb:.0f} MB of {avail_mb:.0f} MB available: running it on the first "
                  f"{sk_frames} frames only", file=sys.stderr)
        label = "scikit-learn roc_auc_score + average_precision_score"
        if sk_frames < args.frames:
            label += f" (first {sk_frames} frames only)"
        methods.append(("sklearn_f32", label, "float32"))
        if args.sklearn_f16:
            methods.append(("sklearn_f16", label, "float16"))
    results = {}
    for key, _, _ in methods:
        print(f"running {key} ...", file=sys.stderr)
        results[key] = run_child(key, workdir, sk_frames if key.startswith("sklearn") else args.frames)
    npx = args.frames * H * W
    lines = [f"Pixel metrics: {args.frames} frames x {H} x {W} = {npx / 1e6:.1f} M pixels (GT: {source}); "
             f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
             "| method | maps | metrics | wall (s) | CPU (s) | peak extra RSS (MB) | AUROC | AP | AUPRO@0.3 | F1max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label, maps in methods:
        r = results[key]
        if "error" in r:
            lines.append(f"| {label} | {maps} | - | failed: {r['error']} |")
            continue
        v = r["values"]
        metrics = "AUROC, AP" if key.startswith("sklearn") else "AUROC, AP, AUPRO@0.3, F1max"

        def fmt(k):
            return f"{v[k]:.6f}" if k in v else "-"

        lines.append(f"| {label} | {maps} | {metrics} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_mb']:.0f} | "
                     f"{fmt('auroc')} | {fmt('ap')} | {fmt('aupro@0.3')} | {fmt('f1_max')} |")
    for ours, theirs in (("tao_exact_f32", "sklearn_f32"), ("tao_exact_f16", "sklearn_f16")):
        a, b = results.get(ours, {}), results.get(theirs, {})
        if "values" in a and "values" in b and sk_frames == args.frames:
            d = max(abs(a["values"][k] - b["values"][k]) for k in ("auroc", "ap"))
            lines.append(f"exact vs scikit-learn ({theirs[-3:]} maps): max |difference| AUROC/AP = {d:.1e}")
    b = results.get("tao_binned_f32", {})
    if "values" in b:
        bounds = {k: b["values"][k] for k in b["values"] if k.endswith("error_bound")}
        lines.append("binned certified error bounds: " + ", ".join(f"{k[:-12]} {v:.1e}" for k, v in bounds.items()))
    if not args.no_object:
        lines.append("")
        lines += object_bench()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
