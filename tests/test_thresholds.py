"""Thresholds on known distributions, and their loud fallbacks on degenerate input."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from tao_lab.threshold import EvtThreshold, FixedThreshold, PercentileThreshold, RunningThreshold


def test_fixed_and_percentile():
    t = FixedThreshold(1.5).fit(np.arange(10))
    np.testing.assert_array_equal(t([1.0, 1.5, 2.0, np.nan]), [False, False, True, False])
    x = np.random.default_rng(0).normal(size=100_000)
    p = PercentileThreshold(97.5).fit(x)
    assert abs(p.tau - 1.96) < 0.03
    assert abs(p(x).mean() - 0.025) < 0.002
    with pytest.raises(ValueError):
        PercentileThreshold(101)


def test_unfitted_threshold_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        PercentileThreshold(99)([1.0])


def test_evt_recovers_exponential_quantile():
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 50_000)
    t = EvtThreshold(exceedance=1e-4, tail_quantile=0.98).fit(x)
    true = -np.log(1e-4)  # 9.21: beyond the largest sample of most draws of this size
    assert t.fallback is None
    assert abs(t.shape) < 0.1  # the exponential tail is GPD with shape 0
    assert abs(t.tau - true) < 0.08 * true


def test_evt_recovers_pareto_quantile():
    rng = np.random.default_rng(2)
    x = rng.pareto(4.0, 100_000) + 1.0  # Pareto(alpha=4): P(X > t) = t^-4
    t = EvtThreshold(exceedance=1e-4, tail_quantile=0.99).fit(x)
    assert abs(t.shape - 0.25) < 0.1
    assert abs(t.tau - 1e-4 ** (-1 / 4)) < 0.15 * 10.0


def test_evt_degenerate_inputs_fall_back_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        t = EvtThreshold().fit(np.full(500, 0.7))
    assert t.tau == pytest.approx(0.7) and not t(np.full(10, 0.7)).any()
    assert "all 500 training scores equal" in caplog.text and "falling back" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        t = EvtThreshold(min_tail=20).fit(np.random.default_rng(3).normal(size=300))  # 6 tail points
    assert t.fallback is not None and "min_tail" in caplog.text
    assert t.tau == pytest.approx(np.quantile(np.random.default_rng(3).normal(size=300), 1 - 1e-3))
    caplog.clear()
    x = np.r_[np.random.default_rng(4).exponential(size=5000), np.nan, np.inf]
    with caplog.at_level(logging.WARNING):
        t = EvtThreshold().fit(x)
    assert "dropping 2 non-finite" in caplog.text and np.isfinite(t.tau)
    with pytest.raises(ValueError, match="no finite training scores"):
        EvtThreshold().fit([np.nan, np.nan])
    with pytest.raises(ValueError, match="no finite"):
        PercentileThreshold().fit([])


def test_never_flags_everything_on_constant_training():
    for t in (PercentileThreshold(99), RunningThreshold(3), EvtThreshold()):
        t.fit(np.zeros(100))
        assert not t(np.zeros(50)).any()
        assert t(np.ones(5)).all()


def test_running_threshold_statistics_and_online_update():
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 0.5, 20_000)
    t = RunningThreshold(k=3).fit(x)
    assert t.tau == pytest.approx(2.0 + 1.5, abs=0.03)
    flags = t.update(np.r_[rng.normal(2.0, 0.5, 1000), [10.0, 10.0]])
    assert flags[-2:].all() and flags[:-2].mean() < 0.01
    assert t.count == 20_000 + 1000 - int(flags[:-2].sum())  # flagged scores are not folded in
    # exponential forgetting follows a level shift
    d = RunningThreshold(k=3, decay=0.01, update_on_flagged=True).fit(rng.normal(0, 1, 1000))
    d.update(rng.normal(5, 1, 2000))
    assert abs(d.mean - 5.0) < 0.3 and d.tau == pytest.approx(d.mean + 3 * d.std)


def test_threshold_configs_instantiate():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from helpers import CONFIG_DIR

    root = str(CONFIG_DIR)
    expected = {"fixed": FixedThreshold, "percentile": PercentileThreshold, "running": RunningThreshold,
                "evt": EvtThreshold}
    scores = np.random.default_rng(6).exponential(0.1, size=5000)  # calibrated-like: mostly in [0, 1]
    for option, cls in expected.items():
        with initialize_config_dir(config_dir=root, version_base=None):
            cfg = compose(config_name="pipeline", overrides=[f"threshold={option}"])
        t = instantiate(cfg.threshold).fit(scores)
        assert isinstance(t, cls) and np.isfinite(t.tau)
        if option == "fixed":  # not fitted: the configured tau (the default scorer's scale), strictly above it
            assert t.tau == cfg.threshold.tau == 0.25
            assert np.array_equal(t(scores), scores > 0.25)
        else:
            assert t(scores).mean() < 0.05  # fitted on normal scores: flags only their tail
