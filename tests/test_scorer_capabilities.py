"""What a scorer can do is declared on its class (ObjectScorer's capability attributes) and read from the class
the config names; the shared percentile calibration."""
import logging

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, compose


def test_capabilities_are_class_attributes_with_defaults():
    from tao_lab.scorer import AttributeScorer, ObjectScorer
    from tao_lab.scorer.temporal_mae import TemporalMaeScorer

    assert (ObjectScorer.needs_trainer, ObjectScorer.trainer_factory, ObjectScorer.supports_unlabeled,
            ObjectScorer.cache_version) == (False, False, False, 1)
    assert (AttributeScorer.needs_trainer, AttributeScorer.supports_unlabeled) == (False, False)
    assert (TemporalMaeScorer.needs_trainer, TemporalMaeScorer.trainer_factory,
            TemporalMaeScorer.supports_unlabeled) == (True, True, True)
    assert AttributeScorer().fit_metrics == {}  # every scorer has fit statistics, empty before a fit


def test_scorer_class_reads_the_config_target_and_refuses_a_non_scorer():
    from tao_lab.scorer import AttributeScorer
    from tao_lab.scorer.base import scorer_class
    from tao_lab.user_errors import ConfigError

    assert scorer_class("tao_lab.scorer.AttributeScorer") is AttributeScorer
    with pytest.raises(ConfigError, match="'tao_lab.threshold.FixedThreshold' is not an ObjectScorer"):
        scorer_class("tao_lab.threshold.FixedThreshold")


def test_the_cache_key_follows_the_declared_cache_version(tmp_path, monkeypatch):
    from tao_lab.pipeline import Pipeline
    from tao_lab.scorer import AttributeScorer

    cfg = compose("eval", TINY_SYNTHETIC, tmp_path)
    pipe = Pipeline(cfg)
    # 3: fits record their k-NN bank clips (2) and the scene check's training shares (3)
    assert pipe.scorer_spec([])["code"] == AttributeScorer.cache_version == 3
    monkeypatch.setattr(AttributeScorer, "cache_version", 1)
    assert "code" not in pipe.scorer_spec([])  # version 1 keeps the keys of fits made before versions existed
    monkeypatch.setattr(AttributeScorer, "cache_version", 4)
    assert pipe.scorer_spec([])["code"] == 4


def test_percentile_calibration_maps_min_to_0_and_the_upper_point_to_1(caplog):
    from tao_lab.scorer.calibration import calibrate, percentile_range

    scores = np.array([np.nan, 2.0, 4.0, 6.0, np.inf, 12.0])
    lo, hi = percentile_range(scores, 100.0, "attribute 'speed'")
    assert (lo, hi) == (2.0, 12.0)
    np.testing.assert_array_equal(calibrate(np.array([2.0, 7.0, 22.0]), lo, hi), [0.0, 0.5, 2.0])
    assert percentile_range(np.arange(101.0), 90.0, "x") == (0.0, 90.0)
    with caplog.at_level(logging.WARNING):
        assert percentile_range(np.full(5, 3.0), 99.9, "attribute 'size'") == (3.0, 4.0)
    assert "attribute 'size': calibration scores are constant" in caplog.text
    with pytest.raises(ValueError, match="attribute 'x': no finite calibration scores"):
        percentile_range(np.array([np.nan]), 99.9, "attribute 'x'")
