"""Mask ceiling: what limits the pixel masks -- the segmenter, the prompts or the object scores?

    python benchmarks/mask_ceiling.py                          # Ped2 at ../shared/datasets/ucsd_ped2
    python benchmarks/mask_ceiling.py --max-clips 3            # quicker
    python benchmarks/mask_ceiling.py --json ceiling.json      # also every number, keyed, as JSON
    python benchmarks/mask_ceiling.py scorer=attribute_speed   # extra args = Hydra overrides of the pipeline
    python benchmarks/mask_ceiling.py dataset=synthetic        # any dataset with pixel masks
    python benchmarks/mask_ceiling.py --background-scopes clip,camera   # classical: per-clip vs camera background

ORACLE ROWS READ THE TEST LABELS. They are a diagnostic of where the error comes from, never a way to choose a
setting: a default chosen on them would be chosen on the test set.

The upstream stages of the configured pipeline (detector, tracker, features, scorer fitted on the training clips,
object threshold fitted on training scores only; all from the stage cache when warm) give every test clip's
scored objects once. Then, for each weight-free segmenter (``--segmenters``, default learned, classical and boxes), the
segmenter is fed the prompts of each row (``--oracles``):

- ``none`` (key prefix ``system/``): the system's own prompts -- objects above the threshold, through the
  configured prompt filter -- and its own scores (today's label-free run; equals eval.py's pixel and object
  numbers);
- ``frame_labels`` (``oracle_frame_labels/``): as ``none``, but only objects on frames the GT calls anomalous
  (TAO's published protocol, eval.py with ``+metrics.gt_gating=true``);
- ``scores`` (``oracle_scores/``): the reverse split -- the system's own detections, tracks, prompt filter and
  segmenter, but each scored object's score replaced by an oracle score: 1 when its box overlaps a GT object box
  of its frame with IoU >= ``--oracle-iou`` (0.1: the RBDC rule for a true detection), else 0; the objects
  scoring 1 are the anomalous ones;
- ``prompts`` (``oracle_prompts/``): ORACLE prompts -- on every GT-anomalous frame, one box prompt per GT object,
  score 1; no prompt filter, no carrying (the segmenter gets no tracks). This is the segmenter's ceiling with
  perfect boxes.

"GT object" is the GT region RBDC/TBDC use: the dataset's GT tracks when it ships them (the synthetic dataset),
else (UCSD Ped2) the connected components of each frame's GT mask (8-connected, >= ``metrics.gt_min_area`` px,
ids linked over frames; tao_lab.metrics.tracks_from_masks).

Columns: mask IoU (mean over GT-anomalous frames of the per-frame IoU of the union of the object masks,
``instance_maps > 0``, with the GT mask; a frame without mask scores 0), pooled IoU (intersection / union summed
over all test frames: masks on normal frames count), mask precision / recall (pooled over all frames), boundary
F1 at ``--boundary-tol`` px (mean over GT-anomalous frames; tao_lab.metrics.masks), the standard pixel metrics
(pooled, exact), the TAO-protocol pixel metrics (per-frame mean over GT-anomalous frames; "AUPRO"_tao is TAO's
PR-AUC, not a region overlap), RBDC/TBDC (GT tracks derived from the masks; the ``scores`` and ``prompts`` rows,
whose objects all tie, with tied scores as one operating point, ``group_ties``: their curve is a straight line to
that point), the end of the RBDC curve (RBDR all: share of GT regions detected when every segmented object counts)
and its false positives per frame (FP/frame, not in %), and the wall seconds of
``Segmenter.segment`` per test frame (every frame of the clips, on this machine, with whatever else it runs).
The ``scores`` and ``prompts`` rows give every segmented object the same score (1), so their pixel metrics rank
pixels by the mask shape and foreground strength alone, across objects not at all (the TAO protocol normalises
every frame anyway).

sam2 is left out: its checkpoints cannot be had on our machines, and random weights give masks of no meaning
(benchmarks/segment_bench.py times it with random weights: same compute).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

import numpy as np  # noqa: E402

from tao_lab.types import ObjectScores, ObjectTable, Prompts  # noqa: E402

#: row name -> key prefix. Every row but "none" reads test labels, and its prefix says so.
ORACLES = {"none": "system", "frame_labels": "oracle_frame_labels", "scores": "oracle_scores",
           "prompts": "oracle_prompts"}
SEGMENTERS = ("learned", "classical", "boxes")
ORACLE_WARNING = ("oracle rows (oracle != none; keys oracle_*/) read the TEST LABELS: a diagnostic of what limits "
                  "the masks, never a way to choose a setting")
COLUMNS = [("mask_iou", "IoU"), ("mask_iou_pooled", "IoU pooled"), ("mask_precision", "mask P"),
           ("mask_recall", "mask R"), ("boundary_f1", "BF1"), ("pixel_auroc", "AUROC"), ("pixel_ap", "AP"),
           ("pixel_aupro@0.3", "AUPRO@0.3"), ("pixel_f1_max", "F1max"), ("pixel_ap_tao", "AP_tao"),
           ("pixel_f1_tao", "F1_tao"), ("pixel_aupro_tao", '"AUPRO"_tao (PR-AUC)'), ("object_rbdc", "RBDC"),
           ("object_tbdc", "TBDC"), ("object_rbdr_all", "RBDR all")]


# ----- the oracle inputs ------------------------------------------------------------------------------------------
def oracle_prompts(gt_tracks: ObjectTable, score: float = 1.0) -> Prompts:
    """ORACLE (reads test labels): one box prompt per GT object row (e.g. a connected component of a frame's GT
    mask, :func:`tao_lab.metrics.tracks_from_masks`), obj_id = GT track id + 1 (stable across frames), point = box
    centre, the same ``score`` for all. Sorted by (frame, obj_id) as the prompt filters' output."""
    if not len(gt_tracks):
        return Prompts.empty()
    order = np.lexsort((gt_tracks.track_id, gt_tracks.frame))
    return Prompts.from_boxes(gt_tracks.frame[order], gt_tracks.track_id[order] + 1, gt_tracks.xyxy[order],
                              np.full(len(order), score, np.float32))


