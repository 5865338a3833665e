"""Label-free look at how a camera's new video differs from its training clips, through the scorer's eyes.

    python benchmarks/scene_shift.py [--data-dir ../shared/datasets/ucsd_ped2] [--fit-clips 12] [--threshold 0.5]
                                     [--figure shift.png] [--crowd] [hydra overrides ...]

Fits the configured attribute scorer (``fusion: sum_excess``) on the first ``--fit-clips`` training clips, then
scores the remaining training clips (held out: what the validation's leave-one-clip-out sees) and the test clips
(what a deployment sees). NO LABEL IS READ: the test clips are used as unlabelled video. Among the objects whose
motion group is at or below its baseline (mostly ordinary walkers), it prints per scene group the share whose
excess over the group's baseline exceeds ``--threshold``, and where those objects stand: median footprint y
(0 top, 1 bottom of the frame) and box height against the expected height there. A share much higher on the new
video than on held-out training clips means the group's model sees something the training clips never showed:
either a real change in where and how people move, or a measurement the model should not trust (round 18 of the
validation found people cut off by the bottom edge of the frame this way: ``footprint_edge``). It also prints the
share of pieces (boxes less tall than ``--piece-height`` x the expected height) and how many of them are in a track
with a whole detection, which the scorer's ``piece_carry`` can place. ``--figure`` draws
one frame per new clip with those objects in red, the others in green. ``--crowd`` adds a row between the two: the
held-out clips crowded by each other (:mod:`tao_lab.validation.crowd`, the cross-scene validation's ``--crowd``), to
see how much of the new video's shift a busier day explains.

It explains; it never chooses a setting (the cross-scene validation does that, on training clips only).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def excess_shares(excess: np.ndarray, quiet: np.ndarray, threshold: float) -> np.ndarray:
    """(G,) share of the ``quiet`` objects (N,) bool whose excess (G, N) exceeds ``threshold``, per group; NaN
    when no object is quiet."""
    excess = np.asarray(excess, np.float64)
    quiet = np.asarray(quiet, bool)
    if not quiet.any():
        return np.full(len(excess), np.nan)
    return (excess[:, quiet] > threshold).mean(axis=1)


def _rows(pipe, scorer, clips, quiet_group: str, piece_height: float):
    """Per object of ``clips``: (excess (G, N), quiet (N,), foot y (N,), height / expected height (N,), where
    (clip index, frame) (N, 2), placeable (N,): a piece (less tall than ``piece_height`` x the expected height) whose
    track has a whole detection to read its place from (scene.piece_references, the scorer's ``piece_carry``))."""
    from tao_lab.scorer import scene

    out = []
    for c, clip in enumerate(clips):
        tracks, feats = pipe.tracks(clip), pipe.features(clip)
        excess = scorer.group_excess(scorer.object_parts(tracks, feats))
        place = scene.place_columns(feats, len(tracks))
        model = scorer.scene__height.cpu().numpy()
        expected = scene.expected_height(model, place[:, :2])
        # whole detections as the scorer tells them (its piece_track_height too, when it has one)
        placeable = scene.piece_references(tracks, place, model, piece_height,
                                           getattr(scorer, "piece_track_height", None)) >= 0
        out.append((excess, excess[scorer.groups.index(quiet_group)] <= 0, place[:, 1], place[:, 3] / expected,
                    np.column_stack([np.full(len(tracks), c), tracks.frame]), placeable))
    return (np.concatenate([o[0] for o in out], axis=1),
            *(np.concatenate([o[k] for o in out]) for k in (1, 2, 3, 4, 5)))


def _figure(path: str, pipe, clips, flagged: np.ndarray, where: np.ndarray) -> None:
    import cv2

    tiles = []
    for c, clip in enumerate(clips):
        mine = where[:, 0] == c
        hits = np.flatnonzero(mine & flagged)
        if not len(hits):
            continue
        frame_index = int(np.sort(where[hits, 1])[len(hits) // 2])
        image = next(iter(clip.frames(frame_index, frame_index + 1))).copy()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        rows = np.flatnonzero(mine & (where[:, 1] == frame_index))
        tracks = pipe.tracks(clip)
        local = rows - np.flatnonzero(mine)[0]
        for r, i in zip(rows, local):
            x1, y1, x2, y2 = tracks.xyxy[i].astype(int)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 0, 255) if flagged[r] else (0, 255, 0), 1)
        cv2.putText(image, f"{clip.clip_id} frame {frame_index}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1)
        tiles.append(image)
    if not tiles:
        print("no flagged object: no figure written")
        return
    blank = np.zeros_like(tiles[0])
    grid = [np.hstack(tiles[i:i + 3] + [blank] * (3 - len(tiles[i:i + 3]))) for i in range(0, len(tiles), 3)]
    cv2.imwrite(path, np.vstack(grid))
    print(f"written {path}")


def main(argv=None) -> dict:
    from tao_lab.config import compose_config
    from tao_lab.no_network import set_offline_env
    from tao_lab.pipeline import dataset_pipeline, load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--dataset", default="ucsd_ped2", help="config group option of dataset (default ucsd_ped2)")
    ap.add_argument("--fit-clips", type=int, default=None,
                    help="fit on the first N training clips, hold out the rest (default: three quarters)")
    ap.add_argument("--threshold", type=float, default=0.5, help="excess over the baseline that counts (0.5)")
    ap.add_argument("--quiet-group", default="motion", help="objects at or below this group's baseline are counted")
    ap.add_argument("--figure", default=None, help="PNG: one new-video frame per clip, flagged objects in red")
    ap.add_argument("--group", default="place", help="the group whose flagged objects --figure draws (place)")
    ap.add_argument("--piece-height", type=float, default=0.5,
                    help="a box less tall than this x the expected height is a piece (0.5)")
    ap.add_argument("--crowd", action="store_true",
                    help="also score the held-out clips with a crowd added (tao_lab.validation.crowd: the people of "
                         "the next held-out clip pasted over them, both cut to the shortest one's length), the "
                         "validation's simulated busier day")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    set_offline_env()
    cfg = compose_config([f"dataset={args.dataset}", f"paths.data_dir={args.data_dir}", "progress=false",
                          "validation=none", *args.overrides])
    dataset = load_dataset(cfg)
    train, new = list(dataset.train), list(dataset.test)
    k = args.fit_clips or max(1, (3 * len(train)) // 4)
    if not 1 <= k < len(train):
        ap.error(f"--fit-clips must leave at least one of the {len(train)} training clips held out, got {k}")
    pipe = dataset_pipeline(cfg, dataset)
    pipe.fit_scorer(train[:k])
    scorer = pipe.scorer
    if getattr(scorer, "fusion", None) != "sum_excess" or not getattr(scorer, "uses_scene", False):
        ap.error("this look needs the attribute scorer with fusion sum_excess and scene attributes (the default)")
    if args.quiet_group not in scorer.groups or args.group not in scorer.groups:
        ap.error(f"groups of this scorer: {scorer.groups}")
    result = {}
    print(f"fitted on {k} training clips; threshold {args.threshold}; counted: objects with {args.quiet_group} at or "
          f"below its baseline")
    print(f"{'clips':16s} {'objects':>8s} {'counted':>8s} | " + " | ".join(f"{g:>10s}" for g in scorer.groups
                                                                             if g != args.quiet_group)
          + " | flagged: foot y, height / expected (median)")
    looks = [("held-out train", train[k:]), ("new (test)", new)]
    if args.crowd:
        from tao_lab.types import SubClip
        from tao_lab.validation.crowd import Crowd, CrowdedClip

        held = train[k:]
        if len(held) < 2:
            ap.error("--crowd needs at least two held-out training clips (one crowds the other)")
        n = min(c.num_frames for c in held)
        cut = [SubClip(c, 0, n) for c in held]
        crowded = [CrowdedClip(c, Crowd(cut[(j + 1) % len(cut)])) for j, c in enumerate(cut)]
        looks.insert(1, ("held-out crowded", crowded))
    for label, clips in looks:
        excess, quiet, foot_y, rel_h, where, placeable = _rows(pipe, scorer, clips, args.quiet_group,
                                                               args.piece_height)
        shares = excess_shares(excess, quiet, args.threshold)
        result[label] = {g: float(s) for g, s in zip(scorer.groups, shares)}
        cells = [f"{100 * s:9.2f}%" for g, s in zip(scorer.groups, shares) if g != args.quiet_group]
        flagged = quiet & (excess[scorer.groups.index(args.group)] > args.threshold)
        where_txt = (f"{args.group}: {np.median(foot_y[flagged]):.2f}, {np.median(rel_h[flagged]):.2f} "
                     f"(counted: {np.median(foot_y[quiet]):.2f}, {np.median(rel_h[quiet]):.2f})"
                     if flagged.any() else f"{args.group}: none")
        print(f"{label:16s} {quiet.size:8d} {int(quiet.sum()):8d} | " + " | ".join(cells) + " | " + where_txt)
        pieces = rel_h < args.piece_height
        result[label]["pieces"] = float(pieces.mean()) if len(pieces) else float("nan")
        result[label]["pieces_placeable"] = float(placeable[pieces].mean()) if pieces.any() else float("nan")
        print(f"{'':16s} pieces (< {args.piece_height:g} x expected height): {100 * result[label]['pieces']:.1f}% "
              f"of the objects, {100 * result[label]['pieces_placeable']:.1f}% of them in a track with a whole "
              f"detection (piece_carry can place them)")
        if args.figure and clips is new:
            _figure(args.figure, pipe, clips, flagged, where)
    return result


if __name__ == "__main__":
    main()
