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
leaves a half-written artifact that looks complete.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any, Union

import numpy as np

from tao_lab.types import ObjectScores, ObjectTable, Prompts, Segmentation

Features = dict  # name -> (N, D) float32 array, rows aligned with the tracked objects
Record = Union[ObjectTable, ObjectScores, Prompts, Segmentation, dict]


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
    if kind == "Features":
        return {k[len("feat."):]: arrays[k] for k in arrays.keys() if k.startswith("feat.")}
    raise ValueError(f"unknown artifact record type {kind!r}")


def save(path: Union[str, os.PathLike], record: Record, compress: bool = True) -> Path:
    """Writes ``record`` atomically to ``path`` (an ``.npz`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **to_arrays(record))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Union[str, os.PathLike]) -> Record:
    """Reads a record written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    with np.load(path, allow_pickle=False) as arrays:
        return from_arrays({k: arrays[k] for k in arrays.files})
