"""On-disk formats of the stage outputs: one compressed ``.npz`` per clip and stage.

Each file holds the record's columns as named arrays plus ``__record__`` naming the record type, so a file is
readable with nothing but numpy (``np.load(path)``):

| record        | arrays in the file                                                                    |
|---------------|---------------------------------------------------------------------------------------|
| ObjectTable   | frame, xyxy, score, track_id, cls                                                     |
| Features      | one (N, D) float32 array per feature name, prefixed ``feat.``; N = rows of the tracks  |
| ObjectScores  | objects.<column>, frame_scores, parts.<name>                                          |
| Prompts       | frame, obj_id, xyxy, point, score                                                     |
| Segmentation  | score_maps (T,H,W) float16, objects.<column>, optional instance_maps (T,H,W) int32     |

Writes are atomic (written to a temporary file in the same folder, then renamed), so an interrupted run never
leaves a half-written artifact that looks complete. :func:`atomic_path` does the same for any file (the scorer
checkpoints use it), and :func:`remove_orphan_temps` deletes the temporary files of writes that were killed
before they could clean up.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np

from tao_lab.types import ObjectScores, ObjectTable, Prompts, Segmentation

log = logging.getLogger(__name__)

Features = dict  # name -> (N, D) float32 array, rows aligned with the tracked objects

#: Every temporary file of an atomic write ends with this suffix (``<name>.<random>.tmp`` next to the target).
TEMP_SUFFIX = ".tmp"
#: A temporary file untouched for this long belongs to no write in progress (a write touches its file until the
#: rename, and nothing is computed while it is open): it was left by a killed run and may be deleted.
ORPHAN_AGE_S = 600.0

# mkstemp creates files readable by their owner only; written files get the usual mode (0666 minus the umask),
# as a plain open() would give them. The umask can only be read by setting it: once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class RawArrays(dict):
    """Named arrays stored exactly as given (dtype kept, strings allowed), e.g. held-out calibration scores; a
    plain dict is a feature record (float32 columns)."""


Record = Union[ObjectTable, ObjectScores, Prompts, Segmentation, RawArrays, dict]


def _object_columns(table: ObjectTable, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + name: value for name, value in table.columns().items()}


def _object_table(arrays: Any, prefix: str = "") -> ObjectTable:
    return ObjectTable(*(arrays[prefix + f.name] for f in fields(ObjectTable)))


def to_arrays(record: Record) -> dict[str, np.ndarray]:
    """The named arrays that represent ``record`` on disk."""
    if isinstance(record, ObjectTable):
        return {"__record__": np.array("ObjectTable"), **_object_columns(record)}
    if isinstance(record, ObjectScores):
        out = {"__record__": np.array("ObjectScores"), **_object_columns(record.objects, "objects."),
               "frame_scores": np.asarray(record.frame_scores, dtype=np.float32)}
        out.update({f"parts.{k}": np.asarray(v, dtype=np.float32) for k, v in record.parts.items()})
        return out
    if isinstance(record, Prompts):
        return {"__record__": np.array("Prompts"), "frame": record.frame, "obj_id": record.obj_id,
                "xyxy": record.xyxy, "point": record.point, "score": record.score}
    if isinstance(record, Segmentation):
        out = {"__record__": np.array("Segmentation"), "score_maps": np.asarray(record.score_maps, np.float16),
               **_object_columns(record.objects, "objects.")}
        if record.instance_maps is not None:
            out["instance_maps"] = np.asarray(record.instance_maps, dtype=np.int32)
        return out
    if isinstance(record, RawArrays):
        return {"__record__": np.array("RawArrays"), **{f"raw.{k}": np.asarray(v) for k, v in record.items()}}
    if isinstance(record, dict):
        return {"__record__": np.array("Features"),
                **{f"feat.{k}": np.asarray(v, dtype=np.float32) for k, v in record.items()}}
    raise TypeError(f"cannot store a {type(record).__name__} as an artifact")


def from_arrays(arrays: Any) -> Record:
    kind = str(arrays["__record__"])
    if kind == "ObjectTable":
        return _object_table(arrays)
    if kind == "ObjectScores":
        parts = {k[len("parts."):]: arrays[k] for k in arrays.keys() if k.startswith("parts.")}
        return ObjectScores(_object_table(arrays, "objects."), arrays["frame_scores"], parts)
    if kind == "Prompts":
        return Prompts(arrays["frame"], arrays["obj_id"], arrays["xyxy"], arrays["point"], arrays["score"])
    if kind == "Segmentation":
        instance = arrays["instance_maps"] if "instance_maps" in arrays.keys() else None
        return Segmentation(arrays["score_maps"], _object_table(arrays, "objects."), instance)
    if kind == "RawArrays":
        return RawArrays({k[len("raw."):]: arrays[k] for k in arrays.keys() if k.startswith("raw.")})
    if kind == "Features":
        return {k[len("feat."):]: arrays[k] for k in arrays.keys() if k.startswith("feat.")}
    raise ValueError(f"unknown artifact record type {kind!r}")


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """A fresh temporary file next to ``path`` to write into; renamed onto ``path`` when the block ends without
    error and deleted otherwise (Ctrl+C included), so ``path`` is only ever absent, the old file or complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphan_temps(folder: Union[str, os.PathLike], max_age_s: float = ORPHAN_AGE_S) -> int:
    """Deletes the ``*.tmp`` files of ``folder`` older than ``max_age_s`` seconds: left by writes that were killed
    (SIGKILL, power loss) before :func:`atomic_path` could remove them. Younger ones may belong to a write in
    progress in another process or thread and are kept. Returns how many were deleted."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet: nothing to clean
        return 0
    for e in entries:
        if not e.name.endswith(TEMP_SUFFIX):
            continue
        try:
            if e.is_file(follow_symlinks=False) and now - e.stat().st_mtime > max_age_s:
                os.unlink(e.path)
                removed += 1
        except OSError:  # another process removed or renamed it meanwhile
            continue
    if removed:
        log.info("removed %d temporary file(s) of interrupted writes in %s", removed, folder)
    return removed


def save(path: Union[str, os.PathLike], record: Record, compress: bool = True) -> Path:
    """Writes ``record`` atomically to ``path`` (an ``.npz`` file)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **to_arrays(record))
    return path


def load(path: Union[str, os.PathLike]) -> Record:
    """Reads a record written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    with np.load(path, allow_pickle=False) as arrays:
        return from_arrays({k: arrays[k] for k in arrays.files})
