"""benchmarks/scene_shift.py: the share it prints, on hand-made excesses with known answers."""
import numpy as np
from helpers import load_benchmark


def _module():
    return load_benchmark("scene_shift")


def test_excess_shares_count_only_quiet_objects_above_the_threshold():
    shares = _module().excess_shares
    excess = np.array([[0.6, 0.7, 0.1, 0.9, 2.0],    # 3 of the 4 quiet objects above 0.5 (the 5th is not quiet)
                       [0.5, 0.0, -0.2, 0.51, 3.0]])  # 0.5 itself does not count: 1 of 4
    quiet = np.array([True, True, True, True, False])
    np.testing.assert_allclose(shares(excess, quiet, 0.5), [0.75, 0.25])
    np.testing.assert_allclose(shares(excess, quiet, 0.0), [1.0, 0.5])
    assert np.isnan(shares(excess, np.zeros(5, bool), 0.5)).all()
