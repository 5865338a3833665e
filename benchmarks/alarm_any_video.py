"""The calibrated alarm on real clips used as "any video" (infer.py's path), measured against their labels.

    python benchmarks/alarm_any_video.py --avenue ../shared/datasets/avenue_partial \
        --ped2 ../shared/datasets/ucsd_ped2 [--ped2-ckpt <train run>/scorer.ckpt] [--json out.json]

For every clip, exactly what ``infer.py input=<clip>`` does to decide the flagged frames: the scorer is fitted on
the first seconds of the clip (or loaded from ``--ped2-ckpt`` for the Ped2 clips), the alarm is calibrated
(:func:`tao_lab.alarm.fit_on_window`), the clip is scored chunk by chunk and the frames above the alarm threshold
are flagged; events are merged as in infer.py. Only then are the labels read, to measure: frame AUC, precision and
recall of the flagged frames, false-alarm rate on normal frames, flagged frames inside the fit window, anomalous
intervals found by an event. Nothing here changes a default. Labels are read only to measure, and to pick the
Ped2 test clips whose fit window holds no anomaly (``--ped2-clips``, by default those whose first anomalous frame
comes after the fit window: the "assumed normal" premise of the mode). NOT comparable with benchmark numbers.

Fit window: ``--fit-seconds`` (4 s), but at most 40% of a clip and at least 16 frames (the cross-fitting needs two
blocks of 8 frames), so the short Avenue clips (36 and 76 frames) can run at all.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def run_clip(cfg, clip, fit_frames: int) -> dict:
    from omegaconf import open_dict

    from tao_lab.events import find_events, frames_of
    from tao_lab.infer import chunk_bounds, chunk_clip, fit_or_load
    from tao_lab.metrics import frame_metrics
    from tao_lab.metrics.operating_point import operating_point
    from tao_lab.pipeline import Pipeline

    with open_dict(cfg):
        cfg.fit_seconds = fit_frames / clip.fps
    start = time.perf_counter()
    pipe = Pipeline(cfg)
    chunks = chunk_bounds(clip.num_frames, clip.fps, cfg.get("chunk_seconds"), clip.height, clip.width,
                          cfg.get("max_chunk_mb"))
    _, alarm, n_fit = fit_or_load(pipe, cfg, clip, chunks[0])
    scores = np.concatenate([np.asarray(pipe.scores(chunk_clip(clip, a, b)).frame_scores, np.float64)[: b - a]
                             for a, b in chunks])
    flags = alarm(scores)
    ecfg = cfg.events
    events = find_events(flags, scores, frames_of(ecfg.max_gap_s, clip.fps),
                         max(1, frames_of(ecfg.min_length_s, clip.fps)))
    # labels are read from here on, only to measure
    labels = np.asarray(clip.gt.frame_labels, bool)
    op = operating_point([flags], [labels], [[(e.start, e.end) for e in events]])
    auc = float(frame_metrics([scores], [labels])["auc_micro"]) if 0 < labels.sum() < len(labels) else float("nan")
    return {"clip": clip.clip_id, "frames": clip.num_frames, "anomalous": int(labels.sum()), "fit_frames": n_fit,
            "frame_auc": auc, "flagged": int(flags.sum()), "tp": int((flags & labels).sum()),
            "fp": int((flags & ~labels).sum()), "normal": int((~labels).sum()),
            "precision": op["precision"], "recall": op["recall"], "false_alarm_rate": op["false_alarm_rate"],
            "flagged_in_fit_window": int(flags[:n_fit].sum()),
            "intervals": int(op["anomalous_intervals"]), "intervals_found": int(op["intervals_found"]),
            "events": len(events), "false_events": int(op["false_events"]), "alarm_threshold": alarm.tau,
            "held_out_rate": alarm.calibration_rate, "seconds": round(time.perf_counter() - start, 1)}


def fit_frames_for(n: int, fps: float, fit_seconds: float) -> int:
    return int(max(16, min(round(fit_seconds * fps), 0.4 * n)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--avenue", default=None, help="the avenue_partial folder (all its test videos are used)")
    ap.add_argument("--ped2", default=None, help="the folder holding UCSDped2/")
    ap.add_argument("--ped2-clips", default=None, help="comma-separated Ped2 test clip ids (default: see above)")
    ap.add_argument("--ped2-ckpt", default=None, help="also run the Ped2 clips with this checkpoint")
    ap.add_argument("--fit-seconds", type=float, default=4.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/infer.yaml")
    args = ap.parse_args(argv)

    from tao_lab.config import compose_config
    from tao_lab.no_network import set_offline_env
    from tao_lab.pipeline import load_dataset

    set_offline_env()
    base = ["input=unused", "progress=false", *args.overrides]
    rows = []
    if args.avenue:
        # avenue_partial has no training videos: read the test split only
        data = load_dataset(compose_config(["progress=false", "dataset=avenue", f"paths.data_dir={args.avenue}",
                                            "+dataset.splits=[test]"], config_name="eval"))
        for clip in data.test:
            cfg = compose_config(base, config_name="infer")
            rows.append({"set": "avenue, fit on first seconds",
                         **run_clip(cfg, clip, fit_frames_for(clip.num_frames, clip.fps, args.fit_seconds))})
            print(json.dumps(rows[-1]), flush=True)
    if args.ped2:
        data = load_dataset(compose_config(["progress=false", "dataset=ucsd_ped2", f"paths.data_dir={args.ped2}"],
                                           config_name="eval"))
        wanted = set(args.ped2_clips.split(",")) if args.ped2_clips else None
        for clip in data.test:
            n_fit = fit_frames_for(clip.num_frames, clip.fps, args.fit_seconds)
            if wanted is not None and clip.clip_id not in wanted:
                continue
            if wanted is None and np.asarray(clip.gt.frame_labels, bool)[:n_fit].any():
                continue  # the mode's premise: the fit window is normal
            settings = [("ped2, fit on first seconds", [])]
            if args.ped2_ckpt:
                settings.append(("ped2, Ped2 checkpoint", [f"ckpt_path={args.ped2_ckpt}"]))
            for name, extra in settings:
                cfg = compose_config([*base, *extra], config_name="infer")
                rows.append({"set": name, **run_clip(cfg, clip, n_fit)})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| set | clip | frames (anomalous) | frame AUC | flagged | precision | recall | false-alarm rate "
          "| flagged in fit window | intervals found / all | events (false) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['clip']} | {r['frames']} ({r['anomalous']}) | {r['frame_auc']:.3f} | {r['flagged']} "
              f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['false_alarm_rate']:.3f} "
              f"| {r['flagged_in_fit_window']} of {r['fit_frames']} | {r['intervals_found']} / {r['intervals']} "
              f"| {r['events']} ({r['false_events']}) |")
    for name in dict.fromkeys(r["set"] for r in rows):
        sub = [r for r in rows if r["set"] == name]
        tp, fp = sum(r["tp"] for r in sub), sum(r["fp"] for r in sub)
        normal, anom = sum(r["normal"] for r in sub), sum(r["anomalous"] for r in sub)
        fit_flag, fit_n = sum(r["flagged_in_fit_window"] for r in sub), sum(r["fit_frames"] for r in sub)
        print(f"pooled {name}: precision {tp / max(tp + fp, 1):.3f} ({tp + fp} flagged), recall "
              f"{tp / max(anom, 1):.3f}, false-alarm rate on normal frames {fp / max(normal, 1):.3f}, flagged in "
              f"fit windows {fit_flag} of {fit_n} ({fit_flag / max(fit_n, 1):.3f}), intervals found "
              f"{sum(r['intervals_found'] for r in sub)} / {sum(r['intervals'] for r in sub)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
