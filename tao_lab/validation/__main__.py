"""``python -m tao_lab.validation [--variants FILE] [--seed N] [--scenes ...] [hydra overrides ...]``

Compares scorer variants by leave-one-clip-out frame AUC on TRAINING clips with planted anomalies; test clips are
never read. The variants file is YAML, ``{name: [hydra override, ...]}``, each applied on top of the base
overrides; without it, the configured scorer is validated alone.

Two protocols:
- without ``--scenes``: the training clips of the configured dataset with the speed/cart plants
  (:mod:`tao_lab.validation.protocol`; the file that chose the previous default attribute scorer):
      python -m tao_lab.validation --variants benchmarks/validation/attribute_scorer.yaml \\
          dataset=ucsd_ped2 paths.data_dir=../shared/datasets/ucsd_ped2
- with ``--scenes`` (``default``, ``all`` or a comma list): cross-scene, one table scene x planted behaviour set
  (fast, cart, wrong_way, off_path, loiter, fast_mild) per variant and the mean over scenes and sets
  (:mod:`tao_lab.validation.cross_scene`); scenes: ped2, ped2_low, ped2_lower, ped2_high, ped2_oblique,
  synthetic, synthetic_persp:
      python -m tao_lab.validation --scenes default --variants benchmarks/validation/cross_scene.yaml
- with ``--scenes`` and ``--alarm FILE``: the frame alarm's defaults on the same scenes (method, target false-alarm
  rate, folds; :mod:`tao_lab.validation.alarm_choice`), the configured scorer:
      python -m tao_lab.validation --scenes default --alarm benchmarks/validation/alarm_defaults.yaml
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tao_lab.validation", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", help="YAML file {name: [overrides]} (default: the configured scorer only)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the planted objects (default 0)")
    parser.add_argument("--seeds", help="cross-scene: a comma list of seeds; every cell is the mean over the plantings "
                                        "(each seed's MEAN is printed too); replaces --seed")
    parser.add_argument("--scenes", help="cross-scene protocol: 'default', 'all' or a comma list of scenes")
    parser.add_argument("--sets", default="all", help="cross-scene: 'all' or a comma list of planted sets")
    parser.add_argument("--clips", type=int, default=4,
                        help="cross-scene: training clips per scene (Ped2: spread over the 16; default 4)")
    parser.add_argument("--fit-clips", type=int, default=None,
                        help="cross-scene: fit each fold on only N of the other clips (default: all of them)")
    parser.add_argument("--frames", type=int, default=120, help="cross-scene: first N frames per clip (default 120)")
    parser.add_argument("--ped2-dir", default="../shared/datasets/ucsd_ped2",
                        help="cross-scene: the Ped2 folder, relative to the project root or absolute "
                             "(default ../shared/datasets/ucsd_ped2)")
    parser.add_argument("--metric", choices=("micro", "macro"), default="micro",
                        help="cross-scene: frame AUC pooled over held-out clips (micro, default) or per clip (macro)")
    parser.add_argument("--off-path-anywhere", action="store_true",
                        help="cross-scene: the off_path set plants wherever no training object stood, the walkway "
                             "included (rounds before off-path round 1) instead of only off the walkable ground")
    parser.add_argument("--rigid-walkers", action="store_true",
                        help="cross-scene: planted walkers are one cut-out translated rigidly (rounds 1-22) instead "
                             "of an animated cut-out whose limbs move (the default from round 23)")
    parser.add_argument("--paste-over", action="store_true",
                        help="cross-scene: planted objects are pasted over everything (every round before session "
                             "60) instead of behind the clip's nearer objects (people whose feet are lower in the "
                             "image, who stand nearer the camera)")
    parser.add_argument("--negatives", choices=("clean", "planted"), default="clean",
                        help="cross-scene: the negatives of each held-out clip: its own frames without the plant "
                             "(clean, the default from session 41) or the planted copy's unlabelled frames (planted, "
                             "every round before; a loiterer's or wrong-way walker's normal walk counted as normal)")
    parser.add_argument("--withhold-place", type=float, default=None, metavar="SHARE",
                        help="cross-scene: each fold's fit leaves out every track that stands in one place holding "
                             "this share of its footprints (a place the training days never showed, as a new day's "
                             "video may use; default: off)")
    parser.add_argument("--fragments", type=float, default=None, metavar="P",
                        help="cross-scene: each track of a scored clip (held-out and planted, not the fit) is cut to "
                             "its upper part for a stretch of its detections with probability P, as a detector that "
                             "loses people's lower halves on new video (default: off)")
    parser.add_argument("--crowd", action="store_true",
                        help="cross-scene: each scored clip (held-out and planted, not the fit) gets a crowd: the "
                             "people of a clip of the same camera that no fold fits on pasted over it, as a busier "
                             "day (tao_lab.validation.crowd; Ped2 scenes: --clips 8 or fewer; default: off)")
    parser.add_argument("--json", help="cross-scene: also write the AUC table (variant -> scene -> set) to this file")
    parser.add_argument("--alarm", help="cross-scene: YAML file {methods: [...], targets: [...], folds: [...]} of "
                                        "frame-alarm candidates to compare instead of scorer variants")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the base config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))

    from omegaconf import OmegaConf

    from tao_lab.config import compose_config
    from tao_lab.no_network import set_offline_env
    from tao_lab.pipeline import load_dataset
    from tao_lab.validation.protocol import validate

    set_offline_env()
    base = list(args.overrides)
    variants: dict[str, list[str]] = {"configured": []}
    if args.variants:
        if not Path(args.variants).is_file():
            parser.error(f"variants file not found: {args.variants}")
        loaded = OmegaConf.to_container(OmegaConf.load(args.variants))
        if not isinstance(loaded, dict) or not all(isinstance(v, list) for v in loaded.values()):
            parser.error(f"{args.variants}: expected a mapping {{name: [override, ...]}}")
        variants = {str(k): [str(o) for o in v] for k, v in loaded.items()}
    if args.alarm:
        if not args.scenes:
            parser.error("--alarm needs --scenes (it runs on the cross-scene validation's scenes)")
        return _alarm(args, parser, base)
    if args.scenes:
        return _cross_scene(args, parser, base, variants)
    cfg = compose_config(base)
    dataset = load_dataset(cfg)
    start = time.perf_counter()
    result = validate(cfg, {name: compose_config(base + o) for name, o in variants.items()},
                      dataset.train, seed=args.seed, show_progress=bool(cfg.get("progress", True)))
    print(f"\nleave-one-clip-out frame AUC on planted anomalies, {len(dataset.train)} training clips of "
          f"{dataset.name} (seed {args.seed}; test clips not read), {time.perf_counter() - start:.0f} s")
    print(result.table())
    return 0


def _names(value: str, default: tuple, every: tuple, flag: str, parser) -> list[str]:
    if value == "default":
        return list(default)
    if value == "all":
        return list(every)
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if n not in every]
    if bad or not names:
        parser.error(f"{flag}: unknown {bad or value!r}; expected 'default', 'all' or a comma list of {list(every)}")
    return names


def _seeds(args, parser) -> list[int]:
    """The plantings: --seeds (a comma list) or --seed."""
    if not args.seeds:
        return [int(args.seed)]
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds: expected distinct integers, got {args.seeds!r}")
    return seeds


def _scene_setup(args, parser) -> tuple[list[str], list[str], Path]:
    """The cross-scene protocols' scenes, planted sets and Ped2 folder from the command line (checked)."""
    from tao_lab.validation.behaviours import BEHAVIOURS
    from tao_lab.validation.scenes import DEFAULT_SCENES, SCENES

    scenes = _names(args.scenes, DEFAULT_SCENES, SCENES, "--scenes", parser)
    sets = _names(args.sets, BEHAVIOURS, BEHAVIOURS, "--sets", parser)
    if args.clips < 2 or args.frames < 30:
        parser.error("--clips must be >= 2 (leave-one-clip-out) and --frames >= 30")
    ped2_dir = Path(args.ped2_dir)
    return scenes, sets, ped2_dir if ped2_dir.is_absolute() else ROOT / ped2_dir


