"""Thread counts of the numeric libraries (OpenCV, torch) for a stretch of work.

Both libraries split an operation over all cores by default. When tao_lab already runs one clip per core (parallel
extraction, the speed benchmark's parallel passes), each library splitting again oversubscribes the cores; and a
small operation (the learned segmenter's network on a frame's few crops) gains nothing from the split but its cost.
These context managers set a count for their body and restore the previous one after it, also after an error.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional


@contextmanager
def opencv_threads(count: Optional[int]) -> Iterator[None]:
    """OpenCV's thread count for the body (None: unchanged). OpenCV's count is process-wide: set it around work
    that runs one clip per core, not inside one of those threads."""
    if count is None:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(int(count))
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@contextmanager
def torch_threads(count: Optional[int]) -> Iterator[None]:
    """Torch's intra-op thread count for the body (None: unchanged). Called from a worker thread (a parallel run's
    clip), it changes that thread's count only; from the main thread, torch's count for the threads that set none
    (OpenMP's)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)
