"""``python -m tao_lab.validation [--variants FILE] [--seed N] [hydra overrides ...]``

Compares scorer variants by leave-one-clip-out frame AUC on the TRAINING clips of the configured dataset with
planted anomalies (:mod:`tao_lab.validation.protocol`); test clips are never read. The variants file is YAML,
``{name: [hydra override, ...]}``, each applied on top of the base overrides; without it, the configured scorer
is validated alone. Example (the file that chose the default attribute scorer):

    python -m tao_lab.validation --variants benchmarks/validation/attribute_scorer.yaml \\
        dataset=ucsd_ped2 paths.data_dir=../shared/datasets/ucsd_ped2
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
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the base config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))

    from omegaconf import OmegaConf

    from tao_lab.config import compose_config
    from tao_lab.offline import set_offline_env
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
    cfg = compose_config(base)
    dataset = load_dataset(cfg)
    start = time.perf_counter()
    result = validate(cfg, {name: compose_config(base + o) for name, o in variants.items()},
                      dataset.train, seed=args.seed, show_progress=bool(cfg.get("progress", True)))
    print(f"\nleave-one-clip-out frame AUC on planted anomalies, {len(dataset.train)} training clips of "
          f"{dataset.name} (seed {args.seed}; test clips not read), {time.perf_counter() - start:.0f} s")
    print(result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
