"""Speed and quality of the default weight-free scoring path on the real UCSD Ped2 copy, in one run.

    python benchmarks/scoring_bench.py [--data-dir ../shared/datasets/ucsd_ped2] [--max-clips N] [overrides...]
    python benchmarks/scoring_bench.py --scorer attribute_speed attribute   # previous and current default scorer
    python benchmarks/scoring_bench.py --detector background yolo hybrid hybrid+class --stage-cache \
        --no-parallel paths.weights_dir=../shared/weights      # detectors side by side, one table at the end
    python benchmarks/scoring_bench.py --variants benchmarks/attribute_sets.yaml paths.weights_dir=../shared/weights
                                                               # any named override lists side by side

Builds detector / tracker / features / scorer / threshold from the project's Hydra configs (the defaults, or
``group=option`` / ``key=value`` overrides given after the options), runs them on every Ped2 training clip (to fit
the scorer and the threshold) and every test clip, and prints
- frames/s per stage (detect, track, features, score) on the test frames, and for the four together; with
  ``--masks`` also the prompt filter and the segmenter on the flagged objects (stages prompts, segment) and the six
  together: frames in, masks out (each clip's stages back to back, as a run does them, so with ``share_flows`` the
  features hand their optical flows to the segmenter; the parallel pass's masks must equal the sequential ones);
- frame AUC micro (sklearn roc_auc_score on all test frames pooled, labels from labels/frame_labels_ped2.npy)
  and macro (mean of per-clip AUCs, one-class clips skipped);
- object diagnostics that bound RBDC/TBDC: the fraction of GT anomalous regions (8-connected components of the
  GT masks, >= 20 px) overlapped with IoU >= 0.1 by any box / by a box flagged by the fitted threshold, and the
  flagged boxes per normal frame (false positives).
With ``--detector`` the whole measurement runs once per detector option (``background``, ``yolo``, ``hybrid``;
``<option>+class`` adds the scorer's class attribute) and a side-by-side table closes the output; ``--scorer``
does the same per scorer option, and ``--variants FILE`` per named list of overrides (a YAML mapping
``name: [override, ...]``, the format of ``python -m tao_lab.validation --variants``). ``--stage-cache``
reads detections from (and writes them to) the project's stage cache, as ``extract.py`` / ``eval.py`` do (hybrid
re-uses cached YOLO and background detections): detect frames/s then measure loading, so take the detectors'
speed from a run without it or from the cache-filling run's log. ``--no-parallel`` skips the parallel passes (the
clips spread over one worker per core, processes or threads as the pipeline's ``worker_kind``: the four scoring
stages, and with ``--masks`` all six stages).
Settings are never chosen here: this only measures the configured pipeline.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def train_segmenter(segmenter) -> None:
    """A segmenter that learns from the training clips (segmenter=learned) is trained before any timing (a one-off per
    camera, like fitting the scorer; printed apart from the stages' frames/s)."""
    from tao_lab.segmenter.learned import network_ready

    seconds = network_ready(segmenter)
    if seconds is not None:
        print(f"# segmenter's network ready in {seconds:.0f} s (trained on the training clips, or read from the stage "
              f"cache; not in the stages' times)", flush=True)


def build_stages(overrides: list[str], masks: bool = False):
    """The configured stages {group: object} and the config; the prompt filter and the segmenter only with
    ``masks`` (a segmenter may need weights that a scoring-only run does not)."""
    from hydra.utils import instantiate

    from tao_lab import frame_memo
    from tao_lab.config import compose_config

    cfg = compose_config(overrides, config_name="pipeline")
    frame_memo.configure(cfg)  # as a Pipeline does
    groups = ("detector", "tracker", "features", "scorer", "threshold") + (("prompt_filter", "segmenter") if masks
                                                                          else ())
    stages = {g: instantiate(cfg[g]) for g in groups}
    if hasattr(stages.get("segmenter"), "use_cache_dir"):  # segmenter=learned: a network trained before is read back
        stages["segmenter"].use_cache_dir(cfg.paths.get("cache_dir"))
    return stages, cfg


def gt_regions(mask: np.ndarray, min_area: int = 20) -> np.ndarray:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[1:, cv2.CC_STAT_AREA] >= min_area
    s = stats[1:][keep]
    return np.stack([s[:, 0], s[:, 1], s[:, 0] + s[:, 2], s[:, 1] + s[:, 3]], 1).astype(np.float32) if len(s) \
        else np.zeros((0, 4), np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-6)


def load_variants(path: str) -> dict[str, list[str]]:
    """{name: [override, ...]} from a YAML file; a clear error for anything else."""
    import yaml

    if not os.path.isfile(path):
        raise SystemExit(f"variants file not found: {path}")
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or not spec or not all(
            isinstance(v, list) and all(isinstance(o, str) for o in v) for v in spec.values()):
        raise SystemExit(f"{path}: expected a mapping name -> list of override strings")
    return {str(k): list(v) for k, v in spec.items()}


def use_camera(detector, cameras) -> None:
    """Hands the detector the camera backgrounds (``background.scope: camera``), as the pipeline does; a detector
    without the option is left alone."""
    if hasattr(detector, "use_camera"):
        detector.use_camera(cameras)


def prompts_of(prompt_filter, threshold, clip, scored):
    """The prompts of one scored clip: its objects above the threshold, through the prompt filter."""
    from tao_lab.types import Prompts

    flagged = scored.objects.take(np.asarray(threshold(scored.objects.score), bool))
    return prompt_filter(flagged, clip.num_frames) if len(flagged) else Prompts.empty()


def run_parallel(overrides: list[str], clips, scorer, workers: int, train_clips=(), threshold=None):
    """Wall-clock seconds and per-clip ObjectScores of detect -> track -> features -> score over ``clips``, with
    the clips spread over ``workers`` as the pipeline spreads them (``worker_kind``: forked processes or threads,
    tao_lab/clip_workers.py), each worker with its own stage instances (and one fresh set of camera backgrounds of
    ``train_clips``: its fit is timed, as a run pays it). With a fitted ``threshold`` each worker also runs the prompt
    filter and the segmenter on its clips (frames in, masks out)."""
    import threading

    from tao_lab import frame_memo
    from tao_lab.clip_workers import run_jobs
    from tao_lab.config import compose_config
    from tao_lab.detector.camera import CameraBackgrounds
    from tao_lab.pipeline import fit_camera_statistics, shares_flows, worker_kind

    masks = threshold is not None
    local = threading.local()
    cfg = compose_config(overrides, config_name="pipeline")
    kind = worker_kind(cfg)
    # built up front, not timed: a forked worker takes its copy of the one set, a thread one set of its own
    built = [build_stages(overrides, masks=masks)[0] for _ in range(workers if kind == "thread" else 1)]
    # each clip's stages run back to back here, so the features leave their flows to the segmenter (share_flows)
    leave_flows = masks and shares_flows(cfg)
    cameras = CameraBackgrounds(train_clips)  # fresh: the camera statistics are fitted (and timed) in this pass
    for stages in built:
        use_camera(stages["detector"], cameras)
        if hasattr(stages.get("segmenter"), "use_camera"):
            stages["segmenter"].use_camera(cameras)
        train_segmenter(stages.get("segmenter"))  # once per process (kept in memory), not timed

    def score(clip):
        if not hasattr(local, "stages"):
            local.stages = built.pop()
        det, trk, feats = (local.stages[k] for k in ("detector", "tracker", "features"))
        objects = trk.track(det.detect(clip), clip)
        scored = scorer.score_clip(objects, feats.extract(clip, objects, progress=False, leave_flows=leave_flows),
                                   clip.num_frames)
        if masks:
            seg = local.stages["segmenter"].segment(clip, prompts_of(local.stages["prompt_filter"], threshold, clip,
                                                                     scored), scored)
            return scored, mask_digest(seg)  # the masks themselves dropped at once (memory)
        return scored

    # the workers start without the frames this process decoded in the sequential pass, as a run's workers do
    frame_memo.FRAMES.clear()
    frame_memo.FOREGROUNDS.clear()
    start = time.perf_counter()
    library_threads = cfg.get("worker_library_threads", 1)
    # as Pipeline.extract / prefetch: forked workers get the camera statistics fitted on them first
    fit_camera_statistics(cameras, [built[0]["detector"], built[0].get("segmenter")], clips, workers, kind,
                          library_threads)
    out = run_jobs(score, clips, workers, kind, costs=[c.num_frames for c in clips], library_threads=library_threads)
    return time.perf_counter() - start, out, kind


def mask_digest(seg) -> str:
    """A hash of a segmentation's score maps and mask boxes: two runs gave the same masks iff equal."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(seg.score_maps).tobytes())
    for a in (seg.objects.frame, seg.objects.xyxy, seg.objects.track_id, seg.objects.score):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--max-clips", type=int, default=None, help="per split (quick runs)")
    ap.add_argument("--workers", type=int, default=None,
                    help="workers of the parallel run (default: one per core; processes or threads: worker_kind)")
    ap.add_argument("--detector", nargs="+", default=None,
                    help="detector options side by side (background yolo hybrid; '+class' adds the class attribute)")
    ap.add_argument("--scorer", nargs="+", default=None,
                    help="scorer options side by side (e.g. attribute_speed attribute: the previous default and the "
                         "scene-general one)")
    ap.add_argument("--variants", default=None,
                    help="YAML file {name: [override, ...]}: each named override list side by side")
    ap.add_argument("--stage-cache", action="store_true", help="detections through the project's stage cache")
    ap.add_argument("--no-parallel", action="store_true", help="skip the parallel pass")
    ap.add_argument("--masks", action="store_true",
                    help="also time the prompt filter and the segmenter (frames in, masks out)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. scorer.frame_sigma=5 tracker=none")
    args = ap.parse_args(argv)
    if sum(bool(x) for x in (args.detector, args.scorer, args.variants)) > 1:
        raise SystemExit("--detector, --scorer and --variants: compare one group at a time")
    if not args.detector and not args.scorer and not args.variants:
        return bench(args, list(args.overrides))
    options = {}
    for option in args.detector or []:
        name, _, extra = option.partition("+")
        over = [f"detector={name}", *args.overrides]
        if extra == "class":
            over.append("+scorer.attributes.class={model:class,calibration:in_sample,track_window:5}")
        elif extra:
            raise SystemExit(f"unknown detector suffix {extra!r} in {option!r}: only '+class' is known")
        options[option] = over
    for option in args.scorer or []:
        options[option] = [f"scorer={option}", *args.overrides]
    if args.variants:
        options.update({name: [*over, *args.overrides] for name, over in load_variants(args.variants).items()})
    rows = {}
    for option, over in options.items():
        print(f"\n===== {option}: {' '.join(over)}")
        rows[option] = bench(args, over)
    keys = ["frame_auc_micro", "frame_auc_macro", "region_recall_any", "region_recall_flagged",
            "flagged_per_normal_frame", "fps_total", "fps_masks", "fps_parallel", "fps_masks_parallel", "train_objects",
            "test_tracks"]
    print("\n" + " | ".join(["detector" if args.detector else "scorer" if args.scorer else "variant", *keys]))
    for option, r in rows.items():
        print(" | ".join([option, *(f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "-"))
                                    for k in keys)]))
    for option, r in rows.items():
        print(f"{option}: frames/s per stage " + ", ".join(f"{k} {v:.1f}" for k, v in r["fps"].items()))
    return rows


def bench(args, overrides: list[str]) -> dict:

    from sklearn.metrics import roc_auc_score

    from tao_lab.dataset import load_ucsd

    stages, cfg = build_stages(overrides, masks=args.masks)
    det, trk, feats, scorer, threshold = (stages[k] for k in ("detector", "tracker", "features", "scorer",
                                                              "threshold"))
    data = load_ucsd(args.data_dir, "ped2", max_clips=args.max_clips)
    print(f"Ped2: {len(data.train)} train clips ({sum(c.num_frames for c in data.train)} frames), "
          f"{len(data.test)} test clips ({sum(c.num_frames for c in data.test)} frames)")
    for g in ("detector", "tracker", "features", "scorer", "threshold"):
        print(f"  {g}: {cfg[g]['_target_']}")
    from tao_lab.detector.camera import CameraBackgrounds

    cameras = CameraBackgrounds(data.train)
    use_camera(det, cameras)  # scope=camera: fitted on the training clips (in the detect times)
    segmenter = stages.get("segmenter")
    if hasattr(segmenter, "use_camera"):
        segmenter.use_camera(cameras)  # the same fitted backgrounds (the segmenter's scope=camera)
    train_segmenter(segmenter)

    cpu: dict = defaultdict(float)  # process CPU seconds per stage (all threads): contention-free cost

    def timed(stage, times, fn, *a):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*a)
        times[stage] += time.perf_counter() - w
        cpu[stage] += time.process_time() - c
        return out

    if args.stage_cache:
        from tao_lab.pipeline import dataset_pipeline
        from tao_lab.scorer.class_rarity import check_detector_has_classes

        check_detector_has_classes(cfg.scorer, cfg.detector)
        cached = dataset_pipeline(cfg, data)  # background.scope=camera: the keys name the training clips
        detect = cached.detections  # cached per clip by detector config (hybrid: per part)
    else:
        detect = det.detect

    def run(clips, times, leave_flows=False):
        out = []
        for clip in clips:
            d = timed("detect", times, detect, clip)
            o = timed("track", times, trk.track, d, clip)
            f = timed("features", times, lambda c, x: feats.extract(c, x, progress=False, leave_flows=leave_flows),
                      clip, o)
            out.append((clip, o, f))
        return out

    train_times: dict = defaultdict(float)
    train = run(data.train, train_times)
    cpu.clear()
    t0 = time.perf_counter()
    scorer.fit_clips([(o, f, c.num_frames) for c, o, f in train])
    threshold.fit(scorer.train_object_scores())
    fit_s = time.perf_counter() - t0
    n_train = sum(c.num_frames for c in data.train)
    print(f"train: extraction {n_train / sum(train_times.values()):.1f} frames/s; scorer+threshold fit {fit_s:.2f} s; "
          f"{len(scorer.train_object_scores())} training objects; tau = {threshold.tau:.4f}")

    from tao_lab.pipeline import shares_flows

    leave_flows = args.masks and shares_flows(cfg)
    times: dict = defaultdict(float)
    test, scored = [], []
    digests: list[str] = []  # per test clip: the sequential masks (score maps dropped at once: memory)
    for clip in data.test:  # a clip's stages back to back, as a run does them: its features' flows go to its masks
        _, o, f = run([clip], times, leave_flows=leave_flows)[0]
        test.append((clip, o, f))
        scored.append(timed("score", times, scorer.score_clip, o, f, clip.num_frames))
        if args.masks:  # frames in, masks out: the objects above the threshold become prompts, then masks
            prompts = timed("prompts", times, prompts_of, stages["prompt_filter"], threshold, clip, scored[-1])
            digests.append(mask_digest(timed("segment", times, segmenter.segment, clip, prompts, scored[-1])))
    n = sum(c.num_frames for c in data.test)
    total = sum(times[k] for k in ("detect", "track", "features", "score"))
    mask_s = sum(times.values()) if args.masks else None
    print("test frames/s per stage (wall clock): " + ", ".join(f"{k} {n / v:.1f}" for k, v in times.items())
          + f"; all four {n / total:.1f} ({total:.1f} s for {n} frames)"
          + (f"; frames -> masks, all six {n / mask_s:.1f} ({mask_s:.1f} s)" if mask_s else ""))
    total_cpu = sum(cpu[k] for k in ("detect", "track", "features", "score"))
    print("test frames per CPU-second per stage (process time of all threads; the machine is shared): "
          + ", ".join(f"{k} {n / max(v, 1e-9):.1f}" for k, v in cpu.items()) + f"; all four {n / total_cpu:.1f}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    # the same four stages, clips spread over one worker per core (each with its own detector, tracker and feature
    # set); the scores must be identical to the sequential run
    results = {"fps": {k: n / v for k, v in times.items()}, "fps_total": n / total,
               "fps_masks": n / mask_s if mask_s else None,
               "fps_cpu": {k: n / max(v, 1e-9) for k, v in cpu.items()}, "fps_cpu_total": n / total_cpu,
               "train_objects": int(len(scorer.train_object_scores())),
               "test_tracks": int(sum(len(np.unique(o.track_id)) for _, o, _ in test))}
    if not args.no_parallel:
        workers = max(1, min(args.workers or os.cpu_count() or 1, len(data.test)))
        parallel_s, parallel_scores, kind = run_parallel(overrides, data.test, scorer, workers, data.train)
        kind = "processes" if kind == "process" else "threads"
        for a, b in zip(scored, parallel_scores):
            if not np.array_equal(a.frame_scores, b.frame_scores):
                raise SystemExit("parallel run gave different scores than the sequential run")
        print(f"test frames/s, all four stages, clips on {workers} {kind} (wall clock): {n / parallel_s:.1f} "
              f"({parallel_s:.1f} s for {n} frames; scores identical to the sequential run)")
        results.update(fps_parallel=n / parallel_s, parallel_workers=workers)
        if args.masks:  # the same with the prompt filter and the segmenter: frames in, masks out, both cores
            masks_s, out, _ = run_parallel(overrides, data.test, scorer, workers, data.train, threshold)
            if [d for _, d in out] != digests:
                raise SystemExit("parallel run gave different masks than the sequential run")
            print(f"test frames/s, all six stages, clips on {workers} {kind} (wall clock): {n / masks_s:.1f} "
                  f"({masks_s:.1f} s for {n} frames; masks identical to the sequential run)")
            results.update(fps_masks_parallel=n / masks_s)
    scores = np.concatenate([s.frame_scores for s in scored])
    labels_file = os.path.join(args.data_dir, "labels", "frame_labels_ped2.npy")
    if args.max_clips is None and os.path.isfile(labels_file):
        labels = np.load(labels_file).reshape(-1).astype(bool)
    else:  # a subset: labels from the .m file via the reader (they agree with the npy on every frame)
        labels = np.concatenate([c.gt.frame_labels for c in data.test]).astype(bool)
    if len(labels) != len(scores):
        raise SystemExit(f"{len(labels)} labels but {len(scores)} scored frames")
    micro = roc_auc_score(labels, scores)
    per_clip, start = [], 0
    for c in data.test:
        lab = labels[start:start + c.num_frames]
        if 0 < lab.sum() < len(lab):
            per_clip.append(roc_auc_score(lab, scores[start:start + c.num_frames]))
        start += c.num_frames
    macro = float(np.mean(per_clip)) if per_clip else float("nan")
    print(f"test/frame_auc_micro {micro:.4f}   test/frame_auc_macro {macro:.4f} ({len(per_clip)} clips)")
    results.update(frame_auc_micro=micro, frame_auc_macro=macro)

    # object diagnostics (bounds on RBDC/TBDC; not the metrics themselves)
    n_regions = hit_any = hit_flagged = 0
    flagged_normal = normal_frames = 0
    for (clip, _, _), s in zip(test, scored):
        flags = threshold(s.objects.score)
        for i in range(clip.num_frames):
            rows = s.objects.frame == i
            boxes, fl = s.objects.xyxy[rows], flags[rows]
            regions = gt_regions(clip.gt.mask(i)) if clip.gt is not None and clip.gt.mask is not None else []
            if len(regions) == 0:
                normal_frames += 1
                flagged_normal += int(fl.sum())
                continue
            n_regions += len(regions)
            if len(boxes):
                m = iou_matrix(regions, boxes) >= 0.1
                hit_any += int(m.any(1).sum())
                hit_flagged += int((m & fl[None, :]).any(1).sum())
    if n_regions:
        print(f"objects: {n_regions} GT regions; overlapped (IoU>=0.1) by any box {hit_any / n_regions:.3f}, "
              f"by a flagged box {hit_flagged / n_regions:.3f}; flagged boxes per normal frame "
              f"{flagged_normal / max(normal_frames, 1):.3f} ({normal_frames} normal frames)")
        results.update(region_recall_any=hit_any / n_regions, region_recall_flagged=hit_flagged / n_regions,
                       flagged_per_normal_frame=flagged_normal / max(normal_frames, 1))
    return results


if __name__ == "__main__":
    main()
