"""Extract: run detect -> track -> features on every clip and fill the stage cache (then, once every clip is in,
the scorer fit and the test clips' scores, prompts and masks: configs/extract.yaml `fill_downstream`).

Usage: python extract.py [overrides]   (see configs/extract.yaml; README.md lists examples)
"""
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="extract")
def main(cfg: DictConfig):
    from tao_lab.sharding import check_shard
    from tao_lab.tasks import extract, run_cli

    # a bad shard fails the job (and a sweep) before any run record or work, also under a multirun launcher
    check_shard(cfg.get("shard", 0), cfg.get("num_shards", 1))
    result = run_cli(cfg, extract)
    return result.get(cfg.get("optimized_metric", "")) if isinstance(result, dict) else None


if __name__ == "__main__":
    main()
