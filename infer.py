"""Infer: run the whole pipeline on any video file or frame folder (no ground truth needed).

Usage: python infer.py [overrides]   (see configs/infer.yaml; README.md lists examples)
"""
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig):
    from tao_lab.tasks import infer, run_cli

    result = run_cli(cfg, infer)
    return result.get(cfg.get("optimized_metric", "")) if isinstance(result, dict) else None


if __name__ == "__main__":
    main()
