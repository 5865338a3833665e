"""One job per clip, spread over worker processes or threads: the pipeline's parallel passes.

:func:`run_jobs` is the one place tao_lab runs clips side by side on one machine (``Pipeline.extract`` and
``Pipeline.prefetch``, the speed benchmark's parallel passes). Beyond one machine, Hydra launchers and Lightning's
strategies take over (configs/hydra/launcher, tao_lab/distributed.py).

Kinds (config ``worker_kind``):
- ``process`` (the default where the OS can fork): the workers are forked from the calling process, so they start
  with everything it holds (fitted scorer and threshold, camera statistics, a trained segmenter network, clips that
  live in memory) without pickling any of it. A job's artifacts reach the parent through the stage cache; only the
  job's index and its small return value (the stages' bookkeeping) cross the pipe. Why: the stages' Python parts hold
  the interpreter lock, so two threads reached only 1.3x one thread on Ped2 (session 51: 166-171 % CPU).
- ``thread``: the jobs run on threads of this process (OpenCV and numpy release the lock in their long calls). For
  platforms without fork (Windows; macOS has fork but its system libraries are not safe after it), and as the
  measured baseline of the speed benchmark.

The libraries' thread pools do not survive fork: a forked worker whose parent had used torch's OpenMP threads hangs
at its first parallel torch operation (libgomp's team is gone; seen here in a worker's first tensor multiply), and one
that resizes OpenCV's pool hangs in it (seen here in ``cv2.setNumThreads`` in a worker). So the parent sets OpenCV and
torch (when imported) to ``library_threads`` threads before it forks, and the workers never touch the counts: with one
thread neither library enters its pool. One clip per core needs no splitting of each operation again anyway.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger(__name__)

KINDS = ("process", "thread")

# the job and its items while a process pool runs: the forked workers inherit them (never pickled)
_FORKED: Optional[tuple[Callable[[Any], Any], Sequence[Any]]] = None


def can_fork() -> bool:
    """Whether worker processes can be forked here (Linux; not Windows, and not macOS, whose system libraries are
    not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def resolve_kind(kind: str) -> str:
    """The kind :func:`run_jobs` will use for ``kind``: ``process`` falls back to ``thread`` where it cannot fork."""
    if kind not in KINDS:
        raise ValueError(f"worker_kind must be one of {KINDS}, got {kind!r}")
    if kind == "process" and not can_fork():
        log.info("worker_kind=process: this platform (%s) cannot fork worker processes safely; using threads",
                 sys.platform)
        return "thread"
    return kind


def longest_first(costs: Sequence[float]) -> list[int]:
    """Job order for a pool: the costliest first, so no worker is left with a long job at the end while the others
    idle (longest-processing-time-first scheduling). Stable: equal costs keep their order."""
    return sorted(range(len(costs)), key=lambda i: -costs[i])


def run_jobs(job: Callable[[Any], Any], items: Sequence[Any], workers: int, kind: str = "process",
             costs: Optional[Sequence[float]] = None, library_threads: Optional[int] = 1,
             on_done: Optional[Callable[[], None]] = None) -> list:
    """``[job(item) for item in items]``, the items spread over ``workers`` processes or threads (``kind``, see the
    module docstring); results in the items' order. The first error raised by a job is raised here.

    costs: each item's expected cost (e.g. its frames): the costliest start first. library_threads: OpenCV's and
    torch's threads in each worker (None: the libraries' own count; with processes 1, see the module docstring).
    on_done: called in the calling thread after each finished job (a progress bar's update).

    ``job`` runs in a forked copy of this process with kind ``process``: what it changes there (caches in memory,
    counters) stays there, so it returns what the caller needs (files it writes are shared as usual).
    """
    order = longest_first(costs) if costs is not None else list(range(len(items)))
    if resolve_kind(kind) == "process":
        return _run_forked(job, items, workers, order, library_threads, on_done)
    return _run_threaded(job, items, workers, order, library_threads, on_done)


def _run_threaded(job, items, workers, order, library_threads, on_done) -> list:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tao_lab.library_threads import opencv_threads

    results: list = [None] * len(items)
    # OpenCV's count is process-wide: set around the pool. Torch's count set in the calling thread is the count of
    # the worker threads (they set none of their own).
    with opencv_threads(library_threads), _torch_threads_if_imported(library_threads), \
            ThreadPoolExecutor(workers, thread_name_prefix="clip-worker") as pool:
        futures = {pool.submit(job, items[i]): i for i in order}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done()
    return results


def _torch_threads_if_imported(count: Optional[int]):
    from contextlib import nullcontext

    from tao_lab.library_threads import torch_threads

    return torch_threads(count) if "torch" in sys.modules else nullcontext()


def _run_forked(job, items, workers, order, library_threads, on_done) -> list:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from tao_lab.library_threads import opencv_threads

    global _FORKED
    if _FORKED is not None:
        raise RuntimeError("run_jobs(kind='process') is already running in this process: a job cannot start worker "
                           "processes of its own")
    results: list = [None] * len(items)
    threads = 1 if library_threads is None else int(library_threads)  # the workers inherit the counts set here
    _FORKED = (job, items)
    try:
        with opencv_threads(threads), _torch_threads_if_imported(threads), \
                ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(_run_forked_job, i): i for i in order}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if on_done is not None:
                        on_done()
            except BaseException:
                for future in futures:  # an error or Ctrl-C: start no further job
                    future.cancel()
                raise
    except BrokenProcessPool as exc:
        raise RuntimeError("a worker process died while processing clips (killed by the system, e.g. out of "
                           "memory?). Run with fewer workers (workers=1) or with worker_kind=thread") from exc
    finally:
        _FORKED = None
    return results


def _run_forked_job(index: int) -> Any:
    """Runs in a worker: the inherited job on the inherited item ``index``. An error that cannot cross the pipe as
    it is (an exception class with extra constructor arguments cannot be unpickled) crosses as a RuntimeError with
    its type and message."""
    job, items = _FORKED
    try:
        return job(items[index])
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any failure to round-trip: send the text instead
            raise RuntimeError(f"{type(exc).__name__}: {exc} (in worker process {os.getpid()})") from None
        raise
