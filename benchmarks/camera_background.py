"""Per-clip vs camera background for the background-subtraction detector, training side only (no test label).

The validation's Ped2 loiter plants (tao_lab.validation.cross_scene.build_scenes, scene ped2, set loiter: a walker
cut from another training clip walks in, then stands), and the plain training clips, leave-one-clip-out: with
``detector.background.scope=camera`` clip v's camera background is fitted on the OTHER training clips of the scene
(tao_lab.detector.camera leaves a clip and its planted copies out of their own camera background). Printed side by
side per clip, scope clip | camera:

- (a) loiter: the share of the loiterer's labelled (standing) frames on which the detector has a box with IoU >= 0.3
  with the planted box;
- (b) plain training clips: mean share of foreground pixels per frame and detections per frame (a static camera's
  plain clips are mostly background: more foreground is false foreground);
- the camera decision per clip (share of pixels where the clip's median disagrees with the camera background), and
  the same share for the warped copies of the clips (simulated other cameras of the same frame size), which must
  exceed max_disagreement so that they fall back to their own background;
- seconds per frame of detect() (background fit included; the CPU may be shared: timings are noisy).

    .venv/bin/python benchmarks/camera_background.py --ped2-dir ../shared/datasets/ucsd_ped2
    .venv/bin/python benchmarks/camera_background.py --ped2-dir ... detector.background.max_disagreement=0.3
Extra arguments are Hydra overrides of the pipeline config (applied to both scopes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def loiter_hit_share(detections, planted_boxes, iou: float = 0.3) -> tuple[float, int]:
    """(share of the planted box's frames with a detection of IoU >= ``iou``, number of those frames)."""
    from tao_lab.boxes import box_iou

    frames = planted_boxes.frame
    if len(frames) == 0:
        return float("nan"), 0
    hits = 0
    for f, box in zip(frames, planted_boxes.xyxy):
        dets = detections.xyxy[detections.frame == f]
        if len(dets) and float(box_iou(box[None], dets).max()) >= iou:
            hits += 1
    return hits / len(frames), len(frames)


def clip_stats(detector, clip) -> dict:
    """Detections, foreground share per frame and seconds per frame of ``detector`` on ``clip``."""
    start = time.perf_counter()
    dets = detector.detect(clip)
    seconds = time.perf_counter() - start
    model = detector.background_model(clip)
    fg = [float(model.foreground(frame).mean()) for frame in clip.frames()]
    return {"detections": dets, "fg_share": float(np.mean(fg)), "dets_per_frame": len(dets) / clip.num_frames,
            "s_per_frame": seconds / clip.num_frames}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ped2-dir", default=str(ROOT.parent / "shared" / "datasets" / "ucsd_ped2"))
    ap.add_argument("--num-clips", type=int, default=4, help="Ped2 training clips of the scene (validation: 4)")
    ap.add_argument("--num-frames", type=int, default=120, help="frames per clip (validation: 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iou", type=float, default=0.3, help="a loiter frame is found at IoU >= this (default 0.3)")
    ap.add_argument("--warps", default="ped2_low,ped2_oblique",
                    help="simulated other cameras (comma separated) whose disagreement share is printed")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    from tao_lab.config import parse_with_overrides

    args, extra = parse_with_overrides(ap, argv, "detector.background.max_disagreement=0.3")
    if not Path(args.ped2_dir).is_dir():
        ap.error(f"Ped2 folder not found: {args.ped2_dir}; pass --ped2-dir ../shared/datasets/ucsd_ped2")

    from tao_lab.config import compose_config
    from tao_lab.detector.camera import CameraBackgrounds
    from tao_lab.pipeline import instantiate
    from tao_lab.validation.cross_scene import build_scenes
    from tao_lab.validation.in_run import planted_box_table
    from tao_lab.validation.scenes import warp_scene

    base = ["progress=false", *extra]
    cfg = compose_config(base)
    if cfg.detector._target_.rsplit(".", 1)[-1] != "BackgroundSubtractionDetector":
        ap.error("this benchmark compares the background detector's scopes: use detector=background (the default)")
    detectors = {scope: instantiate(compose_config([*base, f"detector.background.scope={scope}"]).detector)
                 for scope in ("clip", "camera")}
    start = time.perf_counter()
    scene = build_scenes(cfg, ["ped2"], ["loiter"], args.ped2_dir, args.num_clips, args.num_frames, args.seed,
                         show_progress=False)[0]
    print(f"# ped2 scene: {len(scene.train)} training clips x {args.num_frames} frames, loiter plants built in "
          f"{time.perf_counter() - start:.0f} s ({os.cpu_count()} cores, shared: timings are noisy)", flush=True)
    camera = CameraBackgrounds(scene.train)
    start = time.perf_counter()  # the camera statistics: one per-clip fit per training clip, once per run
    camera.fit_statistics(detectors["camera"].background_kwargs)
    fit_s = time.perf_counter() - start
    print(f"# camera statistics of {len(scene.train)} training clips fitted in {fit_s:.2f} s (once per run; not in "
          f"the s/frame columns)", flush=True)
    detectors["camera"].use_camera(camera)
    kw, opts = detectors["camera"].background_kwargs, detectors["camera"].camera_options

    out: dict = {"loiter": [], "plain": [], "other_camera": [], "overrides": extra, "iou": args.iou,
                 "camera_fit_s": fit_s}
    print(f"\n## (a) loiter plants: share of the loiterer's labelled frames with a box of IoU >= {args.iou:g}")
    print("| clip | labelled frames | clip | camera | camera decision (disagreement %) |")
    print("|---|---|---|---|---|")
    for clip in scene.planted["loiter"]:
        if clip is None:
            continue
        gt = planted_box_table(clip)
        row = {"clip": clip.base.clip_id}
        for scope, det in detectors.items():
            row[f"found_{scope}"], row["frames"] = loiter_hit_share(clip_stats(det, clip)["detections"], gt, args.iou)
        _, reason, share = camera.model(clip, kw, **opts)
        row["decision"], row["disagreement"] = reason, share
        out["loiter"].append(row)
        print(f"| {row['clip']} | {row['frames']} | {100 * row['found_clip']:.1f} | {100 * row['found_camera']:.1f} | "
              f"{_decision(reason, share)} |", flush=True)
    means = {s: float(np.nanmean([r[f"found_{s}"] for r in out["loiter"]])) for s in ("clip", "camera")}
    print(f"| mean | | {100 * means['clip']:.1f} | {100 * means['camera']:.1f} | |")

    print("\n## (b) plain training clips (leave-one-clip-out camera): foreground % of pixels per frame, "
          "detections per frame, detect() s/frame")
    print("| clip | fg% clip | fg% camera | det/frame clip | det/frame camera | s/frame clip | s/frame camera | "
          "camera decision (disagreement %) |")
    print("|---|---|---|---|---|---|---|---|")
    for clip in scene.train:
        stats = {scope: clip_stats(det, clip) for scope, det in detectors.items()}
        _, reason, share = camera.model(clip, kw, **opts)
        row = {"clip": clip.clip_id, "decision": reason, "disagreement": share,
               **{f"{k}_{s}": stats[s][k] for s in stats for k in ("fg_share", "dets_per_frame", "s_per_frame")}}
        out["plain"].append(row)
        print(f"| {clip.clip_id} | {100 * row['fg_share_clip']:.2f} | {100 * row['fg_share_camera']:.2f} | "
              f"{row['dets_per_frame_clip']:.2f} | {row['dets_per_frame_camera']:.2f} | {row['s_per_frame_clip']:.4f} "
              f"| {row['s_per_frame_camera']:.4f} | {_decision(reason, share)} |", flush=True)
    keys = ("fg_share", "dets_per_frame", "s_per_frame")
    m = {f"{k}_{s}": float(np.mean([r[f"{k}_{s}"] for r in out["plain"]])) for k in keys for s in ("clip", "camera")}
    print(f"| mean | {100 * m['fg_share_clip']:.2f} | {100 * m['fg_share_camera']:.2f} | {m['dets_per_frame_clip']:.2f} "
          f"| {m['dets_per_frame_camera']:.2f} | {m['s_per_frame_clip']:.4f} | {m['s_per_frame_camera']:.4f} | |")

    warps = [w for w in args.warps.split(",") if w]
    if warps:
        print(f"\n## another camera of the same frame size: warped clips against the Ped2 camera background "
              f"(fallback above max_disagreement = {100 * opts['max_disagreement']:.0f}%)")
        print("| camera | clip | disagreement % | decision |")
        print("|---|---|---|---|")
        for name in warps:
            for clip in warp_scene(name, scene.train):
                _, reason, share = camera.model(clip, kw, **opts)
                out["other_camera"].append({"camera": name, "clip": clip.clip_id, "disagreement": share,
                                            "decision": reason})
                print(f"| {name} | {clip.base.clip_id} | {100 * share:.1f} | "
                      f"{'camera' if reason == 'camera' else 'own background'} |", flush=True)
    out["means"] = {"loiter": means, "plain": m}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"\n# wrote {args.json}")
    return out


def _decision(reason: str, share: float) -> str:
    return f"{'camera' if reason == 'camera' else 'own'} ({100 * share:.1f})"


if __name__ == "__main__":
    main()
