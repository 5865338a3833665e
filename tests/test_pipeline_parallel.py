"""Parallel clip extraction (config ``workers``) gives exactly the sequential results and fills the same cache."""
import numpy as np

from helpers import TINY_SYNTHETIC


def test_parallel_extraction_matches_sequential(compose_cfg, tmp_path):
    from tao_lab.pipeline import Pipeline, load_dataset

    runs = {}
    for workers in (1, 2):
        cfg = compose_cfg("eval", [*TINY_SYNTHETIC, f"workers={workers}",
                                   f"paths.cache_dir={tmp_path / f'cache{workers}'}"])
        clips = load_dataset(cfg).train + load_dataset(cfg).test
        pipe = Pipeline(cfg)
        assert pipe.workers(len(clips)) == min(workers, len(clips))
        pipe.extract(clips, "all")
        assert pipe.caches["features"].misses == len(clips)  # each clip computed once, by some thread
        assert pipe.frames_processed["detect"] == sum(c.num_frames for c in clips)
        runs[workers] = [(pipe.tracks(c), pipe.features(c)) for c in clips]
        assert pipe.caches["features"].hits == len(clips)  # ... and read back from the cache
        again = Pipeline(cfg)
        again.extract(clips, "all")  # everything cached: nothing is loaded or computed
        assert again.caches["features"].hits == 0 and again.caches["features"].misses == 0
    for (t1, f1), (t2, f2) in zip(runs[1], runs[2]):
        np.testing.assert_array_equal(t1.xyxy, t2.xyxy)
        np.testing.assert_array_equal(t1.track_id, t2.track_id)
        assert f1.keys() == f2.keys()
        for k in f1:
            np.testing.assert_array_equal(f1[k], f2[k])


def test_workers_must_be_positive(compose_cfg):
    import pytest

    from tao_lab.pipeline import Pipeline

    with pytest.raises(ValueError, match="workers"):
        Pipeline(compose_cfg("eval", [*TINY_SYNTHETIC, "workers=0"])).workers(4)


def test_heavy_imports_happen_in_the_calling_thread_before_the_workers_start(compose_cfg, tmp_path, monkeypatch):
    """Importing torch (via ultralytics) in a worker thread while another runs OpenCV has crashed the process with
    SIGFPE; the pipeline calls the detector's and tracker's prepare() in its own thread before spreading clips."""
    import sys
    import threading

    from tao_lab.detector.subtraction import BackgroundSubtractionDetector
    from tao_lab.pipeline import Pipeline, load_dataset
    from tao_lab.tracker.bytetrack import ByteTracker

    events = []
    real_detect = BackgroundSubtractionDetector.detect

    def detect(self, clip):
        events.append(("detect", threading.current_thread().name))
        return real_detect(self, clip)

    def prepare(self):
        events.append(("prepare", threading.current_thread().name))
        real_prepare(self)

    real_prepare = ByteTracker.prepare
    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "workers=2", f"paths.cache_dir={tmp_path / 'cache'}"])
    clips = load_dataset(cfg).train  # (its object-scale measurement detects in this thread: before the watch)
    monkeypatch.setattr(BackgroundSubtractionDetector, "detect", detect)
    monkeypatch.setattr(ByteTracker, "prepare", prepare)
    Pipeline(cfg).extract(clips, "train")
    main = threading.current_thread().name
    assert events[0] == ("prepare", main)  # before any detection, in the calling thread
    assert {name for kind, name in events if kind == "detect"} - {main}  # the clips ran in worker threads
    assert "ultralytics.trackers.byte_tracker" in sys.modules