def oracle_flags(objects: ObjectTable, gt_tracks: ObjectTable, min_iou: float = 0.1) -> np.ndarray:
    """ORACLE (reads test labels): (N,) bool, True where the object's box has IoU >= ``min_iou`` with a GT object
    box of the same frame."""
    from tao_lab.boxes import box_iou

    flags = np.zeros(len(objects), bool)
    for t in np.intersect1d(np.unique(objects.frame), np.unique(gt_tracks.frame)):
        rows = np.flatnonzero(objects.frame == t)
        iou = box_iou(objects.xyxy[rows], gt_tracks.xyxy[gt_tracks.frame == t])
        flags[rows] = iou.max(axis=1) >= min_iou
    return flags


def oracle_object_scores(scores: ObjectScores, gt_tracks: ObjectTable, min_iou: float = 0.1) -> ObjectScores:
    """ORACLE (reads test labels): the system's scored objects with each score replaced by 1 (box overlaps a GT
    object, :func:`oracle_flags`) or 0; frame score = max over the frame's objects."""
    flags = oracle_flags(scores.objects, gt_tracks, min_iou).astype(np.float32)
    frame_scores = np.zeros_like(np.asarray(scores.frame_scores, np.float32))
    np.maximum.at(frame_scores, scores.objects.frame, flags)
    return ObjectScores(scores.objects.with_score(flags), frame_scores)


def row_inputs(pipe, clip, scores: ObjectScores, oracle: str, gt_tracks: ObjectTable, oracle_iou: float
               ) -> tuple[Prompts, Optional[ObjectScores]]:
    """(prompts, scores the segmenter carries objects with) of one clip for one row (see the module docstring)."""
    if oracle == "none":
        return pipe.select_prompts(pipe.above_threshold(scores), clip.num_frames), scores
    if oracle == "frame_labels":
        return pipe.select_prompts(pipe.above_threshold(scores, clip.gt.frame_labels), clip.num_frames), scores
    if oracle == "scores":
        oracle_scores = oracle_object_scores(scores, gt_tracks, oracle_iou)
        anomalous = oracle_scores.objects.take(oracle_scores.objects.score >= 0.5)
        return pipe.select_prompts(anomalous, clip.num_frames), oracle_scores
    if oracle == "prompts":
        return oracle_prompts(gt_tracks), None
    raise ValueError(f"unknown oracle {oracle!r}: expected one of {list(ORACLES)}")


