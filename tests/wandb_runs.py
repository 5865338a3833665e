"""Reads an offline W&B run back from its ``run-*.wandb`` file, for the tests of the W&B logger and of sweeps
(moved out of ``tao_lab/loggers.py``: nothing at run time reads runs back). Test files import it through
``helpers``."""
from __future__ import annotations

import glob
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable

_BLOCK = 32768
_HEADER = 7  # b":W&B" + uint16 magic + uint8 version
_RECORD_HEADER = 7  # uint32 crc + uint16 length + uint8 type


def _wandb_records(path: Path) -> Iterable[bytes]:
    """The raw protobuf records of a ``.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, pending = _HEADER, b""
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _RECORD_HEADER])
        pos += _RECORD_HEADER
        if kind == 0 and length == 0:  # zero padding up to the block end
            pos += left - _RECORD_HEADER
            continue
        chunk = data[pos:pos + length]
        pos += length
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield pending + chunk
            pending = b""


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _set_nested(target: dict, item) -> None:
    value = json.loads(item.value_json) if item.value_json else None
    if item.key:
        target[item.key] = value
    else:
        target["/".join(item.nested_key)] = value


def read_wandb_run(run_dir: os.PathLike, wait: float = 10.0) -> dict[str, Any]:
    """What an offline W&B run recorded, read from its ``run-*.wandb`` file.

    run_dir: an ``offline-run-*`` folder, or any folder holding exactly one (searched recursively).
    Returns ``{"run_id", "group", "name", "job_type", "tags", "config", "summary", "history_keys", "files",
    "exit_code", "dir"}``: config and summary are the last values of every key (JSON-decoded), history_keys
    every key ever logged, files the paths under ``files/`` that were saved (tables, images), exit_code None when
    the run was never finished. W&B's service process may still be flushing the file just after ``finish()``:
    the file is re-read for up to ``wait`` seconds until its exit record is there.
    """
    import time

    deadline = time.monotonic() + float(wait)
    while True:
        out = _read_wandb_run_once(Path(run_dir))
        if out["exit_code"] is not None or time.monotonic() >= deadline:
            return out
        time.sleep(0.2)


def _read_wandb_run_once(run_dir: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(run_dir.glob("run-*.wandb")) or sorted(Path(p) for p in glob.glob(
        str(run_dir / "**" / "offline-run-*" / "run-*.wandb"), recursive=True))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one W&B run file under {run_dir}, found {len(files)}: {files}")
    out: dict[str, Any] = {"run_id": None, "group": None, "name": None, "job_type": None, "tags": [],
                           "config": {}, "summary": {}, "history_keys": set(), "files": [], "exit_code": None,
                           "dir": str(files[0].parent)}
    for raw in _wandb_records(files[0]):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(run_id=r.run_id, group=r.run_group, name=r.display_name, job_type=r.job_type,
                       tags=list(r.tags))
            for item in r.config.update:
                _set_nested(out["config"], item)
        elif kind == "config":
            for item in rec.config.update:
                _set_nested(out["config"], item)
        elif kind == "history":
            out["history_keys"].update(_item_key(i) for i in rec.history.item)
        elif kind == "summary":
            for item in rec.summary.update:
                _set_nested(out["summary"], item)
        elif kind == "files":
            out["files"].extend(f.path for f in rec.files.files)
        elif kind == "exit":
            out["exit_code"] = int(rec.exit.exit_code)
    for k, v in list(out["config"].items()):
        if isinstance(v, dict) and set(v) == {"value"}:  # wandb stores config entries as {"value": ...}
            out["config"][k] = v["value"]
    return out


def wandb_run_dirs(root: os.PathLike) -> list[Path]:
    """Every ``offline-run-*`` / ``run-*`` folder under ``root`` (e.g. a multirun folder), sorted."""
    return sorted(Path(p) for p in glob.glob(str(Path(root) / "**" / "wandb" / "*-run-*"), recursive=True)
                  if Path(p).is_dir())
