"""Every config file composes, and every option of every stage group instantiates."""
from pathlib import Path

import pytest

from conftest import CONFIG_DIR, PED2_DIR, compose

STAGE_GROUPS = ["detector", "tracker", "features", "scorer", "threshold", "prompt_filter", "segmenter", "logger",
                "trainer"]


def _options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_stage_group_has_a_default_and_options():
    defaults = {"dataset": "synthetic", "detector": "background", "tracker": "bytetrack", "features": "default",
                "scorer": "attribute", "threshold": "fixed", "prompt_filter": "robust", "segmenter": "classical",
                "metrics": "default", "logger": "none", "trainer": "cpu", "paths": "default"}
    for group, default in defaults.items():
        assert default in _options(group), f"configs/{group}/{default}.yaml missing"


@pytest.mark.parametrize("entry", ["eval", "train", "extract"])
def test_entry_configs_compose_and_resolve(entry, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose(entry, [], tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["task_name"] == entry
    assert "${" not in OmegaConf.to_yaml(OmegaConf.create(resolved))


def test_infer_config_requires_input(tmp_path):
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    cfg = compose("infer", [], tmp_path)
    with pytest.raises(MissingMandatoryValue):
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    cfg = compose("infer", ["input=/some/video.mp4"], tmp_path)
    assert cfg.dataset.path == "/some/video.mp4"


@pytest.mark.parametrize("group,option", [(g, o) for g in STAGE_GROUPS for o in _options(g)])
def test_every_stage_option_instantiates(group, option, tmp_path):
    """Construction is cheap and needs no weights: weight files are opened on first use."""
    from hydra.utils import instantiate

    cfg = compose("eval", [f"{group}={option}"], tmp_path)
    node = cfg[group].extractors if group == "features" else cfg[group]
    obj = instantiate(node)
    assert obj is not None


@pytest.mark.parametrize("option", _options("dataset"))
def test_every_dataset_option_composes(option, tmp_path):
    overrides = [f"dataset={option}"]
    if option == "video":
        overrides.append("dataset.path=/nonexistent.mp4")
    cfg = compose("eval", overrides, tmp_path)
    assert "_target_" in cfg.dataset


def test_experiment_and_debug_presets_compose(tmp_path):
    for exp in sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")):
        overrides = [f"experiment={exp}"]
        compose("eval", overrides, tmp_path)
    cfg = compose("eval", ["debug=default"], tmp_path)
    assert cfg.paths.cache_dir is None


@pytest.mark.skipif(not (PED2_DIR / "UCSDped2").is_dir(), reason="real Ped2 copy not beside the project")
def test_ped2_dataset_config_instantiates_on_shared_copy(tmp_path):
    from hydra.utils import instantiate

    cfg = compose("eval", ["dataset=ucsd_ped2", f"paths.data_dir={PED2_DIR}", "dataset.max_clips=2"], tmp_path)
    dataset = instantiate(cfg.dataset)
    assert [c.clip_id for c in dataset.test] == ["Test001", "Test002"]
    assert dataset.test[0].num_frames == 180