# ----- measuring --------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """The accumulators of one (oracle, segmenter) row."""

    oracle: str
    segmenter: str
    boundary_tol: float
    pixel: object = None
    tao: object = None
    masks: object = None
    detections: dict = field(default_factory=dict)
    seconds: float = 0.0
    frames: int = 0
    prompts: int = 0

    def __post_init__(self):
        from tao_lab.metrics import MaskAgreement, PixelMetrics, TaoPixelMetrics

        self.pixel, self.tao, self.masks = PixelMetrics(), TaoPixelMetrics(), MaskAgreement(self.boundary_tol)

    @property
    def prefix(self) -> str:
        return f"{ORACLES[self.oracle]}/{self.segmenter}"

    def add(self, clip, seg, gt_masks: np.ndarray) -> None:
        binary = seg.instance_maps > 0 if seg.instance_maps is not None else None
        for i, gt in enumerate(gt_masks):
            self.pixel.update(seg.score_maps[i], gt)
            self.tao.update(seg.score_maps[i], gt)
            # a segmenter without instance maps: its mask is every pixel it scores
            self.masks.update(binary[i] if binary is not None else seg.score_maps[i] > 0, gt)
        self.detections[clip.clip_id] = seg.objects

    def metrics(self, gt_tracks: dict, fpr_limit: float, tau: Optional[float], group_ties: bool) -> dict:
        from tao_lab.metrics import rbdc_tbdc

        out = {f"pixel_{k}": float(v) for k, v in self.pixel.compute(fpr_limit=fpr_limit, threshold=tau).items()
               if np.ndim(v) == 0}
        out.update({f"pixel_{k}": float(v) for k, v in self.tao.compute().items() if np.ndim(v) == 0})
        out.update({k: float(v) for k, v in self.masks.compute().items()})
        obj = rbdc_tbdc(gt_tracks, self.detections, num_frames=self.frames, group_ties=group_ties)
        out["object_rbdc"], out["object_tbdc"] = float(obj["rbdc"]), float(obj["tbdc"])
        out["object_group_ties"] = float(group_ties)
        # the curve's end: every segmented object counted (what the 0/1 oracle scores leave when they tie)
        out["object_rbdr_all"], out["object_tbdr_all"] = float(obj["rbdr"][-1]), float(obj["tbdr"][-1])
        out["object_fp_per_frame"] = obj["num_false_positives"] / self.frames
        out["segment_s_per_frame"] = self.seconds / max(self.frames, 1)
        out["num_prompts"] = float(self.prompts)
        return out


def measure(pipe, clips: list, segmenters: dict, oracles=tuple(ORACLES), boundary_tol: float = 2.0,
            oracle_iou: float = 0.1, show_progress: bool = False) -> list[dict]:
    """Every (segmenter, oracle) row on ``clips`` (each with pixel masks). ``pipe``: a Pipeline whose scorer and
    threshold are fitted; ``segmenters``: name -> Segmenter. Returns one dict per row: ``segmenter``, ``oracle``,
    ``reads_test_labels``, ``prefix`` and ``metrics`` (keys as eval.py's, without the split)."""
    from tao_lab.evaluation import gt_tracks_for
    from tao_lab.pipeline import progress

    for name in oracles:
        if name not in ORACLES:
            raise ValueError(f"unknown oracle {name!r}: expected some of {list(ORACLES)}")
    missing = [c.clip_id for c in clips if c.gt is None or c.gt.mask is None or c.gt.frame_labels is None]
    if missing:
        raise ValueError(f"the mask ceiling needs pixel masks and frame labels on every clip; none on "
                         f"{', '.join(missing[:5])}: use a dataset with pixel ground truth (UCSD Ped2, synthetic)")
    mcfg = pipe.cfg.metrics
    rows = {(s, o): Row(o, s, boundary_tol) for s in segmenters for o in oracles}
    gt_tracks = {}
    for clip in progress(clips, "mask ceiling", show_progress):
        scores = pipe.scores(clip)
        gt_masks = np.stack([np.asarray(m, bool) for m in clip.gt.masks()])
        tracks = gt_tracks_for(clip, pipe.cache_dir, int(mcfg.get("gt_min_area", 20)))
        gt_tracks[clip.clip_id] = tracks
        for oracle in oracles:
            prompts, carry = row_inputs(pipe, clip, scores, oracle, tracks, oracle_iou)
            for sname, segmenter in segmenters.items():
                start = time.perf_counter()
                seg = segmenter.segment(clip, prompts, carry)
                row = rows[(sname, oracle)]
                row.seconds += time.perf_counter() - start
                row.frames += clip.num_frames
                row.prompts += len(prompts)
                row.add(clip, seg, gt_masks)
                del seg
    tau = float(pipe.threshold.tau) if pipe.threshold is not None else None
    # the oracle rows' objects all score alike (1, or 0/1 from the oracle): RBDC/TBDC then take the tied group as
    # one operating point, so the curve does not depend on the order of tied detections (video, frame, row)
    return [{"segmenter": s, "oracle": o, "reads_test_labels": o != "none", "prefix": row.prefix,
             "metrics": row.metrics(gt_tracks, float(mcfg.get("fpr_limit", 0.3)), tau,
                                    o in ("scores", "prompts") or bool(mcfg.get("group_ties", False)))}
            for (s, o), row in rows.items()]


