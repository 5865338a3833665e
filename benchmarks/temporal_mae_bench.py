"""Scorer-level benchmark of the temporal MAE: fit time, scoring speed and frame AUC (micro/macro) from the
scorer's frame scores, supervised (clean training split) and unsupervised (self-paced refinement on unlabeled
clips), next to the attribute scorer. Detections, tracks and features come from the real pipeline stages (and
its stage cache), so only the scorer is timed.

    python benchmarks/temporal_mae_bench.py                                  # synthetic dataset
    python benchmarks/temporal_mae_bench.py --dataset ucsd_ped2 --data-dir ../shared/datasets/ucsd_ped2
    python benchmarks/temporal_mae_bench.py --runs temporal_mae:supervised --override scorer.window=8

Frame AUC here is the scorer's smoothed frame score against the frame labels (no threshold, prompts or masks):
the full pipeline numbers come from ``python eval.py``. The labels are read only to compute the AUCs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def compose(overrides: list[str]):
    from tao_lab.config import compose_config

    return compose_config(overrides)


def run_one(scorer: str, mode: str, args) -> dict:
    import numpy as np
    from omegaconf import open_dict

    from tao_lab.metrics import frame_metrics
    from tao_lab.pipeline import dataset_pipeline, load_dataset, training_clips

    overrides = [f"scorer={scorer}", f"training.mode={mode}", "progress=false", "logger=none",
                 f"paths.output_dir={args.out_dir}/{scorer}_{mode}", f"paths.cache_dir={args.cache_dir}",
                 "++trainer.logger=false", "++trainer.enable_checkpointing=true"]
    if args.dataset != "synthetic":
        overrides += [f"dataset={args.dataset}", f"paths.data_dir={args.data_dir}"]
    overrides += [o for o in args.override if not o.startswith("scorer.") or scorer == "temporal_mae"]
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.hydra = None
    dataset = load_dataset(cfg)
    pipe = dataset_pipeline(cfg, dataset)
    clips = training_clips(cfg, dataset)
    start = time.perf_counter()
    pipe.extract(clips, "fit")
    pipe.extract(dataset.test, "test")
    extract_s = time.perf_counter() - start
    items = [(pipe.tracks(c), pipe.features(c), c.num_frames) for c in clips]
    start = time.perf_counter()
    model = pipe.new_fitted_scorer(items)  # the pipeline's own fit: trainer and unlabeled mode as the class declares
    fit_s = time.perf_counter() - start
    scores, labels, n_frames = [], [], 0
    start = time.perf_counter()
    for clip in dataset.test:
        out = model.score_clip(pipe.tracks(clip), pipe.features(clip), clip.num_frames)
        scores.append(out.frame_scores)
        labels.append(np.asarray(clip.gt.frame_labels, bool))
        n_frames += clip.num_frames
    score_s = time.perf_counter() - start
    fm = frame_metrics(scores, labels)
    row = {"scorer": scorer, "mode": mode, "fit_clips": len(clips), "fit_s": round(fit_s, 1),
           "score_ms_per_frame": round(1000 * score_s / max(1, n_frames), 3), "extract_s": round(extract_s, 1),
           **{k: float(v) for k, v in fm.items() if np.isscalar(v)},
           **{f"fit/{k}": float(v) for k, v in model.fit_metrics.items()}}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="dataset config name (synthetic, ucsd_ped2, ...)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "ucsd_ped2"))
    p.add_argument("--runs", default="temporal_mae:supervised,temporal_mae:unsupervised,attribute:supervised",
                   help="comma-separated scorer:mode pairs")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the machine is shared: keep it small)")
    p.add_argument("--out-dir", default=str(ROOT / "outputs" / "bench_temporal_mae"))
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "stages"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from tao_lab.no_network import set_offline_env

    set_offline_env()
    rows = []
    for spec in args.runs.split(","):
        scorer, mode = spec.split(":")
        row = run_one(scorer, mode, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(args.out_dir) / f"bench_{args.dataset}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"\n{'scorer':14s} {'mode':13s} {'fit s':>7s} {'ms/frame':>9s} {'AUC micro':>10s} {'AUC macro':>10s}")
    for r in rows:
        print(f"{r['scorer']:14s} {r['mode']:13s} {r['fit_s']:7.1f} {r['score_ms_per_frame']:9.3f} "
              f"{r.get('auc_micro', float('nan')):10.4f} {r.get('auc_macro', float('nan')):10.4f}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
