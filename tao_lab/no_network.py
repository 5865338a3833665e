"""Keeps every library off the network: nothing in tao_lab may download weights, fonts or telemetry.

Called by the entry points and by any module that is about to import ultralytics / wandb / hub-aware code.
Idempotent; values the user already set (e.g. WANDB_MODE=online) are kept.
"""
from __future__ import annotations

import os
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_done = False


def set_offline_env(cache_dir: str | os.PathLike | None = None) -> None:
    """Sets the offline environment variables (before the libraries are imported).

    cache_dir: where ultralytics keeps its settings (YOLO_CONFIG_DIR); defaults to `<project>/.cache/ultralytics`.
    """
    global _done
    config_dir = Path(cache_dir) if cache_dir else _PROJECT_ROOT / ".cache" / "ultralytics"
    defaults = {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "YOLO_VERBOSE": "False",
        "YOLO_CONFIG_DIR": str(config_dir),
        "WANDB_MODE": "offline",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TORCH_HOME": str(_PROJECT_ROOT / ".cache" / "torch"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if not _done:
        Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    _done = True


def disable_ultralytics_sync() -> None:
    """Turns off ultralytics' analytics sync once it is imported (settings live in YOLO_CONFIG_DIR)."""
    set_offline_env()
    from ultralytics.utils import SETTINGS  # heavy; only when ultralytics is used anyway

    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
