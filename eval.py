"""Evaluate: fit or load the scorer, run the pipeline on the test clips, print frame/pixel/object metrics.

Usage: python eval.py [overrides]   (see configs/eval.yaml; README.md lists examples)
"""
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig):
    from tao_lab.tasks import evaluate, run_cli

    result = run_cli(cfg, evaluate)
    return result.get(cfg.get("optimized_metric", "")) if isinstance(result, dict) else None


if __name__ == "__main__":
    main()
