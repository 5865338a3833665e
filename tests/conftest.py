"""Shared fixtures. The shared constants and builders (paths, tiny configs, synthetic inputs) are in helpers.py;
importing it first puts the test environment in place (PROJECT_ROOT, W&B off, no network)."""
import pytest

from helpers import compose


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(config_name="eval", overrides=()):
        return compose(config_name, overrides, tmp_path)
    return _compose


@pytest.fixture(autouse=True, scope="session")
def small_segmenter_training():
    """The default segmenter (segmenter=learned) trains a network for one to three minutes per camera; in the tests a
    pipeline trains it on 300 crops for at most 2 epochs instead of the configured budget (test speed: no test here judges
    the masks of the configured budget); a test that sets its own budget of at most 1000 crops keeps it
    (tests/test_segment_learned.py). Session-wide, so module fixtures get it too;
    runs a test starts in a subprocess take QUICK_SEGMENTER (helpers.py) among their overrides."""
    from tao_lab.segmenter.learned import LearnedSegmenter

    init = LearnedSegmenter.__init__

    def small(self, *args, training=None, **kwargs):
        training = dict(training or {})
        if int(training.get("num_crops", 6000)) > 1000:  # the configured budget; a test's own smaller one stays
            training.update(num_crops=300, epochs=min(int(training.get("epochs", 2)), 2))
        init(self, *args, training=training, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LearnedSegmenter, "__init__", small)
        yield
