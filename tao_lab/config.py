"""The project's Hydra config composed outside ``@hydra.main``: for scripts, benchmarks and tests."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence

#: configs/ at the project root (next to eval.py).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_config(overrides: Sequence[str] = (), config_name: str = "eval", config_dir: Optional[Path] = None):
    """``configs/<config_name>.yaml`` (or ``config_dir``'s) with ``overrides`` applied (a DictConfig; no run dir
    is created).

    Hydra's global state is cleared before and after, so calls may follow each other and a ``@hydra.main`` run.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir or CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def to_plain(obj: Any) -> Any:
    """OmegaConf containers (what Hydra passes) -> plain, resolved dicts and lists, also when nested in plain dicts,
    lists and tuples (tuples become lists); anything else unchanged. For hyper-parameters that pickle without
    omegaconf and for cache keys. omegaconf is imported only when a container is met."""
    if hasattr(obj, "_content") or type(obj).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def parse_with_overrides(parser, argv: Optional[Sequence[str]] = None, example: str = "scorer=attribute_speed"):
    """``(args, overrides)`` of a script that takes its own ``--options`` plus Hydra overrides (``key=value``,
    ``group=option``); an unknown ``--option`` stops the script with a message instead of becoming an override."""
    args, extra = parser.parse_known_args(argv)
    bad = [o for o in extra if o.startswith("-")]
    if bad:
        parser.error(f"unknown option(s) {bad}; extra arguments must be Hydra overrides such as {example}")
    return args, extra