def _alarm(args, parser, base: list[str]) -> int:
    from omegaconf import OmegaConf

    from tao_lab.config import compose_config
    from tao_lab.validation.alarm_choice import candidates_from, validate_alarm

    if not Path(args.alarm).is_file():
        parser.error(f"alarm candidates file not found: {args.alarm}")
    spec = OmegaConf.to_container(OmegaConf.load(args.alarm))
    if not isinstance(spec, dict):
        parser.error(f"{args.alarm}: expected a mapping {{methods: [...], targets: [...], folds: [...]}}")
    try:
        candidates = candidates_from(spec)
    except ValueError as err:
        parser.error(f"{args.alarm}: {err}")
    scenes, sets, ped2_dir = _scene_setup(args, parser)
    cfg = compose_config(base)
    start = time.perf_counter()
    result = validate_alarm(cfg, candidates, scenes, sets, str(ped2_dir), args.clips, args.frames, seed=args.seed,
                            show_progress=bool(cfg.get("progress", True)))
    print(f"\nframe alarm candidates on planted training clips, {len(result.scenes)} scenes x {len(result.sets)} "
          f"sets, {args.clips} clips x {args.frames} frames per scene (seed {args.seed}; test clips not read), "
          f"{time.perf_counter() - start:.0f} s")
    print("FA = false-alarm rate on normal frames (pooled); recall = mean over scene x set cells; fit flagged = "
          "share of the fit window's frames flagged (window mode)")
    print(result.table())
    return 0


