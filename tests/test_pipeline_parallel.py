"""Parallel clip extraction and prefetch (config ``workers``, ``worker_kind``) give exactly the sequential results
and fill the same cache."""
import numpy as np
import pytest

from helpers import TINY_SYNTHETIC


def assert_same_outputs(expected, got):
    """Per clip (tracks, features) pairs equal bit for bit."""
    assert len(expected) == len(got)
    for (t1, f1), (t2, f2) in zip(expected, got):
        np.testing.assert_array_equal(t1.xyxy, t2.xyxy)
        np.testing.assert_array_equal(t1.track_id, t2.track_id)
        assert f1.keys() == f2.keys()
        for k in f1:
            np.testing.assert_array_equal(f1[k], f2[k])


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_parallel_extraction_matches_sequential(compose_cfg, tmp_path, kind):
    from tao_lab.pipeline import Pipeline, load_dataset

    runs = {}
    for workers in (1, 2):
        cfg = compose_cfg("eval", [*TINY_SYNTHETIC, f"workers={workers}", f"worker_kind={kind}",
                                   f"paths.cache_dir={tmp_path / f'cache{workers}'}"])
        clips = load_dataset(cfg).train + load_dataset(cfg).test
        pipe = Pipeline(cfg)
        assert pipe.workers(len(clips)) == min(workers, len(clips))
        pipe.extract(clips, "all")
        assert pipe.caches["features"].misses == len(clips)  # each clip computed once, by some worker
        assert pipe.frames_processed["detect"] == sum(c.num_frames for c in clips)  # the workers' counts came back
        assert pipe.timings["features"] > 0
        runs[workers] = [(pipe.tracks(c), pipe.features(c)) for c in clips]
        assert pipe.caches["features"].hits == len(clips)  # ... and read back from the cache
        again = Pipeline(cfg)
        again.extract(clips, "all")  # everything cached: nothing is loaded or computed
        assert again.caches["features"].hits == 0 and again.caches["features"].misses == 0
    assert_same_outputs(runs[1], runs[2])


def test_workers_must_be_positive(compose_cfg):
    import pytest

    from tao_lab.pipeline import Pipeline

    with pytest.raises(ValueError, match="workers"):
        Pipeline(compose_cfg("eval", [*TINY_SYNTHETIC, "workers=0"])).workers(4)


def test_heavy_imports_happen_in_the_calling_thread_before_the_workers_start(compose_cfg, tmp_path, monkeypatch):
    """Importing torch (via ultralytics) in a worker thread while another runs OpenCV has crashed the process with
    SIGFPE; the pipeline calls the detector's and tracker's prepare() in its own thread before spreading clips over
    threads (worker_kind=thread)."""
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
    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "workers=2", "worker_kind=thread",
                               f"paths.cache_dir={tmp_path / 'cache'}"])
    clips = load_dataset(cfg).train  # (its object-scale measurement detects in this thread: before the watch)
    monkeypatch.setattr(BackgroundSubtractionDetector, "detect", detect)
    monkeypatch.setattr(ByteTracker, "prepare", prepare)
    Pipeline(cfg).extract(clips, "train")
    main = threading.current_thread().name
    assert events[0] == ("prepare", main)  # before any detection, in the calling thread
    assert {name for kind, name in events if kind == "detect"} - {main}  # the clips ran in worker threads
    assert "ultralytics.trackers.byte_tracker" in sys.modules


def test_processes_run_the_clips_in_other_processes(compose_cfg, tmp_path, monkeypatch):
    """worker_kind=process: the clips are detected in forked worker processes, which report back through the cache
    (the parent's detector never runs), and the prepare() calls happen in the parent before the fork."""
    import os

    from tao_lab.detector.subtraction import BackgroundSubtractionDetector
    from tao_lab.pipeline import Pipeline, load_dataset

    log = tmp_path / "detect_pids.txt"
    real_detect = BackgroundSubtractionDetector.detect

    def detect(self, clip):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real_detect(self, clip)

    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "workers=2", "worker_kind=process",
                               f"paths.cache_dir={tmp_path / 'cache'}"])
    clips = load_dataset(cfg).train
    monkeypatch.setattr(BackgroundSubtractionDetector, "detect", detect)
    pipe = Pipeline(cfg)
    pipe.extract(clips, "train")
    pids = [int(line) for line in log.read_text().split()]
    assert len(pids) == len(clips) and os.getpid() not in pids  # one detection per clip, none in this process
    assert all(pipe.caches["features"].path(c.clip_id, c.source).is_file() for c in clips)


def prefetched(cfg):
    """(pipeline, dataset) after the run's steps up to the test loop: camera clips, scorer fit, prefetch."""
    from tao_lab.pipeline import Pipeline, load_dataset

    data = load_dataset(cfg)
    pipe = Pipeline(cfg)
    pipe.set_camera_clips(data.train)
    pipe.fit_scorer(data.train)
    pipe.prefetch(data.test, "test")
    return pipe, data


