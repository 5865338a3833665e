"""Cheap checks that run before the expensive stages, so a typo fails in a second instead of after extraction.

- :func:`check_run_config`: the types and ranges of the plain config values read late (metrics, infer options);
- :func:`check_components`: builds every stage from its config (construction is cheap and loads no weights, so a
  bad value fails here, named by Hydra's config group) and checks that the weights files they will open exist;
- :func:`check_mask_sizes`: the first and last pixel mask of every clip have the frame size.
Errors are :class:`~tao_lab.user_errors.ConfigError`, FileNotFoundError or DataError: user errors that the entry
points print as one message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from tao_lab.user_errors import ConfigError

_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def _number(cfg: DictConfig, key: str, kind: type, low: float | None = None, high: float | None = None,
            low_open: bool = False, allow_none: bool = False) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        if allow_none or OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            return
        raise ConfigError(f"config value {key} is null; give a number")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind is int and not float(value).is_integer()):
        raise ConfigError(f"config value {key}={value!r} is not {'an integer' if kind is int else 'a number'}; "
                          f"set e.g. {key}={_example(key)}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise ConfigError(f"config value {key}={value!r} must be {'>' if low_open else '>='} {low:g}")
    if high is not None and v > high:
        raise ConfigError(f"config value {key}={value!r} must be <= {high:g}")


def _example(key: str) -> str:
    return {"metrics.fpr_limit": "0.3", "metrics.gt_min_area": "20", "fit_seconds": "10",
            "chunk_seconds": "60"}.get(key, "<number>")


def _flag(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"config value {key}={value!r} must be true or false")


def check_run_config(cfg: DictConfig, task: str) -> None:
    """Types and ranges of the plain values a task reads after its expensive stages (ConfigError naming the key)."""
    if task == "evaluate" and OmegaConf.select(cfg, "metrics") is not None:
        _number(cfg, "metrics.fpr_limit", float, 0.0, 1.0, low_open=True)
        _number(cfg, "metrics.gt_min_area", int, 0)
        for key in ("pixel_standard", "pixel_tao", "object", "group_ties", "gt_gating"):
            _flag(cfg, f"metrics.{key}")
        from tao_lab.dataset.label_check import check_mode

        try:
            check_mode(OmegaConf.select(cfg, "metrics.label_mask_mismatch", default="error"))
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if task == "infer":
        _number(cfg, "fit_seconds", float, 0.0, low_open=True)
        _number(cfg, "chunk_seconds", float, 0.0, allow_none=True)
        _number(cfg, "max_chunk_mb", float, 0.0, low_open=True, allow_none=True)
        for key in ("write_video", "write_masks", "report", "online"):
            _flag(cfg, key)


def check_components(pipe, with_threshold: bool = True) -> None:
    """Builds each stage of ``pipe`` (cached on it, so no work is repeated) and checks their weights files."""
    from tao_lab.pipeline import instantiate

    components = {"detector": pipe.detector, "tracker": pipe.tracker, "features": pipe.feature_set,
                  "prompt_filter": pipe.prompt_filter, "segmenter": pipe.segmenter}
    if with_threshold and OmegaConf.select(pipe.cfg, "threshold") is not None:
        instantiate(pipe.cfg.threshold)  # fitted later, after scoring: a bad value must not wait that long
    extractors = getattr(components["features"], "extractors", {}) or {}
    for name, ext in extractors.items():
        components[f"features.extractors.{name}"] = ext
    for name, obj in components.items():
        check_weights(name, obj)


def check_weights(name: str, obj: Any) -> None:
    """FileNotFoundError naming the file when a component will open a weights file that does not exist."""
    checkpoint = getattr(obj, "checkpoint", None)
    if isinstance(checkpoint, (str, Path)) and not getattr(obj, "random_init", False):
        if not Path(checkpoint).is_file():
            if hasattr(obj, "missing_checkpoint_message"):  # the component says where its file comes from
                raise FileNotFoundError(obj.missing_checkpoint_message())
            try:
                from tao_lab.segmenter.sam2_segmenter import missing_checkpoint_message

                message = missing_checkpoint_message(Path(checkpoint), obj.version, obj.backbone)
            except (ImportError, AttributeError):
                message = f"{name} weights not found: {checkpoint}; put the file there or set {name}.checkpoint"
            raise FileNotFoundError(message)
    weights = getattr(obj, "weights", None)
    if isinstance(weights, (str, Path)) and str(weights).endswith(_WEIGHT_SUFFIXES) and not Path(weights).is_file():
        raise FileNotFoundError(f"{name} weights not found: {Path(weights).resolve()}. Nothing is downloaded at run "
                                f"time: copy the file there (paths.weights_dir) or set {name}.weights to its path")


def check_mask_sizes(clips: Iterable) -> None:
    """Reads the first and last pixel mask of each clip (DataError from the reader when one has another size than
    the frames); a mask array of the wrong shape fails here instead of after the pipeline ran."""
    from tao_lab.dataset.errors import DataError

    for clip in clips:
        gt = clip.gt
        if gt is None or gt.mask is None or not clip.num_frames:
            continue
        for i in sorted({0, clip.num_frames - 1}):
            m = gt.mask(i)
            if tuple(m.shape[:2]) != (clip.height, clip.width):
                raise DataError(f"clip {clip.clip_id} ({clip.source}): mask {i} has size {m.shape[1]}x{m.shape[0]} "
                                f"(WxH) but the frames are {clip.width}x{clip.height}; masks must match the frames")
