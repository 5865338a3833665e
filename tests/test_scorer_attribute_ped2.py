"""Slow: the default weight-free configuration on the real UCSD Ped2 copy (about 1-2 minutes on 2 cores)."""
from __future__ import annotations

import importlib.util
import os

import pytest

from helpers import PED2_DIR, ROOT

PED2 = str(PED2_DIR)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(PED2), reason="the real Ped2 copy (../shared/datasets/ucsd_ped2) is absent")
def test_default_configuration_on_ped2():
    spec = importlib.util.spec_from_file_location("scoring_bench", os.path.join(ROOT, "benchmarks", "scoring_bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--data-dir", PED2])
    assert results["frame_auc_micro"] >= 0.92  # the quality contract of the default
    assert results["region_recall_any"] > 0.95  # boxes overlap (IoU >= 0.1) nearly every GT anomalous region
