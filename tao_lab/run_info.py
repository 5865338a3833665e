"""What every run writes into its own folder: resolved config, package versions, git commit, metrics."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tao_lab.scene_check import DESCRIPTION as SCENE_CHECK_DESCRIPTION

PACKAGES = ("tao_lab", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "opencv-python", "hydra-core",
            "omegaconf", "lightning", "torchmetrics", "ultralytics", "sam2", "wandb")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes (None outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def resolved_config(cfg: DictConfig) -> dict:
    """The config with every interpolation resolved (no ``${...}`` left)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_info(out_dir: Path, cfg: DictConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "config_resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg))))
    _atomic_write(out_dir / "versions.json", json.dumps(package_versions(), indent=2))
    _atomic_write(out_dir / "git.json", json.dumps(git_commit(), indent=2))


def write_metrics(out_dir: Path, metrics: dict[str, float], per_video: list[dict] | None = None) -> None:
    """metrics.json (flat keys) and metrics.csv (key,value rows); per_video.csv when given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    rows = "".join(f"{k},{v!r}\n" for k, v in sorted(metrics.items()))
    _atomic_write(out_dir / "metrics.csv", "metric,value\n" + rows)
    if per_video:
        keys = list(dict.fromkeys(k for row in per_video for k in row))
        tmp = out_dir / "per_video.csv.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(per_video)
        os.replace(tmp, out_dir / "per_video.csv")


LEVELS = (("frame", "Frame level"), ("pixel", "Pixel level"), ("object", "Object level"))
SCENE_CHECK_TITLE = f"Scene check: {SCENE_CHECK_DESCRIPTION}, here / training"
# Keys that count things or give an operating point rather than measure quality.
_BOOKKEEPING = ("_num_", "_frames_", "_macro_videos", "_threshold", "/frames")


def _is_bookkeeping(key: str) -> bool:
    return any(part in key for part in _BOOKKEEPING) or key.startswith(("time/", "train/"))


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A plain-text table: the metrics grouped by level (frame, pixel, object), then counts and timings."""
    lines = []
    width = max((len(k) for k in metrics), default=10) + 2
    quality = [k for k in metrics if not _is_bookkeeping(k)]
    for level, title in LEVELS:
        keys = [k for k in quality if k.split("/", 1)[-1].startswith(level + "_")]
        if keys:
            lines.append(title)
            lines.extend(f"  {k:<{width}} {metrics[k]:8.4f}" for k in keys)
    scene = [k for k in metrics if k.split("/", 1)[-1].startswith("scene_check_")]
    if scene:  # evaluated split first, then the training reference of each group
        lines.append(SCENE_CHECK_TITLE)
        lines.extend(f"  {k:<{width}} {metrics[k]:8.4f}" for k in sorted(scene, key=lambda k: (
            k.split("/", 1)[-1], k.startswith("train/"))))
    rest = [k for k in metrics if k not in scene and (k not in quality or not any(
        k.split("/", 1)[-1].startswith(level + "_") for level, _ in LEVELS))]
    if rest:
        lines.append("Counts, operating points, timings (s)")
        lines.extend(f"  {k:<{width}} {metrics[k]:.10g}" for k in rest)
    return "\n".join(lines)
