"""Which process of a data-parallel (DDP) run this is, and the rules that follow from it.

A ``trainer=ddp`` run is several processes running the same entry point: Lightning's launcher re-runs the script
for ranks 1.. when ``Trainer.fit`` starts (one machine), or SLURM/torchrun start every rank at once (clusters).
The project's rules for them:

- stage outputs (detect, track, features) are computed once: rank 0 extracts into ``paths.cache_dir`` and the other
  ranks read that cache (:func:`wait_for_files` lets them wait when they start at the same time as rank 0);
- each rank trains on its own share of the windows (Lightning's DistributedSampler; the scorer logs the share);
- only rank 0 writes the checkpoint, the run record and metrics, and evaluates; the other ranks end after the fit.

The rank is read from the environment the launchers set, so it is known before any process group exists.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

#: How long a rank > 0 waits for rank 0 to fill the stage cache (seconds; env TAO_RANK_WAIT_S overrides).
RANK_WAIT_S = 4 * 3600.0


def global_rank() -> int:
    """This process's rank in a multi-process run; 0 outside one.

    torchrun sets RANK; Lightning's launcher sets LOCAL_RANK and NODE_RANK for the processes it starts (one node:
    the rank is LOCAL_RANK); SLURM sets SLURM_PROCID, which counts only when the job has several tasks (it is 0 in
    an ordinary single-task job, also when Lightning starts more processes inside it).
    """
    env = os.environ
    if env.get("RANK", "").isdigit():
        return int(env["RANK"])
    if env.get("LOCAL_RANK", "").isdigit():
        node = int(env["NODE_RANK"]) if env.get("NODE_RANK", "").isdigit() else 0
        per_node = int(env.get("LOCAL_WORLD_SIZE", "") or 0) or int(env.get("WORLD_SIZE", "1") or 1)
        return node * per_node + int(env["LOCAL_RANK"])
    if env.get("SLURM_PROCID", "").isdigit() and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return int(env["SLURM_PROCID"])
    return 0


def is_rank_zero() -> bool:
    return global_rank() == 0


def planned_world_size(trainer_cfg: Any) -> int:
    """Processes a ``cfg.trainer`` will run: devices x nodes (Lightning's "auto" strategy is DDP on more than one
    device), 1 for a single-device strategy.

    Read from the config, before any Trainer exists; a device count Lightning resolves at run time ("auto", -1)
    counts as 1 on CPU and as 2 ("more than one", enough for the checks that use this) elsewhere.
    """
    if trainer_cfg is None:
        return 1
    strategy = str(trainer_cfg.get("strategy", "auto") or "auto").lower()
    if strategy in ("single_device", "dp") or "single" in strategy:
        return 1  # one process, whatever the device count
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        count = len(devices)
    elif str(devices).strip().lstrip("-").isdigit() and int(devices) > 0:
        count = int(devices)
    else:  # "auto" / -1: one CPU process (Lightning's CPU default), else all the node's GPUs, i.e. likely > 1
        count = 1 if str(trainer_cfg.get("accelerator", "auto")).lower() == "cpu" else 2
    return count * max(1, int(trainer_cfg.get("num_nodes", 1) or 1))


def wait_for_files(paths: Iterable[Path], what: str, timeout_s: float | None = None, poll_s: float = 1.0) -> None:
    """Blocks until every path exists (rank 0 writes them); a clear error after ``timeout_s``."""
    paths = [Path(p) for p in paths]
    timeout_s = float(os.environ.get("TAO_RANK_WAIT_S", RANK_WAIT_S)) if timeout_s is None else float(timeout_s)
    start = time.monotonic()
    missing = [p for p in paths if not p.is_file()]
    if missing:
        log.info("rank %d: waiting for rank 0 to write %d of %d %s", global_rank(), len(missing), len(paths), what)
    while missing:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"rank {global_rank()}: rank 0 did not write {what} within {timeout_s:.0f} s "
                               f"(still missing, e.g. {missing[0]}); did rank 0 fail? Its log is in the run dir; "
                               f"raise the wait with the environment variable TAO_RANK_WAIT_S")
        time.sleep(poll_s)
        missing = [p for p in missing if not p.is_file()]