def flat_keys(rows: list[dict]) -> dict[str, float]:
    """``<prefix>/<metric>``: ``system/classical/mask_iou``, ``oracle_prompts/boxes/pixel_ap``, ..."""
    return {f"{r['prefix']}/{k}": v for r in rows for k, v in r["metrics"].items()}


def fmt(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"


def table(rows: list[dict], title: str) -> str:
    head = "| segmenter | oracle | " + " | ".join(c for _, c in COLUMNS) + " | FP/frame | s/frame |"
    lines = [f"## {title}", f"# {ORACLE_WARNING}",
             "# RBDC/TBDC of the scores and prompts rows (all objects tie): tied scores as one operating point", head,
             "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r['segmenter']} | {'**ORACLE** ' if r['reads_test_labels'] else ''}{r['oracle']} | "
                     + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS)
                     + f" | {m['object_fp_per_frame']:.2f} | {m['segment_s_per_frame']:.4f} |")
    return "\n".join(lines)


# ----- command line -----------------------------------------------------------------------------------------------
def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "ucsd_ped2"),
                    help="folder holding UCSDped2/ (default: ../shared/datasets/ucsd_ped2)")
    ap.add_argument("--max-clips", type=int, default=None, help="at most this many clips per split (quick run)")
    ap.add_argument("--segmenters", default=",".join(SEGMENTERS),
                    help="segmenter config options to compare, comma separated (default: learned,classical,boxes)")
    ap.add_argument("--oracles", default=",".join(ORACLES),
                    help=f"rows per segmenter, comma separated, of {','.join(ORACLES)} (default: all)")
    ap.add_argument("--boundary-tol", type=float, default=2.0, help="boundary F1 tolerance in pixels (default 2)")
    ap.add_argument("--oracle-iou", type=float, default=0.1,
                    help="oracle scores: an object is anomalous when its box has IoU >= this with a GT object box "
                         "of its frame (default 0.1, RBDC's rule)")
    ap.add_argument("--background-scopes", default="config",
                    help="background scopes of the segmenters that have one (classical, pose_person), comma "
                         "separated, of config,clip,camera (default: config = each segmenter's own); a clip or "
                         "camera row is named <segmenter>@clip / <segmenter>@camera, a camera background is fitted "
                         "on the training clips")
    ap.add_argument("--json", default=None, help="also write every row and key to this JSON file")
    from tao_lab.config import parse_with_overrides

    args, extra = parse_with_overrides(ap, argv, "scorer=attribute_speed")
    if any(o.lstrip("+~").startswith("segmenter") for o in extra):
        ap.error("choose segmenters with --segmenters, not a segmenter override (every row uses each segmenter's "
                 "own config)")
    oracles = [o for o in args.oracles.split(",") if o]
    unknown = [o for o in oracles if o not in ORACLES]
    if unknown:
        ap.error(f"unknown --oracles {unknown}: expected some of {list(ORACLES)}")

    from tao_lab.config import compose_config
    from tao_lab.pipeline import dataset_pipeline, instantiate, load_dataset

    base = ["progress=false"]
    if not any(o.startswith("dataset=") for o in extra):  # another dataset with pixel masks may be chosen
        base.append("dataset=ucsd_ped2")
    if not any(o.startswith("paths.data_dir=") for o in extra):
        base.append(f"paths.data_dir={args.data_dir}")
    base += extra
    if args.max_clips:
        base.append(f"dataset.max_clips={args.max_clips}")
    cfg = compose_config(base)
    if cfg.metrics.get("gt_gating", False):
        ap.error("metrics.gt_gating=true would gate the label-free row too: the frame_labels row is that oracle")
    scopes = [s for s in args.background_scopes.split(",") if s]
    if not scopes or any(s not in ("config", "clip", "camera") for s in scopes):
        ap.error(f"--background-scopes must be some of config,clip,camera, got {args.background_scopes!r}")
    segmenters = {}
    for name in (n for n in args.segmenters.split(",") if n):
        seg_cfg = compose_config([*base, f"segmenter={name}"]).segmenter
        has_scope = isinstance(seg_cfg.get("background"), Mapping) and "scope" in seg_cfg.background
        for scope in scopes:
            if scope == "config":
                segmenters[name] = instantiate(seg_cfg)
            elif has_scope:
                segmenters[f"{name}@{scope}"] = instantiate(
                    compose_config([*base, f"segmenter={name}", f"segmenter.background.scope={scope}"]).segmenter)
    dataset = load_dataset(cfg)
    if any(getattr(s, "scope", "clip") == "camera" for s in segmenters.values()):
        # the camera backgrounds are fitted on the training clips (tao_lab.detector.camera)
        from tao_lab.detector.camera import CameraBackgrounds

        camera = CameraBackgrounds(dataset.train)
        start = time.perf_counter()
        for segmenter in segmenters.values():
            if hasattr(segmenter, "use_camera"):
                segmenter.use_camera(camera)
                if segmenter.scope == "camera":  # fitted once per run: kept out of the rows' s/frame
                    camera.fit_statistics(segmenter.background)
        print(f"# camera statistics of {len(dataset.train)} training clips fitted in "
              f"{time.perf_counter() - start:.1f} s (once per run)", flush=True)
    from tao_lab.segmenter.learned import network_ready

    for name, segmenter in segmenters.items():
        if hasattr(segmenter, "use_cache_dir"):  # segmenter=learned: its network, trained before or now
            segmenter.use_cache_dir(cfg.paths.get("cache_dir"))
        seconds = network_ready(segmenter, list(dataset.train))  # once per camera: kept out of the rows' s/frame
        if seconds is not None:
            print(f"# {name}: network ready in {seconds:.0f} s (trained on the training clips, or read from the "
                  f"stage cache)", flush=True)
    frames = sum(c.num_frames for c in dataset.test)
    print(f"# {cfg.dataset._target_.rsplit('.', 1)[-1]} {args.data_dir}: {len(dataset.train)} train clips, "
          f"{len(dataset.test)} test clips ({frames} test frames)", flush=True)
    pipe = dataset_pipeline(cfg, dataset)
    start = time.perf_counter()
    pipe.fit_scorer(dataset.train)
    print(f"# scorer + threshold ready in {time.perf_counter() - start:.0f} s (tau = {pipe.threshold.tau:.4f})",
          flush=True)
    start = time.perf_counter()
    rows = measure(pipe, dataset.test, segmenters, oracles, args.boundary_tol, args.oracle_iou)
    print(f"# {len(rows)} rows in {time.perf_counter() - start:.0f} s\n")
    print(table(rows, f"{len(dataset.test)} test clips: masks vs GT (IoU, BF1 at {args.boundary_tol:g} px), pixel "
                      f"metrics std | TAO protocol, RBDC/TBDC, all in %; segment() seconds per frame on this CPU "
                      f"({os.cpu_count()} cores, shared)"))
    if args.json:
        from tao_lab.artifacts import atomic_path

        with atomic_path(args.json) as tmp:  # never a half-written file
            tmp.write_text(json.dumps(
                {"warning": ORACLE_WARNING, "overrides": extra, "data_dir": args.data_dir,
                 "max_clips": args.max_clips, "boundary_tol_px": args.boundary_tol, "oracle_iou": args.oracle_iou,
                 "tau": float(pipe.threshold.tau), "rows": rows, "keys": flat_keys(rows)}, indent=1))
        print(f"\n# wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
