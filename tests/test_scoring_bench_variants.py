"""benchmarks/scoring_bench.py --variants: named override lists read from a YAML file, bad files refused."""
import pytest
from helpers import load_benchmark


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
