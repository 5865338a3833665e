"""Why a planted set scores what it scores: each held-out clip of the cross-scene validation, explained.

    python benchmarks/planted_look.py --scenes ped2,ped2_oblique --sets cart [--seed 0]
        [--ped2-dir ../shared/datasets/ucsd_ped2] [--clips 4] [--frames 120] [--top 2] [--crowd] [hydra overrides ...]
    python benchmarks/planted_look.py --in-run [--seed 0] [hydra overrides ...]   # a run's val/ sets (D, C)

For every scene, planted set and held-out clip v, the configured attribute scorer (``fusion: sum_excess``) is fitted
on the other training clips, as ``python -m tao_lab.validation --scenes`` does, and the look prints:

- how many frames are labelled and on how many of them a detection covers the planted object (IoU >= ``--iou`` with
  its pasted box), and which tracks carry it (a track switch or a merge with a passer-by shows here);
- the planted object's median excess over each group's normal level (below 0: that group sees nothing unusual);
- the frame scores on its labelled frames against the held-out clip's own frames without it (the negatives), and the
  ``--top`` objects of those negatives with the groups that lift them;
- at the end, one table of scene x set: the cell's AUC and the share of its labelled frames on which the planted
  object was detected. A cell whose plant is seldom detected measures the detector, not the scorer (session 56:
  synthetic_persp's off-path walkers, 3-6 px wide on the far lawn, under the detector's ``min_area``).

The AUC per scene and set it prints is the validation's cell for that seed (the same plants, folds and negatives:
give ``--sets`` as the validation run did, since a set's depth band follows its position in that list). With
``--in-run``: the configured dataset's training clips with the planted sets of every run's ``val/``
(:data:`tao_lab.validation.DEFAULT_PLANTS`, or ``validation.plants``), whose negatives are the planted copy's own
unlabelled frames. Two defects of session 47 were found this way (the in-run slow walkers were ordinary walkers on the
main job's camera; planted carts read a walker's shape through a track switch).
With ``--crowd``: the cells of the validation's crowd guard (``python -m tao_lab.validation --crowd``): each
held-out clip and its planted copies crowded by a spare clip of the camera, the fit on uncrowded clips.

It explains; it never chooses a setting. Training clips only: no test clip is read.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def planted_rows(objects, gt, min_iou: float = 0.2) -> np.ndarray:
    """(N,) bool: per frame of the planted object's boxes ``gt`` (an ObjectTable), the detection of ``objects`` on
    that frame with the highest IoU, when it reaches ``min_iou``."""
    from tao_lab.boxes import box_iou

    rows = np.zeros(len(objects), bool)
    for frame, box in zip(gt.frame, gt.xyxy):
        on = np.flatnonzero(objects.frame == frame)
        if len(on):
            iou = box_iou(objects.xyxy[on], box[None], convention="exclusive")[:, 0]
            if iou.max() >= min_iou:
                rows[on[int(iou.argmax())]] = True
    return rows


def explain_fold(scorer, planted_item, negatives_item, labels: np.ndarray, gt, top: int = 2,
                 min_iou: float = 0.2) -> dict:
    """One held-out clip: ``planted_item`` / ``negatives_item`` are (objects, features, num_frames) of the planted
    copy and of the clip whose frames are the negatives (the clip without the plant, or the planted copy itself);
    ``labels`` (T,) bool the planted copy's labelled frames; ``gt`` the planted object's boxes."""
    objects, features, _ = planted_item
    labels = np.asarray(labels, bool)
    frame = np.asarray(scorer.score_clip(*planted_item).frame_scores, np.float64)
    same_clip = negatives_item is planted_item
    negatives = frame[~labels] if same_clip else \
        np.asarray(scorer.score_clip(*negatives_item).frame_scores, np.float64)
    rows = planted_rows(objects, gt, min_iou)
    excess = scorer.group_excess(scorer.object_parts(objects, features))
    tracks, counts = np.unique(objects.track_id[rows], return_counts=True)
    n_objects, n_features, _ = negatives_item
    n_excess = scorer.group_excess(scorer.object_parts(n_objects, n_features))
    keep = ~planted_rows(n_objects, gt, min_iou) & ~labels[n_objects.frame] if same_clip else \
        np.ones(len(n_objects), bool)
    total = np.where(keep, n_excess.sum(0), -np.inf)
    tops = []
    for j in np.argsort(-total)[:top]:
        if not np.isfinite(total[j]):
            break
        tops.append({"frame": int(n_objects.frame[j]), "track": int(n_objects.track_id[j]),
                     "total": float(total[j]), "height": float(n_objects.xyxy[j, 3] - n_objects.xyxy[j, 1]),
                     "groups": {g: float(n_excess[i, j]) for i, g in enumerate(scorer.groups)
                                if n_excess[i, j] > 0.05}})
    return {"labelled": int(labels.sum()), "found": int(rows.sum()),
            "tracks": dict(zip(tracks.tolist(), counts.tolist())),
            "excess": {g: float(np.median(excess[i, rows])) if rows.any() else float("nan")
                       for i, g in enumerate(scorer.groups)},
            "positives": frame[labels], "negatives": negatives, "top": tops}


def fold_lines(name: str, v: int, got: dict) -> list[str]:
    pos, neg = got["positives"], got["negatives"]
    ranked = sorted(got["tracks"].items(), key=lambda kv: -kv[1])
    tracks = ", ".join(f"{t}: {n}" for t, n in ranked[:4]) + (f", +{len(ranked) - 4} more" if len(ranked) > 4 else "")
    lines = [f"{name} fold {v}: labelled {got['labelled']}, detected on {got['found']} (tracks {{{tracks}}}); "
             f"its frames median {np.median(pos):.2f} (25th pct {np.percentile(pos, 25):.2f}), negatives 90th pct "
             f"{np.percentile(neg, 90):.2f} max {neg.max():.2f}" if len(pos) and len(neg) else
             f"{name} fold {v}: labelled {got['labelled']}, detected on {got['found']}"]
    lines.append("    planted object's median excess: " + ", ".join(f"{g} {x:+.2f}" for g, x in got["excess"].items()))
    for t in got["top"]:
        lifted = ", ".join(f"{g} {x:+.2f}" for g, x in t["groups"].items()) or "no group above 0.05"
        lines.append(f"    top negative: frame {t['frame']} track {t['track']} ({t['height']:.0f} px tall) "
                     f"total {t['total']:+.2f}: {lifted}")
    return lines


def _auc(positives: list, negatives: list) -> float:
    """Frame AUC micro of the labelled frames against the negatives, pooled over the held-out clips."""
    from tao_lab.metrics import frame_metrics

    return float(frame_metrics([np.r_[p, n] for p, n in zip(positives, negatives)],
                               [np.r_[np.ones(len(p), bool), np.zeros(len(n), bool)]
                                for p, n in zip(positives, negatives)])["auc_micro"])


def look_scenes(cfg, scenes, sets, seed: int = 0, ped2_dir: Optional[str] = None, num_clips: int = 4,
                num_frames: int = 120, top: int = 2, min_iou: float = 0.2, crowd: bool = False,
                occlusion: bool = True):
    """Yields printable lines, then returns {scene: {set: AUC}} (the cross-scene validation's cells for ``seed``;
    with ``crowd`` those of its ``--crowd`` guard: held-out and planted clips crowded by a spare clip; planted objects
    behind nearer people as the validation's, or over everything without ``occlusion``, its ``--paste-over``)."""
    from tao_lab.pipeline import dataset_pipeline, instantiate
    from tao_lab.types import Dataset
    from tao_lab.validation.crowd import CrowdedClip
    from tao_lab.validation.cross_scene import _at_working_resolution, build_scenes, crowd_scene, fold_clips
    from tao_lab.validation.in_run import planted_box_table
    from tao_lab.validation.scenes import spare_clips

    donors = spare_clips(list(dict.fromkeys(scenes)), num_clips, num_frames, ped2_dir) if crowd else None
    built = build_scenes(cfg, scenes, sets, ped2_dir, num_clips, num_frames, seed, False, animate=True,
                         off_path_ground=True, occlusion=occlusion)
    if donors is not None:
        built = [crowd_scene(sc, donors[sc.name]) for sc in built]
    aucs: dict[str, dict[str, float]] = {}
    detected: dict[str, dict[str, tuple[int, int]]] = {}  # (frames the plant was detected on, labelled frames)
    measured: dict = {}
    for scene_clips in built:
        sc = _at_working_resolution(scene_clips, cfg, measured)
        pipe = dataset_pipeline(cfg, Dataset(sc.name, list(sc.train), []))  # the scene is one camera
        pipe.show_progress = False
        items = [(pipe.tracks(c), pipe.features(c), c.num_frames) for c in sc.train]
        # the negatives' clips: the training clips themselves, or (crowd) their crowded copies
        scored = items if sc.held_out is None else [(pipe.tracks(c), pipe.features(c), c.num_frames)
                                                    for c in sc.held_out]
        aucs[sc.name], detected[sc.name] = {}, {}
        for kind in sets:
            pos, neg = [], []
            found = labelled = 0
            for v in range(len(sc.train)):
                clip = sc.planted[kind][v]
                if clip is None:
                    yield f"{sc.name} / {kind} fold {v}: not planted"
                    continue
                scorer = instantiate(cfg.scorer).fit_clips([items[u] for u in fold_clips(v, len(items))])
                scorer.eval()
                plant = clip.base if isinstance(clip, CrowdedClip) else clip  # the crowd pastes over the plant
                got = explain_fold(scorer, (pipe.tracks(clip), pipe.features(clip), clip.num_frames), scored[v],
                                   clip.labels, planted_box_table(plant), top, min_iou)
                pos.append(got["positives"])
                neg.append(got["negatives"])
                found, labelled = found + got["found"], labelled + got["labelled"]
                yield from fold_lines(f"{sc.name} / {kind}", v, got)
            aucs[sc.name][kind] = _auc(pos, neg)
            detected[sc.name][kind] = (found, labelled)
            yield f"{sc.name} / {kind}: frame AUC micro {aucs[sc.name][kind]:.4f} (seed {seed})"
    yield from summary_table(aucs, detected, seed)
    return aucs


def summary_table(aucs: dict, detected: dict, seed: int) -> list[str]:
    """scene x set: the cell's frame AUC and, in brackets, the share of its labelled frames on which a detection
    covers the planted object (a cell with no planted fold reads "-")."""
    sets = list(dict.fromkeys(k for row in aucs.values() for k in row))
    corner = "scene \\ set"
    first = max(len(corner), *(len(scene) for scene in aucs))  # the scene column, as the validation's table
    width = max([len(s) for s in sets] + [13])
    lines = [f"frame AUC micro (share of the labelled frames on which the plant is detected), seed {seed}",
             f"{corner:<{first}} | " + " | ".join(f"{s:>{width}}" for s in sets)]
    for scene, row in aucs.items():
        cells = []
        for kind in sets:
            found, labelled = detected[scene].get(kind, (0, 0))
            cells.append(f"{row[kind]:.4f} ({found / labelled:4.0%})" if labelled else "-")
        lines.append(f"{scene:<{first}} | " + " | ".join(f"{c:>{width}}" for c in cells))
    return lines


def look_in_run(cfg, seed: int = 0, top: int = 2, min_iou: float = 0.2):
    """Yields printable lines for a run's planted sets on its dataset's training clips, then returns {set: AUC}."""
    from tao_lab.pipeline import dataset_pipeline, load_dataset
    from tao_lab.validation.in_run import cached_planted_clips, plant_specs, planted_box_table
    from tao_lab.validation.planted import normal_moving_speed
    from tao_lab.validation.protocol import planting_pipeline, specs_at_working_resolution

    dataset = load_dataset(cfg, splits=["train"])
    train = list(dataset.train)
    specs = specs_at_working_resolution(plant_specs(cfg.validation), train)
    planter = planting_pipeline(cfg)
    planted = cached_planted_clips(train, planter, specs, seed, False)
    unit = normal_moving_speed([planter.tracks(c) for c in train])
    yield f"normal moving speed of the training tracks: {unit:.2f} px/frame" if unit else \
        "no training track moves: planted speeds read as px/frame"
    explained: dict[str, list[dict]] = {spec.name: [] for spec in specs}
    for v in range(len(train)):  # one fit per held-out clip, as the run's folds
        fold = dataset_pipeline(cfg, dataset)  # the camera of all its training clips
        fold.show_progress = False
        fold.fit_scorer([c for u, c in enumerate(train) if u != v])
        for spec in specs:
            clip = planted[spec.name][v]
            item = (fold.tracks(clip), fold.features(clip), clip.num_frames)
            explained[spec.name].append(explain_fold(fold.scorer, item, item, clip.labels, planted_box_table(clip),
                                                     top, min_iou))
    aucs = {}
    for spec in specs:
        for v, got in enumerate(explained[spec.name]):
            yield from fold_lines(spec.name, v, got)
        aucs[spec.name] = _auc([g["positives"] for g in explained[spec.name]],
                               [g["negatives"] for g in explained[spec.name]])
        yield f"{spec.name}: frame AUC micro {aucs[spec.name]:.4f} (seed {seed}; val/frame_auc_{spec.name})"
    return aucs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", default="ped2", help="comma-separated cross-scene scenes")
    parser.add_argument("--sets", default=None, help="comma-separated planted sets (default: all, as the validation)")
    parser.add_argument("--in-run", action="store_true", help="the configured dataset's val/ planted sets instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ped2-dir", default="../shared/datasets/ucsd_ped2")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--top", type=int, default=2, help="top negative objects shown per fold")
    parser.add_argument("--iou", type=float, default=0.2, help="IoU a detection needs to count as the planted object")
    parser.add_argument("--crowd", action="store_true",
                        help="the validation's --crowd guard: held-out and planted clips crowded by a spare clip")
    parser.add_argument("--paste-over", action="store_true",
                        help="the validation's --paste-over: planted objects over everything (rounds before session "
                             "60) instead of behind the clip's nearer people")
    args, overrides = parser.parse_known_args(argv)
    from tao_lab.config import compose_config
    from tao_lab.validation.behaviours import BEHAVIOURS

    cfg = compose_config(["progress=false", "validation.kind=planted", *overrides])
    if cfg.scorer.get("fusion") != "sum_excess":
        parser.error("the look reads each group's excess over its normal level: it needs scorer.fusion=sum_excess")
    if args.in_run and args.crowd:
        parser.error("--crowd explains the cross-scene validation's crowd guard: not with --in-run")
    if args.in_run:
        lines = look_in_run(cfg, args.seed, args.top, args.iou)
    else:
        sets = list(BEHAVIOURS) if args.sets is None else args.sets.split(",")
        if sets != list(BEHAVIOURS):
            print(f"note: each set is planted at the depth band its position in --sets gives it; these cells equal a "
                  f"validation run with --sets {','.join(sets)}, not the full table's (sets {','.join(BEHAVIOURS)})")
        lines = look_scenes(cfg, args.scenes.split(","), sets, args.seed, args.ped2_dir, args.clips, args.frames,
                            args.top, args.iou, args.crowd, occlusion=not args.paste_over)
    for line in lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
