"""Scale-out on this machine: parallel sweep jobs, extraction shards and DDP, each next to its one-process baseline.

    python benchmarks/scaleout_bench.py                       # tiny synthetic set (2 train + 2 test clips, 60 frames)
    python benchmarks/scaleout_bench.py --train-clips 4 --test-clips 4 --frames 120

Rows (each from a cold stage cache of its own unless said otherwise), all printed side by side in one table:

- sweep: ``eval.py -m threshold.tau=<4 values>`` with ``hydra/launcher=joblib_local hydra.launcher.n_jobs=4`` vs the
  same four jobs one after another (Hydra's basic launcher); ``workers=1`` in both, so each job is one thread;
- extract: ``extract.py -m shard=0,1 num_shards=2`` under joblib (2 jobs at once) vs one ``extract.py`` job
  (``workers=1``: one thread, so the shards are the only parallelism);
- ddp: ``train.py scorer=temporal_mae trainer=ddp`` (2 gloo processes on CPU) vs ``trainer=cpu``, both on the same
  warm cache (extracted first, not timed), fit time = the run's ``time/fit_scorer_s`` (rank 0's fit, which includes
  starting the second process).

Wall time is the command's elapsed time; CPU time is user + system time of the command's whole process tree
(sampled every 0.1 s with psutil, so up to ~0.1 s per process is missed; processes that outlive their parent,
such as DDP's second rank, are still followed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the process tree, completed process)."""
    import psutil

    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    start = time.perf_counter()
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out_f, stderr=err_f, text=True)
    root = psutil.Process(proc.pid)
    known: dict[int, psutil.Process] = {proc.pid: root}
    cpu: dict[int, float] = {}

    def sample():
        for p in list(known.values()):
            try:
                for child in p.children(recursive=True):
                    known.setdefault(child.pid, child)
            except psutil.Error:
                pass
        for pid, p in list(known.items()):
            try:
                t = p.cpu_times()
                cpu[pid] = t.user + t.system
            except psutil.Error:
                pass

    while proc.poll() is None:
        sample()
        time.sleep(0.1)
    # the command has ended: follow what it left running (DDP's second rank ends a little after rank 0)
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for pid, p in known.items() if pid != proc.pid):
        sample()
        time.sleep(0.1)
    wall = time.perf_counter() - start
    out_f.seek(0), err_f.seek(0)
    done = subprocess.CompletedProcess(cmd, proc.returncode, out_f.read(), err_f.read())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return wall, sum(cpu.values()), done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-clips", type=int, default=2)
    ap.add_argument("--test-clips", type=int, default=2)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=5, help="DDP rows: trainer.max_epochs")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="scaleout_bench_"))
    py = sys.executable
    data = [f"dataset.num_train_clips={args.train_clips}", f"dataset.num_test_clips={args.test_clips}",
            f"dataset.num_frames={args.frames}", "progress=false", f"paths.log_dir={work / 'logs'}"]

    def script(name, *overrides, cache):
        flags = [o for o in overrides if o == "-m"]  # Hydra wants its flags before the overrides
        return [py, str(ROOT / name), *flags, *data, f"paths.cache_dir={work / cache}",
                *[o for o in overrides if o != "-m"]]

    taus = "threshold.tau=0.6,0.8,1.0,1.2"
    rows = []
    try:
        w, c, _ = run_measured(script("eval.py", "-m", taus, "workers=1", "hydra/launcher=joblib_local",
                                      "hydra.launcher.n_jobs=4", f"hydra.sweep.dir={work / 's_par'}",
                                      cache="c_sweep_par"), work)
        w1, c1, _ = run_measured(script("eval.py", "-m", taus, "workers=1", f"hydra.sweep.dir={work / 's_seq'}",
                                        cache="c_sweep_seq"), work)
        rows.append(("4-job eval sweep", "joblib, 4 at once", w, c, "one after another", w1, c1))

        w, c, _ = run_measured(script("extract.py", "-m", "shard=0,1", "num_shards=2", "workers=1",
                                      "hydra/launcher=joblib_local", f"hydra.sweep.dir={work / 'x_par'}",
                                      cache="c_x_par"), work)
        w1, c1, _ = run_measured(script("extract.py", "workers=1", f"hydra.run.dir={work / 'x_one'}",
                                        cache="c_x_one"), work)
        rows.append(("extraction", "2 shards at once", w, c, "1 job", w1, c1))

        run_measured(script("extract.py", "splits=[train]", f"hydra.run.dir={work / 'warm'}", cache="c_ddp"), work)
        fits = {}
        for name, trainer in (("ddp", "trainer=ddp"), ("one", "trainer=cpu")):
            w, c, _ = run_measured(script("train.py", "scorer=temporal_mae", trainer,
                                          f"trainer.max_epochs={args.epochs}", f"hydra.run.dir={work / name}",
                                          cache="c_ddp"), work)
            fit = json.loads((work / name / "metrics.json").read_text())["time/fit_scorer_s"]
            fits[name] = (w, c, fit)
        (w, c, f), (w1, c1, f1) = fits["ddp"], fits["one"]
        rows.append(("temporal_mae train.py", "DDP, 2 processes", w, c, "1 process", w1, c1))
        rows.append(("  of which the fit", "DDP, 2 processes", f, float("nan"), "1 process", f1, float("nan")))
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nscale-out on {os.cpu_count()} cores, synthetic {args.train_clips} train + {args.test_clips} test clips "
          f"x {args.frames} frames (cold caches; DDP rows on a warm cache, {args.epochs} epochs)")
    head = f"{'what':<24}{'parallel':<20}{'wall s':>8}{'CPU s':>8}   {'baseline':<19}{'wall s':>8}{'CPU s':>8}" \
           f"{'wall ratio':>12}"
    print(head)
    print("-" * len(head))
    for what, par, w, c, base, w1, c1 in rows:
        cpu = lambda v: "-" if v != v else f"{v:.1f}"  # noqa: E731 - NaN: not measured
        print(f"{what:<24}{par:<20}{w:>8.1f}{cpu(c):>8}   {base:<19}{w1:>8.1f}{cpu(c1):>8}{w1 / w:>11.2f}x")
    print("wall ratio = baseline wall / parallel wall (> 1: the parallel run finished sooner)")


if __name__ == "__main__":
    main()
