"""Every config file composes, and every option of every stage group instantiates."""
import os
from pathlib import Path

import pytest

from helpers import CONFIG_DIR, PED2_DIR, compose

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
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    cfg = compose("infer", [], tmp_path)
    with pytest.raises((MissingMandatoryValue, InterpolationToMissingValueError), match="input"):
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    cfg = compose("infer", ["input=/some/video.mp4"], tmp_path)
    assert cfg.dataset.path == "/some/video.mp4"


# Options that load local model weights when built: with an absent weights_dir they must fail with an error
# naming the missing file (they are exercised with random weights in their own tests). The sam2 segmenters load
# their checkpoint on first use instead; tests/test_segment_sam2.py checks that error.
NEEDS_WEIGHTS = {("detector", "yolo"), ("detector", "hybrid"), ("features", "deep"), ("features", "deep_yolo"),
                 ("features", "pose"), ("features", "pose_blazepose"), ("features", "pose_deep"),
                 ("segmenter", "pose_person")}


@pytest.mark.parametrize("group,option", [(g, o) for g in STAGE_GROUPS for o in _options(g)])
def test_every_stage_option_instantiates(group, option, tmp_path):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    missing = tmp_path / "no_weights_here"
    cfg = compose("eval", [f"{group}={option}", f"paths.weights_dir={missing}"], tmp_path)
    if (group, option) in NEEDS_WEIGHTS:
        with pytest.raises((FileNotFoundError, InstantiationException)) as exc:
            instantiate(cfg[group])
        assert str(missing) in str(exc.value), f"error does not name the missing file: {exc.value}"
        assert "download" in str(exc.value).lower() or "save" in str(exc.value).lower()
        return
    if group == "trainer" and option == "gpu":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no GPU on this machine")
    obj = instantiate(cfg[group])
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
    cfg = compose("eval", ["debug=default"], None)
    assert cfg.paths.cache_dir is None


@pytest.mark.skipif(not (PED2_DIR / "UCSDped2").is_dir(), reason="real Ped2 copy not beside the project")
def test_ped2_dataset_config_instantiates_on_shared_copy(tmp_path):
    from hydra.utils import instantiate

    cfg = compose("eval", ["dataset=ucsd_ped2", f"paths.data_dir={PED2_DIR}", "dataset.max_clips=2"], tmp_path)
    dataset = instantiate(cfg.dataset)
    assert [c.clip_id for c in dataset.test] == ["Test001", "Test002"]
    assert dataset.test[0].num_frames == 180


def test_to_plain_turns_hydra_containers_into_plain_ones_everywhere():
    """The one OmegaConf-to-plain helper (scorer hyper-parameters, stage cache keys): containers are resolved,
    also inside plain dicts, lists and tuples; other values pass unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from tao_lab.config import to_plain

    node = OmegaConf.create({"a": 1, "b": "${a}", "c": [1, {"d": "${a}"}]})
    assert to_plain(node) == OmegaConf.to_container(node, resolve=True) == {"a": 1, "b": 1, "c": [1, {"d": 1}]}
    mixed = to_plain({"x": node.c, 2: (node, 3)})
    assert mixed == {"x": [1, {"d": 1}], "2": [{"a": 1, "b": 1, "c": [1, {"d": 1}]}, 3]}
    assert type(mixed["x"]) is list and not isinstance(mixed["2"][0], DictConfig)
    assert not isinstance(to_plain(OmegaConf.create([1, 2])), ListConfig)
    assert to_plain(None) is None and to_plain(2.5) == 2.5 and to_plain("s") == "s"


def test_with_weights_experiment_is_the_validated_recommendation(tmp_path):
    """experiment=with_weights = the default + deep_yolo features + the deep attribute (issue 19's validation
    winner), weights from the shared folder beside the project unless TAO_WEIGHTS_DIR says otherwise."""
    from omegaconf import OmegaConf

    exp = compose("eval", ["experiment=with_weights"], tmp_path)
    plain = compose("eval", ["features=deep_yolo", "scorer=attribute_deep"], tmp_path)
    assert OmegaConf.to_container(exp.features) == OmegaConf.to_container(plain.features)
    assert OmegaConf.to_container(exp.scorer) == OmegaConf.to_container(plain.scorer)
    assert "deep" in exp.scorer.attributes and exp.features.extractors.deep.backend == "litert"
    assert str(exp.paths.weights_dir).replace("\\", "/").endswith("../shared/weights") or "TAO_WEIGHTS_DIR" in os.environ