def test_prefetch_on_processes_fills_every_stage_cache_with_the_sequential_results(compose_cfg, tmp_path):
    """With worker processes, prefetch runs each clip's whole chain (features -> scores -> prompts -> segmentation)
    in the workers; the loop after it reads every stage from the cache, and what it reads equals a sequential run."""
    results, pipes = {}, {}
    for workers in (1, 2):
        pipe, data = prefetched(compose_cfg("eval", [*TINY_SYNTHETIC, "dataset.num_frames=30", f"workers={workers}",
                                                     "worker_kind=process",
                                                     f"paths.cache_dir={tmp_path / f'cache{workers}'}"]))
        if workers == 2:  # everything is in the cache: the loop computes nothing
            assert pipe.caches["segment"].misses == len(data.test)  # counted by the workers
            assert all(pipe.caches["segment"].path(c.clip_id, pipe.source("segment", c)).is_file() for c in data.test)
            pipe.caches["segment"].misses = pipe.caches["score"].misses = 0
        results[workers] = [(pipe.scores(c, segment_next=True), pipe.segmentation(c, pipe.scores(c)))
                            for c in data.test]
        pipes[workers] = pipe
    assert pipes[2].caches["score"].misses == 0 and pipes[2].caches["segment"].misses == 0
    assert pipes[2].caches["segment"].hits == len(results[2])
    for (s1, g1), (s2, g2) in zip(results[1], results[2]):
        np.testing.assert_array_equal(s1.frame_scores, s2.frame_scores)
        np.testing.assert_array_equal(g1.score_maps, g2.score_maps)
        np.testing.assert_array_equal(g1.objects.xyxy, g2.objects.xyxy)
    assert any(np.any(g.score_maps) for _, g in results[2])  # there were masks to compare


def test_a_stage_on_a_gpu_makes_the_workers_threads(compose_cfg):
    """CUDA does not survive fork: a stage configured on a GPU turns worker_kind=process into threads."""
    from tao_lab.pipeline import Pipeline

    assert Pipeline(compose_cfg("eval", [*TINY_SYNTHETIC, "worker_kind=process"])).worker_kind() == "process"
    on_gpu = compose_cfg("eval", [*TINY_SYNTHETIC, "worker_kind=process", "detector=yolo", "detector.device=cuda:0"])
    assert Pipeline(on_gpu).worker_kind() == "thread"
    with pytest.raises(ValueError, match="worker_kind"):
        Pipeline(compose_cfg("eval", [*TINY_SYNTHETIC, "worker_kind=fibers"])).worker_kind()


def test_prefetch_readies_the_segmenters_network_once_in_this_process(compose_cfg, tmp_path, monkeypatch):
    """segmenter=learned trains (or reads) its network in prepare(), called before the fork: no worker trains a
    network of its own."""
    import os

    from tao_lab.segmenter.learned import LearnedSegmenter

    log = tmp_path / "fit_pids.txt"
    real_fit = LearnedSegmenter.fit

    def fit(self, clips=None):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real_fit(self, clips)

    monkeypatch.setattr(LearnedSegmenter, "fit", fit)
    pipe, data = prefetched(compose_cfg("eval", [*TINY_SYNTHETIC, "dataset.num_frames=30", "workers=2",
                                                 "worker_kind=process", "segmenter=learned",
                                                 f"paths.cache_dir={tmp_path / 'cache'}"]))
    assert all(pipe.caches["segment"].path(c.clip_id, pipe.source("segment", c)).is_file() for c in data.test)
    assert [int(p) for p in log.read_text().split()] == [os.getpid()]  # once, here


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_where_it_cannot_fork_the_workers_are_threads_with_the_same_results(compose_cfg, tmp_path, monkeypatch,
                                                                            platform):
    """Windows cannot fork and macOS's system libraries are not fork-safe: worker_kind=process (the default) runs the
    clips on threads there, forks nothing, and gives the sequential results."""
    import multiprocessing
    import sys

    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "workers=1", f"paths.cache_dir={tmp_path / 'cache1'}"])
    clips = load_dataset(cfg).train
    sequential = Pipeline(cfg)
    sequential.extract(clips, "train")
    expected = [(sequential.tracks(c), sequential.features(c)) for c in clips]
    monkeypatch.setattr(sys, "platform", platform)

    def no_fork(*args, **kwargs):
        raise AssertionError("a worker process was started on a platform that cannot fork")

    monkeypatch.setattr(multiprocessing, "get_context", no_fork)
    cfg = compose_cfg("eval", [*TINY_SYNTHETIC, "workers=2", "worker_kind=process",
                               f"paths.cache_dir={tmp_path / 'cache2'}"])
    clips = load_dataset(cfg).train
    pipe = Pipeline(cfg)
    assert pipe.worker_kind() == "thread"
    pipe.extract(clips, "train")
    assert pipe.caches["features"].misses == len(clips)
    assert_same_outputs(expected, [(pipe.tracks(c), pipe.features(c)) for c in clips])
