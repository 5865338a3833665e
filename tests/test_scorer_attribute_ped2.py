"""Slow: the weight-free scorers on the real UCSD Ped2 copy, label-free (about 3-4 minutes on 2 cores).

The speed-only scorer (scorer=attribute_speed) is the tool for Ped2's speed anomalies; the scene-general default
trades some of Ped2 for the other kinds of anomaly (README "The scene-general default loses on Ped2"), so its bound
is the level it was measured at when chosen, not the speed scorer's.
"""
from __future__ import annotations

import os

import pytest

from helpers import PED2_DIR, load_benchmark

PED2 = str(PED2_DIR)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(PED2), reason="the real Ped2 copy (../shared/datasets/ucsd_ped2) is absent")
def test_default_and_speed_scorers_on_ped2():
    bench = load_benchmark("scoring_bench")
    rows = bench.main(["--data-dir", PED2, "--scorer", "attribute_speed", "attribute", "--no-parallel"])
    assert rows["attribute_speed"]["frame_auc_micro"] >= 0.92  # speed anomalies: the speed scorer's contract
    # the default as measured after off-path round 1 (0.836 micro, 0.880 macro; 0.854 / 0.880 before it, 0.851 / 0.878
    # after motion split round 2, 0.876 / 0.882 before that, docs/SCORER_ROUNDS.md: each chosen on
    # training clips; off-path round 1 cost Ped2's test set 0.019 micro; 0.841 / 0.869 after dwell height round 1,
    # session 46; 0.829 / 0.860 after dwell jump round 1, session 50, 0.843 / 0.882 before it; 0.831 / 0.861 after
    # dwell gap round 1, session 56; 0.827 / 0.872 after session 58's track percentile and depth-relative smallest
    # blob): a drop below this is a regression
    assert rows["attribute"]["frame_auc_micro"] >= 0.82
    assert rows["attribute"]["frame_auc_macro"] >= 0.85
    for r in rows.values():
        assert r["region_recall_any"] > 0.95  # boxes overlap (IoU >= 0.1) nearly every GT anomalous region