def _cross_scene(args, parser, base: list[str], variants: dict[str, list[str]]) -> int:
    from tao_lab.config import compose_config
    from tao_lab.validation.cross_scene import average_results, cross_scene_validate

    scenes, sets, ped2_dir = _scene_setup(args, parser)
    seeds = _seeds(args, parser)
    if args.withhold_place is not None and not 0.0 < args.withhold_place < 1.0:
        parser.error(f"--withhold-place must be a share in (0, 1), got {args.withhold_place}")
    if args.fragments is not None and not 0.0 < args.fragments <= 1.0:
        parser.error(f"--fragments must be a probability in (0, 1], got {args.fragments}")
    if args.crowd:
        from tao_lab.validation.scenes import spare_clips

        try:  # each scene needs a spare clip of its camera per validated clip (cheap: the clips are read lazily)
            spare_clips(scenes, args.clips, args.frames, str(ped2_dir))
        except ValueError as err:
            parser.error(f"--crowd: {err}")
    cfg = compose_config(base)
    start = time.perf_counter()
    composed = {name: compose_config(base + o) for name, o in variants.items()}
    per_seed = [cross_scene_validate(cfg, composed, scenes, sets, str(ped2_dir), args.clips, args.frames, seed=sd,
                                     show_progress=bool(cfg.get("progress", True)), metric=args.metric,
                                     fit_clips=args.fit_clips, animate=not args.rigid_walkers,
                                     off_path_ground=not args.off_path_anywhere, negatives=args.negatives,
                                     withhold=args.withhold_place, fragments=args.fragments, crowd=args.crowd,
                                     occlusion=not args.paste_over)
                for sd in seeds]
    result = average_results(per_seed)
    fitted_on = "all other clips" if args.fit_clips is None else f"{args.fit_clips} other clip(s)"
    planted_with = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {','.join(map(str, seeds))}"
    withheld = ("" if args.withhold_place is None else
                f", one place withheld from each fit ({args.withhold_place:g} of its footprints)")
    if args.fragments is not None:
        withheld += f", tracks of the scored clips cut to pieces (probability {args.fragments:g})"
    if args.crowd:
        withheld += ", the scored clips crowded (the people of a spare clip of the camera pasted over them)"
    print(f"\ncross-scene leave-one-clip-out frame AUC ({args.metric}) on planted behaviours, {args.clips} training "
          f"clips x {args.frames} frames per scene, each fold fitted on {fitted_on}, "
          f"{'rigid' if args.rigid_walkers else 'animated'} walkers, planted objects "
          f"{'pasted over everything' if args.paste_over else 'behind nearer people'}, off-path walkers "
          f"{'anywhere unvisited' if args.off_path_anywhere else 'off the walkable ground'}, negatives "
          f"{'the held-out clip without the plant' if args.negatives == 'clean' else 'the planted copy unlabelled'}"
          f"{withheld} ({planted_with}; test clips not read), "
          f"{time.perf_counter() - start:.0f} s")
    summed = " (summed over the seeds)" if len(seeds) > 1 else ""
    print(f"labelled frames per scene and set{summed}: " + "; ".join(
        f"{s}: " + ",".join(str(result.positives[s][k]) for k in result.sets) for s in result.scenes))
    print(result.tables())
    if len(seeds) > 1:
        width = max(len("variant"), *(len(v) for v in result.auc))
        print("\nMEAN per seed:\n" + f"{'variant':<{width}} | " + " | ".join(f"{f'seed {sd}':>9}" for sd in seeds))
        for v in result.auc:
            print(f"{v:<{width}} | " + " | ".join(f"{r.mean(v):9.4f}" for r in per_seed))
    if args.json:
        import json

        from tao_lab.run_info import _atomic_write

        record = {"scenes": result.scenes, "sets": result.sets, "clips": args.clips, "frames": args.frames,
                  "seed": seeds[0] if len(seeds) == 1 else seeds,
                  "mean_per_seed": {v: [r.mean(v) for r in per_seed] for v in result.auc}, "metric": args.metric,
                  "fit_clips": args.fit_clips, "variants": variants, "animated_walkers": not args.rigid_walkers,
                  "off_path_ground": not args.off_path_anywhere, "negatives": args.negatives,
                  "withhold_place": args.withhold_place, "fragments": args.fragments, "crowd": args.crowd,
                  "occlusion": not args.paste_over, "base_overrides": base,
                  "auc": result.auc, "mean": {v: result.mean(v) for v in result.auc}, "positives": result.positives}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(record, indent=2, allow_nan=True))
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
