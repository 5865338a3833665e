"""tao_lab.clip_workers.run_jobs: results in the items' order on processes and threads, forked workers that inherit
unpicklable state, errors that come back, and no hang after the parent used the numeric libraries' thread pools."""
import os
import signal
import threading

import numpy as np
import pytest

from tao_lab.clip_workers import longest_first, run_jobs


def finishes(fn, seconds: float = 120.0):
    """fn() on a thread, joined with a timeout: a hang fails the test instead of blocking the run."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"run_jobs did not finish within {seconds} s (a worker hung)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def script_finishes(script, args=(), fixed: bool = True) -> None:
    """Runs ``script`` in a subprocess of its own session. ``fixed``: it must print "done" and exit 0 within 120 s;
    else (the control, the defect put back) it must still be running after 12 s, when it and its hung workers are
    killed together (the fixed scripts finish in 4 s and 0.4 s on a 2-core CPU, so 12 s is a hang, not a slow run)."""
    import subprocess
    import sys

    from helpers import ROOT

    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120 if fixed else 12)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        hung = True
    if fixed:
        assert not hung and proc.returncode == 0 and "done" in out, None if hung else err[-2000:]
    else:
        assert hung  # the control sees the hang


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_results_come_back_in_the_items_order_whatever_order_they_ran_in(kind):
    items = list(range(7))
    done = []
    out = run_jobs(lambda i: (i * i, os.getpid()), items, workers=2, kind=kind, costs=[1, 9, 3, 9, 0, 5, 2],
                   on_done=lambda: done.append(1))
    assert [v for v, _ in out] == [i * i for i in items]
    assert len(done) == len(items)  # on_done once per finished job
    pids = {p for _, p in out}
    if kind == "process":
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}


def test_longest_first_orders_by_cost_and_keeps_ties_in_order():
    assert longest_first([1, 9, 3, 9, 0]) == [1, 3, 2, 0, 4]
    assert longest_first([]) == []


def test_forked_workers_inherit_state_that_could_not_be_pickled():
    """The job is a closure over a lock and a generator (neither can be pickled): the workers inherit them by fork."""
    lock = threading.Lock()
    table = {i: np.full(3, i) for i in range(4)}
    gen = (x for x in range(3))

    def job(i):
        with lock:
            return int(table[i].sum()) + (gen is not None)

    assert run_jobs(job, [0, 1, 2, 3], workers=2, kind="process") == [1, 4, 7, 10]


class NeedsTwoArguments(Exception):
    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_jobs_error_is_raised_in_the_caller(kind):
    def job(i):
        if i == 2:
            raise ValueError(f"bad item {i}")
        return i

    with pytest.raises(ValueError, match="bad item 2"):
        run_jobs(job, [0, 1, 2, 3], workers=2, kind=kind)


def test_an_error_that_cannot_be_unpickled_comes_back_with_its_type_and_message():
    def job(i):
        raise NeedsTwoArguments("clip.avi", "corrupt frame")

    with pytest.raises(RuntimeError, match=r"NeedsTwoArguments: clip.avi: corrupt frame"):
        run_jobs(job, [0, 1], workers=2, kind="process")


def test_a_worker_that_dies_gives_a_clear_error():
    def job(i):
        if i == 1:
            os._exit(3)  # as if the system killed it (out of memory)
        return i

    with pytest.raises(RuntimeError, match="worker process died"):
        finishes(lambda: run_jobs(job, [0, 1, 2], workers=2, kind="process"))


def test_a_job_cannot_start_worker_processes_of_its_own():
    def job(i):
        return run_jobs(lambda j: j, [0, 1], workers=2, kind="process")

    with pytest.raises(RuntimeError, match="already running"):
        run_jobs(job, [0, 1], workers=2, kind="process")


PARENT_USED_THE_POOLS = """
import sys
import numpy as np
import torch
from tao_lab.clip_workers import run_jobs
{patch}
torch.set_num_threads(2)
net = torch.nn.Conv2d(3, 8, 3)
x = torch.rand(4, 3, 128, 128)
net(x)  # in this (the main) thread, split over torch's two OpenMP threads
out = run_jobs(lambda i: float(net(x).sum()) + i, [0, 1, 2], workers=2, kind="process")
assert np.allclose(np.diff(out), 1.0), out
assert torch.get_num_threads() == 2  # restored in the parent
print("done")
"""


@pytest.mark.parametrize("counts_set_before_fork", [True, False])
def test_no_hang_after_the_parent_used_torchs_threads(counts_set_before_fork, tmp_path):
    """libgomp's thread team does not survive fork: a worker forked from the main thread after it ran a convolution
    on two threads hangs in its own (the control run shows that this test sees the hang); run_jobs sets the count to 1
    before forking, so its workers finish. In a subprocess with a timeout: a hang cannot block the test run."""
    patch = "" if counts_set_before_fork else (
        "import contextlib, tao_lab.clip_workers as cw, tao_lab.library_threads as lt\n"
        "lt.opencv_threads = cw._torch_threads_if_imported = lambda n: contextlib.nullcontext()")
    script = tmp_path / "fork_after_threads.py"
    script.write_text(PARENT_USED_THE_POOLS.format(patch=patch))
    script_finishes(script, fixed=counts_set_before_fork)  # control: without the counts set first, the workers hang


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="worker_kind"):
        run_jobs(lambda i: i, [0], workers=1, kind="greenlet")


PARENT_READ_THE_VIDEO = """
import sys
import cv2
import numpy as np
from tao_lab.clip_workers import run_jobs
from tao_lab.dataset.clips import VideoFileClip
{patch}
path = sys.argv[1]
writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
rng = np.random.default_rng(0)
for _ in range(60):
    writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
