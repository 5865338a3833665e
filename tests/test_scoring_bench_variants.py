"""benchmarks/scoring_bench.py --variants: named override lists read from a YAML file, bad files refused."""
import pytest
from helpers import PED2_DIR, load_benchmark


def _bench():
    return load_benchmark("scoring_bench")


def test_variants_file_gives_named_override_lists_in_file_order(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text('default: ["scorer=attribute"]\nsmooth: ["scorer=attribute", "scorer.frame_sigma=6.0"]\n')
    assert _bench().load_variants(str(path)) == {"default": ["scorer=attribute"],
                                                 "smooth": ["scorer=attribute", "scorer.frame_sigma=6.0"]}


@pytest.mark.parametrize("text", ["- scorer=attribute\n", "a: scorer=attribute\n", "a: [1, 2]\n", "{}\n"])
def test_malformed_variants_file_is_refused(tmp_path, text):
    path = tmp_path / "v.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match="expected a mapping name -> list of override strings"):
        _bench().load_variants(str(path))


def test_missing_variants_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match="variants file not found"):
        _bench().load_variants(str(tmp_path / "absent.yaml"))


def test_variants_cannot_be_mixed_with_another_comparison(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text('a: ["scorer=attribute"]\n')
    with pytest.raises(SystemExit, match="compare one group at a time"):
        _bench().main(["--variants", str(path), "--scorer", "attribute"])


@pytest.mark.skipif(not (PED2_DIR / "UCSDped2" / "Test").is_dir(), reason="real Ped2 copy not beside the project")
def test_masks_option_times_the_prompt_filter_and_the_segmenter(capsys):
    """--masks: on one training and one test clip of Ped2, the prompt filter and the segmenter are timed as stages
    of their own, and frames -> masks (all six stages) is slower than the four scoring stages alone."""
    r = _bench().main(["--max-clips", "1", "--no-parallel", "--masks", f"--data-dir={PED2_DIR}"])
    assert {"detect", "track", "features", "score", "prompts", "segment"} == set(r["fps"])
    assert 0 < r["fps_masks"] < r["fps_total"]
    n_over_t = 1 / sum(1 / v for v in r["fps"].values())  # frames / (sum of the stages' seconds)
    assert r["fps_masks"] == pytest.approx(n_over_t, rel=1e-6)
    assert "frames -> masks, all six" in capsys.readouterr().out
