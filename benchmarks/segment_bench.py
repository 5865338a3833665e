"""Segmenters and prompt filters on the real UCSD Ped2 copy, and seconds per frame of every segmenter.

    python benchmarks/segment_bench.py                                   # Ped2 at ../shared/datasets/ucsd_ped2
    python benchmarks/segment_bench.py --max-clips 3 --sam2-sizes 64     # quicker
    python benchmarks/segment_bench.py --timing-only                     # no upstream stages: timings only
    python benchmarks/segment_bench.py scorer=attribute threshold=fixed  # extra args = Hydra overrides

Quality table: the upstream stages of the configured pipeline (detector, tracker, features, scorer fitted on the
Ped2 training clips, threshold fitted on training scores only) give every test clip's object scores once (stage
cache); then for prompt_filter in {robust, none} x segmenter in {classical, boxes} the clips are prompted,
segmented and scored by tao_lab.evaluation.evaluate_clips: standard pixel metrics (pooled, exact), TAO-protocol
pixel metrics (per-frame average; "aupro_tao" is TAO's PR-AUC) and RBDC/TBDC. Label-free: no GT gating.

Timing table: wall seconds per clip frame of ``segment()`` on this machine (the weight-free segmenters on the
Ped2 test clips with the prompts of the robust filter -- with ``--timing-only``: GT-derived boxes as prompts every
5th frame; sam2 tiny with random weights -- the same compute as real
weights -- on the first ``--sam2-frames`` frames of Test001, video and image mode, at each ``--sam2-sizes``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

import numpy as np  # noqa: E402

FILTERS = ("robust", "none")
SEGMENTERS = ("classical", "boxes")
COLUMNS = [("pixel_auroc", "AUROC"), ("pixel_ap", "AP"), ("pixel_aupro@0.3", "AUPRO@0.3"), ("pixel_f1_max", "F1max"),
           ("pixel_auroc_tao", "AUROC_tao"), ("pixel_ap_tao", "AP_tao"), ("pixel_aupro_tao", "AUPRO_tao"),
           ("pixel_f1_tao", "F1_tao"), ("object_rbdc", "RBDC"), ("object_tbdc", "TBDC")]


def compose(overrides: list[str]):
    from tao_lab.config import compose_config

    return compose_config(["progress=false", *overrides])


def fmt(v) -> str:
    return "   -  " if v is None or not np.isfinite(v) else f"{100 * v:6.2f}"


def quality(args, extra: list[str]):
    from tao_lab.evaluation import evaluate_clips
    from tao_lab.pipeline import dataset_pipeline, load_dataset

    base = ["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", *extra]  # gt_gating is off by default
    if args.max_clips:
        base.append(f"dataset.max_clips={args.max_clips}")
    rows, timing, dataset = [], {}, None
    for fname in FILTERS:
        for sname in SEGMENTERS:
            cfg = compose([*base, f"prompt_filter={fname}", f"segmenter={sname}"])
            if dataset is None:
                dataset = load_dataset(cfg)
                print(f"# Ped2: {len(dataset.train)} train clips, {len(dataset.test)} test clips "
                      f"({sum(c.num_frames for c in dataset.test)} test frames)", flush=True)
            pipe = dataset_pipeline(cfg, dataset)
            t0 = time.perf_counter()
            pipe.fit_scorer(dataset.train)
            result = evaluate_clips(pipe, dataset.test, cfg)
            m = {k.split("/", 1)[1]: v for k, v in result.metrics.items()}
            rows.append((fname, sname, m))
            print(f"# done prompt_filter={fname} segmenter={sname} in {time.perf_counter() - t0:.0f} s "
                  f"(tau={pipe.threshold.tau:.4f})", flush=True)
            if fname == "robust":  # time segment() itself, uncached, on the same inputs
                seg, frames, spent = pipe.segmenter, 0, 0.0
                for clip in dataset.test:
                    scores = pipe.scores(clip)
                    prompts = pipe.prompts(clip, scores)
                    t1 = time.perf_counter()
                    seg.segment(clip, prompts, scores)
                    spent += time.perf_counter() - t1
                    frames += clip.num_frames
                timing[sname] = (spent / frames, f"Ped2 test, {frames} frames, robust prompts")
    return rows, timing, dataset


def weight_free_timing(args) -> dict:
    """Without upstream stages: time the weight-free segmenters on the Ped2 test clips prompted with GT-derived
    object boxes on every 5th frame (the compute does not depend on where the boxes come from)."""
    from tao_lab.dataset import load_ucsd
    from tao_lab.metrics import tracks_from_masks
    from tao_lab.prompt_filter import PassThroughPromptFilter
    from tao_lab.segmenter import FilledBoxSegmenter, ForegroundSegmenter
    from tao_lab.types import ObjectScores

    ds = load_ucsd(args.data_dir, subset="ped2", max_clips=args.max_clips, splits=("test",))
    inputs = []
    for clip in ds.test:
        tracks = tracks_from_masks(clip.gt.masks())
        inputs.append((clip, PassThroughPromptFilter()(tracks.take(tracks.frame % 5 == 0), clip.num_frames),
                       ObjectScores(tracks, np.zeros(clip.num_frames, np.float32))))
    out = {}
    for name, seg in (("classical", ForegroundSegmenter()), ("boxes", FilledBoxSegmenter())):
        spent, frames = 0.0, 0
        for clip, prompts, scores in inputs:
            t0 = time.perf_counter()
            seg.segment(clip, prompts, scores)
            spent += time.perf_counter() - t0
            frames += clip.num_frames
        out[name] = (spent / frames, f"Ped2 test, {frames} frames, GT-derived boxes as prompts every 5th frame")
    return out


def sam2_timing(args, clip, prompts) -> dict:
    from tao_lab.segmenter import Sam2Segmenter

    out = {}
    for size in args.sam2_sizes:
        for mode in ("video", "image"):
            seg = Sam2Segmenter(mode=mode, backbone="tiny", random_init=True, image_size=size, chunk_size=64,
                                num_threads=args.threads)
            seg.build_model()
            t0 = time.perf_counter()
            processed = sum(1 for _ in seg.iter_logits(clip, prompts))
            spent = time.perf_counter() - t0
            out[f"sam2 tiny {mode} @{size}"] = (spent / clip.num_frames,
                                                f"{clip.num_frames} frames, {processed} segmented, "
                                                f"{len(np.unique(prompts.obj_id))} objects, random weights")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "ucsd_ped2"))
    ap.add_argument("--max-clips", type=int, default=None, help="at most this many clips per split")
    ap.add_argument("--sam2-sizes", default="64,512", help="sam2 image sizes to time (comma separated)")
    ap.add_argument("--sam2-frames", type=int, default=20, help="frames of Test001 used to time sam2")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for sam2 (1 is far faster than 2 on a machine shared with other jobs)")
    ap.add_argument("--timing-only", action="store_true", help="skip the quality table")
    args, extra = ap.parse_known_args()
    args.sam2_sizes = [int(s) for s in args.sam2_sizes.split(",") if s]

    from tao_lab.dataset import load_ucsd
    from tao_lab.types import Prompts

    timing: dict = {}
    if args.timing_only:
        timing.update(weight_free_timing(args))
    else:
        rows, timing, _ = quality(args, extra)
        print("\n## Ped2 test, label-free (no GT gating); pixel metrics in % (standard | TAO protocol), RBDC/TBDC %")
        head = "| prompt_filter | segmenter | " + " | ".join(c for _, c in COLUMNS) + " |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for fname, sname, m in rows:
            print(f"| {fname} | {sname} | " + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS) + " |")

    # sam2 timing on the first frames of Test001: two objects, box + point prompts every 5 frames (the image
    # content does not change the compute)
    ped2 = load_ucsd(args.data_dir, subset="ped2", max_clips=1, max_frames=args.sam2_frames, splits=("test",))
    clip = ped2.test[0]
    rows = [(t, 1, [100, 60, 140, 140]) for t in range(0, clip.num_frames, 5)] + \
           [(t, 2, [220, 80, 260, 170]) for t in range(2, clip.num_frames, 5)]
    boxes = np.array([r[2] for r in rows], np.float32)
    prompts = Prompts([r[0] for r in rows], [r[1] for r in rows], boxes,
                      np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1),
                      np.ones(len(rows)))
    timing.update(sam2_timing(args, clip, prompts))

    print("\n## Seconds per frame of Segmenter.segment on this CPU "
          f"({os.cpu_count()} cores, shared; torch threads {args.threads})")
    print("| segmenter | s/frame | workload |")
    print("|---|---|---|")
    for name, (spf, what) in timing.items():
        print(f"| {name} | {spf:.4f} | {what} |")


if __name__ == "__main__":
    main()
