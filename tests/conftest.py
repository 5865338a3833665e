"""Shared fixtures. The shared constants and builders (paths, tiny configs, synthetic inputs) are in helpers.py;
importing it first puts the test environment in place (PROJECT_ROOT, W&B off, no network)."""
import pytest

from helpers import compose


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(config_name="eval", overrides=()):
        return compose(config_name, overrides, tmp_path)
    return _compose
