"""Thread counts of the numeric libraries (OpenCV, torch) for a stretch of work.

Both libraries split an operation over all cores by default. When tao_lab already runs one clip per core (parallel
extraction, the speed benchmark's parallel passes), each library splitting again oversubscribes the cores; and a
small operation (the learned segmenter's network on a frame's few crops) gains nothing from the split but its cost.
These context managers set a count for their body and restore the previous one after it, also after an error.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Callable, Iterator, Optional


@contextmanager
def _count_for_body(get: Callable[[], int], set_count: Callable[[int], None], count: int) -> Iterator[None]:
    before = get()
    set_count(count)
    try:
        yield
    finally:
        set_count(before)


def opencv_threads(count: Optional[int]) -> AbstractContextManager:
    """OpenCV's thread count for the body (None: unchanged). OpenCV's count is process-wide: set it around work
    that runs one clip per core, not inside one of those threads."""
    if count is None:
        return nullcontext()
    import cv2

    return _count_for_body(cv2.getNumThreads, cv2.setNumThreads, int(count))


def torch_threads(count: Optional[int]) -> AbstractContextManager:
    """Torch's intra-op thread count for the body (None: unchanged). Called from a worker thread (a parallel run's
    clip), it changes that thread's count only; from the main thread, torch's count for the threads that set none
    (OpenMP's)."""
    if count is None:
        return nullcontext()
    import torch

    return _count_for_body(torch.get_num_threads, torch.set_num_threads, int(count))
