"""Where the camera background's extra foreground comes from: its background or its noise (training clips only).

The detector's camera background (``detector.background.scope=camera``, tao_lab/detector/camera.py) changes two things
of a clip's :class:`tao_lab.detector.background.BackgroundModel`: the background (blended with the camera's median)
and the per-pixel noise behind the foreground threshold (the camera's everywhere). Per training clip of the configured
dataset, leave-one-clip-out (a clip is never part of its own camera background), this prints the foreground share
of the pixels per frame for the four combinations, side by side:

    own      the clip's own background and noise (``scope=clip``)
    cam_bg   the camera's blended background with the clip's own noise
    cam_sd   the clip's own background with the camera's noise
    default  both the camera's (``scope=camera``)

and, with the camera's model, the share of the pixels whose foreground threshold is above the ``min_threshold`` floor
(own noise / camera noise) and the share of the raw foreground the shadow test removes. No test clip is read.

    .venv/bin/python benchmarks/background_parts.py dataset=ucsd_ped2 paths.data_dir=../shared/datasets/ucsd_ped2
    .venv/bin/python benchmarks/background_parts.py --every 5 dataset=ucsd_ped2 paths.data_dir=...
Extra arguments are Hydra overrides of the pipeline config.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMBINATIONS = ("own", "cam_bg", "cam_sd", "default")


def foreground_parts(own, camera, frames) -> dict:
    """Mean foreground share per frame (0..1) of the four combinations of background and noise of two fitted
    BackgroundModels of one clip (``own``: scope clip; ``camera``: scope camera), the shares of pixels whose threshold
    is above the ``min_threshold`` floor, and the share of the camera model's raw foreground its shadow test removes."""
    cam_bg = own.replaced(background=camera.background)  # the camera's background with the clip's own noise
    # (share name, model whose difference is thresholded, threshold): each model's difference is computed once
    combos = (("own", "own", own.threshold), ("cam_bg", "cam_bg", own.threshold),
              ("cam_sd", "own", camera.threshold), ("default", "camera", camera.threshold))
    models = {"own": own, "cam_bg": cam_bg, "camera": camera}
    shares = {name: [] for name, _, _ in combos}
    raw = removed = 0
    for frame in frames:
        diffs = {key: model.difference(frame) for key, model in models.items()}
        for name, key, threshold in combos:
            shares[name].append(float(models[key].clean(diffs[key] > threshold).mean()))
        if camera.shadow_ratio is not None:  # difference() zeroes the shadow pixels; the raw difference keeps them
            above = np.abs(camera.normalized(frame) - camera.background) > camera.threshold
            raw += int(above.sum())
            removed += int((above & ~(diffs["camera"] > camera.threshold)).sum())
    out = {name: float(np.mean(v)) for name, v in shares.items()}
    floor = camera.min_threshold + 1e-3
    out.update(raised_own=float(np.mean(own.threshold > floor)), raised_camera=float(np.mean(camera.threshold > floor)),
               shadow_share=removed / raw if raw else float("nan"))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=10, help="use every N-th frame of each clip (default 10)")
    ap.add_argument("--max-clips", type=int, default=0, help="first N training clips only (0 = all)")
    from tao_lab.config import parse_with_overrides

    args, extra = parse_with_overrides(ap, argv, "dataset=ucsd_ped2 paths.data_dir=../shared/datasets/ucsd_ped2")
    if args.every < 1:
        ap.error(f"--every must be >= 1, got {args.every}")

    from tao_lab.config import compose_config
    from tao_lab.detector.background import BackgroundModel
    from tao_lab.detector.camera import CameraBackgrounds
    from tao_lab.pipeline import instantiate

    cfg = compose_config(["progress=false", *extra])
    if cfg.detector._target_.rsplit(".", 1)[-1] != "BackgroundSubtractionDetector":
        ap.error("this benchmark takes apart the background detector's camera background: use detector=background")
    detector = instantiate(cfg.detector)
    kwargs, options = detector.background_kwargs, detector.camera_options
    train = list(instantiate(cfg.dataset).train)
    if args.max_clips:
        train = train[:args.max_clips]
    if len(train) < 2:
        ap.error(f"need at least 2 training clips for a leave-one-clip-out camera background, got {len(train)}")
    camera = CameraBackgrounds(train)
    print(f"# {len(train)} training clips, every {args.every}th frame; foreground % of the pixels per frame; "
          f"camera background leave-one-clip-out, options {options}")
    print("| clip | own | cam_bg (camera background, own noise) | cam_sd (own background, camera noise) | default | "
          "threshold above floor, own / camera % | shadow test's share of raw fg % | camera decision |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    start = time.perf_counter()
    for clip in train:
        own = BackgroundModel(**kwargs).fit(clip)
        model, reason, share = camera.model(clip, kwargs, **options)
        frames = [f for i, f in enumerate(clip.frames()) if i % args.every == 0]
        row = {"clip": clip.clip_id, "decision": reason, "disagreement": share, **foreground_parts(own, model, frames)}
        rows.append(row)
        decision = "camera" if reason == "camera" else "own"
        print(f"| {clip.clip_id} | " + " | ".join(f"{100 * row[c]:.2f}" for c in COMBINATIONS)
              + f" | {100 * row['raised_own']:.0f} / {100 * row['raised_camera']:.0f} | {100 * row['shadow_share']:.2f} "
              f"| {decision} ({100 * share:.1f}% disagree) |", flush=True)
    means = {c: float(np.mean([r[c] for r in rows])) for c in COMBINATIONS}
    print("| mean | " + " | ".join(f"{100 * means[c]:.2f}" for c in COMBINATIONS) + " | | | |")
    print(f"# {time.perf_counter() - start:.0f} s")
    return {"rows": rows, "means": means}


if __name__ == "__main__":
    main()