writer.release()
clips = [VideoFileClip(path, clip_id=f"c{{i}}") for i in range(2)]
for clip in clips:
    clip.frame(3)  # the parent reads: each clip's capture is open, with FFmpeg's decoding threads
out = run_jobs(lambda clip: [float(clip.frame(i).mean()) for i in range(10, 40)], clips, workers=2, kind="process")
expected = [float(clips[0].frame(i).mean()) for i in range(10, 40)]  # the parent's capture still reads after
assert out == [expected, expected], (out, expected)
print("done")
"""


@pytest.mark.parametrize("own_capture", [True, False])
def test_no_hang_when_a_worker_reads_a_video_its_parent_had_open(own_capture, tmp_path):
    """A video clip read in the parent keeps its capture open, and FFmpeg decodes with threads of that process; a
    forked worker that read through the inherited capture waited for those threads forever (found on a video
    dataset with a training split, whose clips the parent samples before the workers start). The worker opens its
    own capture (VideoFileClip._abandon_inherited). The control, with the inherited capture used, shows that this
    test sees the hang. In a subprocess with a timeout, as above."""
    if not own_capture and (os.cpu_count() or 1) < 2:
        pytest.skip("FFmpeg decodes on one thread on a one-core machine: nothing to hang on")
    patch = "" if own_capture else "VideoFileClip._abandon_inherited = lambda self: None"
    script = tmp_path / "fork_after_video.py"
    script.write_text(PARENT_READ_THE_VIDEO.format(patch=patch))
    script_finishes(script, [tmp_path / "clip.mp4"], fixed=own_capture)  # control: through the inherited capture


LONG_JOBS = """
import sys, time
from pathlib import Path
from tao_lab.clip_workers import run_jobs
from tao_lab.user_errors import interrupt_on_sigterm

def job(i):
    Path(sys.argv[1], f"started{{i}}").write_text("")
    start = time.time()
    while time.time() - start < 120:  # busy for two minutes, as a long clip keeps a worker busy
        sum(range(10000))
    return i

with interrupt_on_sigterm():
    try:
        run_jobs(job, list(range(4)), workers=2, kind="process")
    except KeyboardInterrupt as exc:
        print("interrupted:", type(exc).__name__, flush=True)
        sys.exit(3)
print("finished")
"""


@pytest.mark.parametrize("how", ["sigterm_to_the_parent", "ctrl_c_to_all"])
def test_an_interrupted_run_stops_its_workers_at_once(how, tmp_path):
    """An interrupted parent did not stop its workers: the pool waited for their running jobs and handed each one
    more, so a run of long clips went on for two clips' time after a SIGTERM sent to it alone (``kill``, ``timeout``,
    a container's stop), with orphaned workers if it was killed meanwhile; a Ctrl+C that reached an idle worker
    printed its traceback. Now the workers stop within seconds, none outlives the run, no traceback."""
    import subprocess
    import sys
    import time

    from helpers import ROOT

    script = tmp_path / "long_jobs.py"
    script.write_text(LONG_JOBS.format())
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(600):  # both workers inside their first job
            if len(list(tmp_path.glob("started*"))) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert len(list(tmp_path.glob("started*"))) >= 2, proc.communicate(timeout=5)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
        start = time.time()
        if how == "sigterm_to_the_parent":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.time() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 3 and "interrupted:" in out, (out, err[-2000:])
    assert took < 20, f"the run took {took:.0f} s to stop after the signal"
    time.sleep(0.5)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}") and
             "Z" not in open(f"/proc/{pid}/stat").read().split()[2]]
    assert alive == [], f"workers {alive} outlived the run"
    assert "Traceback" not in err, err[-2000:]
    assert len(list(tmp_path.glob("started*"))) == 2  # the jobs not yet started were skipped
