"""Thread counts of the numeric libraries for a stretch of work (tao_lab.library_threads)."""
import threading

import cv2
import pytest
import torch

from tao_lab.library_threads import opencv_threads, torch_threads
from tao_lab.segmenter import LearnedSegmenter


def test_torch_threads_sets_the_count_and_restores_it():
    """The mask net runs on one torch thread inside torch_threads(1) (None changes nothing), and the count is restored
    after (also when its body raises); used in a worker thread (a parallel run's clip), it leaves the main thread's
    count as it was. The segmenter refuses a count below 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = {}

        def worker():
            with torch_threads(1):
                seen["worker inside"] = torch.get_num_threads()
                barrier.wait()  # the main thread looks now
                barrier.wait()
            seen["worker after"] = torch.get_num_threads()

        barrier = threading.Barrier(2)
        thread = threading.Thread(target=worker)
        thread.start()
        barrier.wait()
        seen["main"] = torch.get_num_threads()
        barrier.wait()
        thread.join()
        assert seen == {"worker inside": 1, "main": 2, "worker after": 2}
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        with pytest.raises(RuntimeError, match="boom"):
            with torch_threads(1):
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with torch_threads(None):
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="inference_threads"):
            LearnedSegmenter(inference_threads=0)
        assert LearnedSegmenter().inference_threads == 1
        assert LearnedSegmenter(inference_threads=None).inference_threads is None
    finally:
        torch.set_num_threads(before)


def test_opencv_threads_sets_the_count_and_restores_it():
    """OpenCV runs on the given count inside opencv_threads (None changes nothing) and gets its count back after,
    also when the body raises."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        with opencv_threads(1):
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 2
        with pytest.raises(RuntimeError, match="boom"):
            with opencv_threads(1):
                raise RuntimeError("boom")
        assert cv2.getNumThreads() == 2
        with opencv_threads(None):
            assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
