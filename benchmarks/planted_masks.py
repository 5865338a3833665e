"""Mask quality on TRAINING clips: segmenters against the exact pixels of planted objects (no test label).

The ORACLE rows of ``benchmarks/mask_ceiling.py`` measure the segmenters with ground-truth boxes of the TEST set:
a diagnostic that must not choose anything. This benchmark asks the same question on the training side, so mask
settings can be chosen by a rule: Ped2's training clips, each with one planted object of every set of the
cross-scene validation (a walker cut from another training clip, or a textured box, pasted with its alpha at an
abnormal speed, direction, place or dwell; tao_lab.validation.behaviours). The pasted pixels (alpha >= 0.5,
``PlantedClip.object_mask``) are the ground truth, exact by construction; ``--gt hull`` takes their convex hull
instead, the way annotators draw masks (Ped2's are polygons around the whole object).

Every segmenter variant is prompted with the planted object's own box (the box around its pasted pixels) on every
frame the object is visible, score 1, no carrying -- a prompt oracle of the plant, not of any test label -- and its
masks are compared with the pasted pixels on those frames. ``background.scope=camera`` variants fit the camera
background on the training clips, each clip (and its plants) left out of its own (tao_lab.detector.camera).

Columns per (variant, set), pooled over the set's planted clips: mask IoU (mean over frames), pooled IoU, mask
precision and recall (pixels pooled), boundary F1 at 2 px (tao_lab.metrics.masks), pixel AP and best-threshold F1
(standard protocol, exact; tao_lab.metrics.pixel), the frames measured, and ``segment()`` seconds per frame. The
figure of a variant is the mean over sets of mean(IoU, F1max, AP); "in motion" leaves out the loiter set.

A segmenter that learns from the training clips (``segmenter=learned``) is trained ``--folds`` times (default 2),
copy k on the clips outside fold k (clip i is in fold i mod folds), and each planted clip is segmented by the copy
whose training never saw its base clip; training time is reported apart from ``segment()`` seconds per frame.

    .venv/bin/python benchmarks/planted_masks.py --data-dir ../shared/datasets/ucsd_ped2 \
        --variants benchmarks/validation/masks_round1.yaml --json masks_round1.json
    .venv/bin/python benchmarks/planted_masks.py --num-clips 4 --sets fast,loiter   # quicker
    .venv/bin/python benchmarks/planted_masks.py ... --figure masks.png   # one example frame per set and variant
Extra arguments are Hydra overrides of the pipeline config, applied to every variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (key, column header) of the per-set table
COLUMNS = [("mask_iou", "IoU"), ("mask_iou_pooled", "IoU pooled"), ("mask_precision", "mask P"),
           ("mask_recall", "mask R"), ("boundary_f1", "BF1"), ("pixel_ap", "AP"), ("pixel_f1_max", "F1max")]
#: the three numbers a variant's figure averages
FIGURE_KEYS = ("mask_iou", "pixel_f1_max", "pixel_ap")


def plant_prompts(clip, min_area: int = 20, gt: str = "pasted"):
    """(prompts, {frame: GT mask}) of a planted clip: on every frame where the planted object covers at least
    ``min_area`` pixels, one box prompt around those pixels (obj_id 1, score 1) and its ground truth (``gt``: the
    pixels themselves, or their convex hull, ``PlantedClip.object_mask``; the box is the same)."""
    from tao_lab.types import Prompts
    from tao_lab.validation.planted import GT_SHAPES, convex_hull_mask

    if gt not in GT_SHAPES:
        raise ValueError(f"ground truth must be one of {GT_SHAPES}, got {gt!r}")
    masks, boxes, frames = {}, [], []
    for i in np.flatnonzero(clip.present):
        mask = clip.object_mask(int(i))
        if int(mask.sum()) < min_area:
            continue
        ys, xs = np.nonzero(mask)
        masks[int(i)] = mask if gt == "pasted" else convex_hull_mask(mask)
        frames.append(int(i))
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    n = len(frames)
    return Prompts.from_boxes(frames, np.ones(n, np.int64), boxes, np.ones(n, np.float32)), masks


def measure(segmenter, planted: list, boundary_tol: float = 2.0, example: Optional[dict] = None,
            gt: str = "pasted") -> dict:
    """Mask and pixel metrics of ``segmenter`` on the planted clips of one set (see the module docstring).
    ``example``: filled with the first measured clip's middle prompted frame (``frame``, ``gt``, ``mask``).
    ``gt``: the planted objects' ground truth, "pasted" or "hull" (``plant_prompts``)."""
    from tao_lab.metrics import MaskAgreement, PixelMetrics

    pixel, agreement = PixelMetrics(), MaskAgreement(boundary_tol)
    seconds, frames, seg_frames = 0.0, 0, 0
    for clip in planted:
        if clip is None:
            continue
        prompts, masks = plant_prompts(clip, gt=gt)
        if not masks:
            continue
        start = time.perf_counter()
        seg = (segmenter(clip) if callable(segmenter) else segmenter).segment(clip, prompts, None)
        seconds += time.perf_counter() - start
        seg_frames += clip.num_frames
        binary = seg.instance_maps > 0 if seg.instance_maps is not None else seg.score_maps > 0
        for i, truth in masks.items():
            pixel.update(seg.score_maps[i], truth)
            agreement.update(binary[i], truth)
            frames += 1
        if example is not None and not example:
            i = sorted(masks)[len(masks) // 2]
            example.update(frame=clip.frame(i), gt=masks[i], mask=binary[i], title=f"{clip.base.clip_id} frame {i}")
    if frames == 0:
        return {"frames": 0}
    out = {k: float(v) for k, v in agreement.compute().items()}
    px = pixel.compute(fpr_limit=0.3)
    out.update({"pixel_ap": float(px["ap"]), "pixel_f1_max": float(px["f1_max"]), "frames": frames,
                "segment_s_per_frame": seconds / max(seg_frames, 1)})
    return out


def example_grid(examples: dict, path: str, zoom: int = 2) -> None:
    """One PNG: a row per planted set, a column per variant; each cell the set's example frame cropped around the
    object, the pasted pixels' outline in green and the variant's mask in red."""
    import cv2

    cells = []
    for s, row in examples.items():
        cols = []
        for name, ex in row.items():
            if not ex:
                cols.append(None)
                continue
            frame = ex["frame"] if ex["frame"].ndim == 3 else cv2.cvtColor(ex["frame"], cv2.COLOR_GRAY2RGB)
            out = frame.copy()
            out[ex["mask"]] = (0.45 * out[ex["mask"]] + [140, 0, 0]).astype(np.uint8)
            contours, _ = cv2.findContours(ex["gt"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
            ys, xs = np.nonzero(ex["gt"])
            pad = max(16, int(0.6 * (ys.max() - ys.min())))
            y1, y2 = max(ys.min() - pad, 0), min(ys.max() + pad, out.shape[0])
            x1, x2 = max(xs.min() - pad, 0), min(xs.max() + pad, out.shape[1])
            crop = cv2.resize(out[y1:y2, x1:x2], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
            cv2.putText(crop, f"{s} | {name}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
            cols.append(crop)
        cells.append(cols)
    size = max((c.shape[0] for row in cells for c in row if c is not None), default=1), \
        max((c.shape[1] for row in cells for c in row if c is not None), default=1)
    canvas = np.zeros((size[0] * len(cells), size[1] * max(len(r) for r in cells), 3), np.uint8)
    for r, row in enumerate(cells):
        for c, img in enumerate(row):
            if img is not None:
                canvas[r * size[0]:r * size[0] + img.shape[0], c * size[1]:c * size[1] + img.shape[1]] = img
    cv2.imwrite(path, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def fold_segmenters(segmenter, clips: list, folds: int):
    """A function clip -> segmenter for a segmenter that learns from training clips: ``folds`` copies, copy k
    trained on the clips outside fold k (clip i is in fold i mod ``folds``), and a planted clip is segmented by the
    copy that never saw its base clip (the planted objects themselves are never in any training crop)."""
    import copy

    from tao_lab.detector.camera import derived_from

    if folds < 2 or len(clips) < folds:
        raise ValueError(f"--folds must be >= 2 and at most the number of clips ({len(clips)}), got {folds}")
    copies = []
    for k in range(folds):
        seg = copy.copy(segmenter)  # shares the camera backgrounds; its own network
        seg.fit([c for i, c in enumerate(clips) if i % folds != k])
        copies.append(seg)

    def for_clip(clip):
        for i, c in enumerate(clips):
            if derived_from(clip.source, c.source):
                return copies[i % folds]
        raise ValueError(f"{clip.clip_id}: not made from any of the benchmark's training clips")

    return for_clip


def figure(per_set: dict, sets) -> float:
    """Mean over ``sets`` (those measured) of mean(IoU, F1max, AP), in %."""
    vals = [np.mean([per_set[s][k] for k in FIGURE_KEYS]) for s in sets if per_set[s].get("frames")]
    return 100 * float(np.mean(vals)) if vals else float("nan")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "ucsd_ped2"),
                    help="folder holding UCSDped2/ (its training clips only are read)")
    ap.add_argument("--num-clips", type=int, default=16, help="Ped2 training clips (default: all 16)")
    ap.add_argument("--num-frames", type=int, default=120, help="frames per clip (as the validation: 120)")
    ap.add_argument("--sets", default=None, help="planted sets, comma separated (default: every set)")
    ap.add_argument("--variants", default=None,
                    help="YAML file {name: [overrides]} of segmenter variants (default: the configured segmenter)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boundary-tol", type=float, default=2.0, help="boundary F1 tolerance in px (default 2)")
    ap.add_argument("--gt", choices=("pasted", "hull"), default="pasted",
                    help="ground truth: the pasted pixels (exact, default) or their convex hull (drawn the way "
                         "annotators draw masks: polygons around the whole object)")
    ap.add_argument("--folds", type=int, default=2,
                    help="a segmenter that learns from the training clips (segmenter=learned) is trained this many "
                         "times, each copy on the clips outside one fold, and segments the planted clips of that fold "
                         "(default 2)")
    ap.add_argument("--json", default=None, help="also write every number to this JSON file")
    ap.add_argument("--figure", default=None,
                    help="also write a PNG: per set (rows) and variant (columns) one example frame around the object, "
                         "the pasted pixels outlined in green, the variant's mask in red")
    from tao_lab.config import parse_with_overrides

    args, extra = parse_with_overrides(ap, argv, "segmenter.background.scope=clip")
    if not Path(args.data_dir).is_dir():
        ap.error(f"Ped2 folder not found: {args.data_dir}; pass --data-dir ../shared/datasets/ucsd_ped2")

    import yaml

    from tao_lab.config import compose_config
    from tao_lab.detector.camera import CameraBackgrounds
    from tao_lab.pipeline import instantiate
    from tao_lab.segmenter.learned import learns_from_clips
    from tao_lab.validation.behaviours import BEHAVIOURS
    from tao_lab.validation.cross_scene import build_scenes

    variants = {"default": []}
    if args.variants:
        variants = yaml.safe_load(Path(args.variants).read_text()) or {}
        if not variants or not all(isinstance(v, list) for v in variants.values()):
            ap.error(f"{args.variants}: expected a mapping {{name: [overrides]}}")
    sets = args.sets.split(",") if args.sets else list(BEHAVIOURS)
    unknown = [s for s in sets if s not in BEHAVIOURS]
    if unknown or not sets:
        ap.error(f"--sets: unknown planted set(s) {unknown}; known: {','.join(BEHAVIOURS)}")
    base = ["progress=false", *extra]
    cfg = compose_config(base)
    start = time.perf_counter()
    scene = build_scenes(cfg, ["ped2"], sets, args.data_dir, args.num_clips, args.num_frames, args.seed,
                         show_progress=False)[0]
    print(f"# ped2: {len(scene.train)} training clips x {args.num_frames} frames, sets {', '.join(sets)}; plants "
          f"built in {time.perf_counter() - start:.0f} s ({os.cpu_count()} cores; s/frame is noisy on a shared "
          f"machine)", flush=True)
    camera = CameraBackgrounds(scene.train)
    examples: dict = {s: {} for s in sets}  # set -> variant -> example frame (for --figure)
    out: dict = {"overrides": extra, "sets": sets, "num_clips": len(scene.train), "num_frames": args.num_frames,
                 "gt": args.gt, "variants": {}}
    for name, overrides in variants.items():
        segmenter = instantiate(compose_config([*base, *overrides]).segmenter)
        if hasattr(segmenter, "use_camera"):
            segmenter.use_camera(camera)
            if getattr(segmenter, "scope", "clip") == "camera":  # once per run: kept out of s/frame
                camera.fit_statistics(segmenter.background)
        train_s = 0.0
        if learns_from_clips(segmenter):  # kept out of s/frame too; one network per fold of clips
            start = time.perf_counter()
            segmenter = fold_segmenters(segmenter, scene.train, args.folds)
            train_s = time.perf_counter() - start
            print(f"# {name}: {args.folds} networks trained in {train_s:.0f} s", flush=True)
        start = time.perf_counter()
        per_set = {s: measure(segmenter, scene.planted[s], args.boundary_tol, examples[s].setdefault(name, {}),
                              args.gt) for s in sets}
        moving = [s for s in sets if s != "loiter"]
        out["variants"][name] = {"overrides": overrides, "sets": per_set, "figure": figure(per_set, sets),
                                 "figure_in_motion": figure(per_set, moving), "seconds": time.perf_counter() - start,
                                 "training_seconds": train_s}
        print(f"\n## {name} {' '.join(overrides)}  (% ; {out['variants'][name]['seconds']:.0f} s)")
        print("| set | frames | " + " | ".join(h for _, h in COLUMNS) + " | s/frame |")
        print("|---|---|" + "---|" * len(COLUMNS) + "---|")
        for s, m in per_set.items():
            if not m.get("frames"):
                print(f"| {s} | 0 |" + " – |" * len(COLUMNS) + " – |")
                continue
            print(f"| {s} | {m['frames']} | " + " | ".join(f"{100 * m[k]:.2f}" for k, _ in COLUMNS)
                  + f" | {m['segment_s_per_frame']:.4f} |", flush=True)
    print("\n## figure: mean over sets of mean(IoU, F1max, AP), %")
    print("| variant | figure | in motion (no loiter) |")
    print("|---|---|---|")
    for name, v in out["variants"].items():
        print(f"| {name} | {v['figure']:.2f} | {v['figure_in_motion']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"\n# wrote {args.json}")
    if args.figure:
        example_grid(examples, args.figure)
        print(f"# wrote {args.figure}")
    return out


if __name__ == "__main__":
    main()
