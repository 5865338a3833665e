"""benchmarks/validation_rounds.py: the rule files searched by term, their outcomes and the doc lines naming them."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


def rounds_module():
    return load_benchmark("validation_rounds")


def test_search_outcome_and_readme_lines(tmp_path):
    m = rounds_module()
    rules = tmp_path / "validation"
    rules.mkdir()
    (rules / "a_round1.yaml").write_text(
        "# A round about the gate.\n# Selection rule: ...\ndefault: []\ngate: [\"tracker.max_size_change=2.0\"]\n"
        "# Outcome (appended): C 0.89 / 0.88,\n# THE DEFAULT STAYS.\n")
    (rules / "b_round1.yaml").write_text("# Caps.\ndefault: []\ncap_3: [\"scorer.fusion_group_cap=3.0\"]\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\nrule `a_round1.yaml` lost\nmore\nand a_round1.yaml again\n")
    (tmp_path / "docs").mkdir()
    history = tmp_path / "docs" / "ROUNDS.md"
    history.write_text("# Rounds\n\na_round1.yaml in detail\n")

    found = m.find_rounds(["MAX_SIZE_CHANGE"], rules, readme)
    assert [r.name for r in found] == ["a_round1.yaml"]
    a = found[0]
    assert a.variants == {"default": [], "gate": ["tracker.max_size_change=2.0"]}
    assert a.outcome == "Outcome (appended): C 0.89 / 0.88, THE DEFAULT STAYS."
    assert a.doc_lines == {"README.md": [2, 4]}
    text = m.describe(a)
    assert "gate: tracker.max_size_change=2.0" in text and "README.md lines 2, 4" in text
    # with the round histories of docs/ searched too, every file that names it is listed
    a2 = m.find_rounds(["max_size_change"], rules, [readme, history])[0]
    assert a2.doc_lines == {"README.md": [2, 4], "docs/ROUNDS.md": [3]}
    assert "README.md lines 2, 4; docs/ROUNDS.md lines 3" in m.describe(a2)

    both = m.find_rounds([], rules, readme)
    assert [r.name for r in both] == ["a_round1.yaml", "b_round1.yaml"]  # outside git: by name
    assert both[1].outcome == "" and both[1].doc_lines == {}
    assert "not in the docs" in m.describe(both[1])
    assert m.find_rounds(["round1", "cap"], rules, readme)[0].name == "b_round1.yaml"  # every term must be there
    assert m.find_rounds(["nowhere"], rules, readme) == []

    (rules / "c_bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping of variant names"):
        m.find_rounds([], rules, readme)


def test_every_rule_file_of_the_repository_parses():
    m = rounds_module()
    rounds = m.find_rounds([])
    assert len(rounds) == len(list((ROOT / "benchmarks" / "validation").glob("*.yaml")))
    by_name = {r.name: r for r in rounds}
    for name in ("tracker_gate_round1.yaml", "calibration_point_round1.yaml", "group_cap_round2.yaml",
                 "motion_side_round1.yaml"):
        assert "STAYS" in by_name[name].outcome and by_name[name].doc_lines
