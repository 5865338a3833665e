"""Shared fixtures: compose the real Hydra configs, shrunk, with outputs and caches under tmp_path."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
PED2_DIR = ROOT.parent / "shared" / "datasets" / "ucsd_ped2"

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ["WANDB_MODE"] = os.environ.get("TAO_TEST_WANDB_MODE", "disabled")

from tao_lab.offline import set_offline_env  # noqa: E402

set_offline_env()

# A tiny synthetic dataset: enough objects to fit density models, small enough for seconds-long runs.
TINY_SYNTHETIC = ["dataset.num_train_clips=2", "dataset.num_test_clips=2", "dataset.num_frames=60"]


def compose(config_name: str = "eval", overrides=(), tmp_path: Path | None = None):
    """The real config, with run outputs and the stage cache moved under tmp_path."""
    from tao_lab.config import compose_config

    extra = []
    if config_name in ("eval", "train") and not any(str(o).lstrip("+~").startswith("validation") for o in overrides):
        # val/ metrics cost a leave-one-clip-out pass with planted clips; tests/test_validation_in_run.py turns it on
        extra.append("validation=none")
    if tmp_path is not None:
        extra += [f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                  f"paths.log_dir={tmp_path / 'logs'}"]
    return compose_config([*extra, "progress=false", *overrides], config_name=config_name)


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(config_name="eval", overrides=()):
        return compose(config_name, overrides, tmp_path)
    return _compose


def ped2_available() -> bool:
    return (PED2_DIR / "UCSDped2" / "Test").is_dir()
