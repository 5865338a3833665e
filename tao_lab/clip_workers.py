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

An interrupted parent (Ctrl+C, SIGTERM) stops its workers at once: a stop flag they inherit makes them skip the jobs
they have not started, and ``_STOP_SIGNAL`` (or the terminal's own Ctrl+C) interrupts the job they are in. A worker's
signals raise only inside a job, never while it waits in the pool's queue (see ``_worker_signals``).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger(__name__)

KINDS = ("process", "thread")

# the job, its items and the stop flag while a process pool runs: the forked workers inherit them (never pickled)
_FORKED: Optional[tuple[Callable[[Any], Any], Sequence[Any], Any]] = None
# in a worker, whether it is inside a job (a stop request raises only there: _stop_requested)
_IN_JOB = False
# the signal an interrupted parent sends its workers (their handler: _stop_requested)
_STOP_SIGNAL = getattr(signal, "SIGUSR1", None)


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
    context = multiprocessing.get_context("fork")
    # 1 once the run is interrupted: a worker then starts no further job. A shared byte without a lock: read and set
    # while signals arrive, a lock could be left held by an interrupted holder and wait everyone else out
    stop = context.RawValue("b", 0)
    _FORKED = (job, items, stop)
    try:
        with opencv_threads(threads), _torch_threads_if_imported(threads), _stop_handler() as handler, \
                ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_signals) as pool:
            futures = {pool.submit(_run_forked_job, i): i for i in order}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if on_done is not None:
                        on_done()
            except BaseException as exc:
                for future in futures:  # an error or Ctrl-C: start no further job
                    future.cancel()
                if isinstance(exc, KeyboardInterrupt):
                    _interrupt_workers(pool, stop, handler.installed)
                raise
    except BrokenProcessPool as exc:
        raise RuntimeError("a worker process died while processing clips (killed by the system, e.g. out of "
                           "memory?). Run with fewer workers (workers=1) or with worker_kind=thread") from exc
    finally:
        _FORKED = None
    return results


def _interrupt_workers(pool, stop, signalled: bool) -> None:
    """This process was interrupted (Ctrl+C, or SIGTERM sent to it alone, as ``kill``, ``timeout`` or a container's
    stop send it): its workers stop too instead of finishing their clips. The pool waits for its running jobs when it
    shuts down, and it hands each worker one job ahead, so a run of long clips went on for two clips' time after the
    signal (and on with orphaned workers if it was killed meanwhile). The stop flag makes a worker skip the jobs it
    has not started; ``_STOP_SIGNAL`` interrupts the job it is in (``signalled``: it reaches no default action), which
    unwinds as on Ctrl+C (temporary files removed). Not SIGINT: a worker that Ctrl+C had already reached could get it
    again outside its job, inside the pool's queue lock, and the other worker would wait for that lock forever."""
    stop.value = 1
    if not signalled:
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # the pool's workers (CPython)
        try:
            os.kill(process.pid, _STOP_SIGNAL)
        except OSError:  # already gone
            pass


def _stop_requested(signum, frame) -> None:
    """Handler of ``_STOP_SIGNAL`` and SIGINT in a worker: the run was interrupted. It sets the shared stop flag (no
    worker starts another job) and raises only inside a job, where it unwinds the job."""
    _FORKED[2].value = 1
    if _IN_JOB:
        raise KeyboardInterrupt("stopped: the run was interrupted")


def _worker_signals() -> None:
    """A worker's Ctrl+C (the terminal sends it to every process of the run) and the parent's stop signal raise only
    inside a job. Outside one the worker waits in the pool's queue; interrupted there it printed a traceback, and it
    could die holding the queue's lock, for which the other worker then waited forever. Either signal sets the stop
    flag, so the worker skips its remaining jobs."""
    signal.signal(signal.SIGINT, _stop_requested)
    if _STOP_SIGNAL is not None:
        signal.signal(_STOP_SIGNAL, _stop_requested)


class _stop_handler:
    """Context manager in the parent: ``_STOP_SIGNAL`` ignored while the pool forks its workers, so a worker signalled
    before :func:`_worker_signals` installed its handler is not killed by the signal's default action (it sees the stop
    flag instead). Whether it could be set (only the main thread can) is ``installed``: if not, the workers are not
    signalled."""

    def __enter__(self):
        self.installed, self._old = False, None
        if _STOP_SIGNAL is not None and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(_STOP_SIGNAL, signal.SIG_IGN)
            self.installed = True
        return self

    def __exit__(self, *exc) -> bool:
        if self.installed:
            signal.signal(_STOP_SIGNAL, self._old)
        return False


def _run_forked_job(index: int) -> Any:
    """Runs in a worker: the inherited job on the inherited item ``index`` (nothing once the parent was interrupted).
    An error that cannot cross the pipe as it is (an exception class with extra constructor arguments cannot be
    unpickled) crosses as a RuntimeError with its type and message."""
    global _IN_JOB
    job, items, stop = _FORKED
    if stop.value:  # a worker or the parent was interrupted
        return None
    _IN_JOB = True
    try:
        if stop.value:  # a request that came between the check above and _IN_JOB (its handler did not raise)
            return None
        return job(items[index])
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any failure to round-trip: send the text instead
            raise RuntimeError(f"{type(exc).__name__}: {exc} (in worker process {os.getpid()})") from None
        raise
    finally:
        _IN_JOB = False
