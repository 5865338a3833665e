"""The on-disk formats of a run's outputs, each writer next to its reader (used by tao_lab.outputs).

- ``objects.csv`` (:data:`OBJECTS_HEADER`): every tracked object, offline and online alike:
  ``track_id,frame_id,x_min,y_min,x_max,y_max,score,flagged``; 0-based frames, original pixels (x2/y2 exclusive),
  score = the object's anomaly score, flagged = 1 when the score is above the object threshold tau (the object
  is a segmenter prompt candidate);
- ``tracks.csv`` / ``segments.csv`` (:data:`TRACKS_HEADER`): the same columns without ``flagged`` (the tracked
  objects; the boxes of the segmented objects' masks, ids = the ids in ``masks/``);
- ``tracks_mot.txt``: MOTChallenge ``frame,id,x,y,w,h,score,-1,-1,-1`` (1-based frames);
- ``tracks.txt`` / ``detections.txt``: the RBDC/TBDC text formats (:mod:`tao_lab.metrics.tracks`, re-exported);
- ``masks/<frame:06d>.png``: 16-bit instance maps (0 = background, k = object id k);
- ``frame_scores.csv``: ``frame_id,time_s,score,anomalous`` (online: ``,latency_ms`` too);
- ``prompts.csv``: ``frame_id,obj_id,x_min,y_min,x_max,y_max,point_x,point_y,score``;
- ``events.csv`` (:data:`EVENT_HEADER`, rows by :meth:`tao_lab.events.Event.csv_row`), ``gaps.csv``,
  ``NOTE.txt`` and ``summary.json`` (written atomically).
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from tao_lab.metrics.tracks import (read_detections_txt, read_tracks_txt, write_detections_txt,  # noqa: F401
                                    write_tracks_txt)
from tao_lab.types import ObjectTable, Prompts

TRACKS_HEADER = "track_id,frame_id,x_min,y_min,x_max,y_max,score"
OBJECTS_HEADER = TRACKS_HEADER + ",flagged"
FRAME_SCORES_HEADER = "frame_id,time_s,score,anomalous"
PROMPTS_HEADER = "frame_id,obj_id,x_min,y_min,x_max,y_max,point_x,point_y,score"
EVENT_HEADER = ("event,start_frame,end_frame,start_s,end_s,duration_s,peak_frame,peak_s,peak_score,"
                "top_track_ids,top_classes,top_scores")
GAPS_HEADER = "after_frame,start_s,length_s,attempts,reconnected"


class CsvFile:
    """A CSV written line by line (a stream may run for days: rows are never held whole)."""

    def __init__(self, path: os.PathLike, header: str):
        self.path = Path(path)
        self._f = open(self.path, "w")
        self._f.write(header + "\n")

    def write(self, lines: Iterable[str]) -> None:
        for line in lines:
            self._f.write(line + "\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


# ----- objects.csv, tracks.csv, segments.csv, MOT --------------------------------------------------------------
def object_lines(table: ObjectTable, flagged: Optional[np.ndarray] = None) -> list[str]:
    """Rows of ``objects.csv`` (with ``flagged``) or, with ``flagged=None``, of ``tracks.csv``."""
    lines = []
    for r in range(len(table)):
        x1, y1, x2, y2 = (float(v) for v in table.xyxy[r])
        line = (f"{int(table.track_id[r])},{int(table.frame[r])},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},"
                f"{float(table.score[r]):.6f}")
        lines.append(line if flagged is None else f"{line},{int(bool(flagged[r]))}")
    return lines


def write_objects_csv(path: os.PathLike, table: ObjectTable, flagged: np.ndarray) -> None:
    """``objects.csv``: every tracked object with its anomaly score and ``flagged`` (score above tau)."""
    f = CsvFile(path, OBJECTS_HEADER)
    f.write(object_lines(table, np.asarray(flagged, bool).reshape(-1)))
    f.close()


def write_tracks_csv(path: os.PathLike, table: ObjectTable) -> None:
    """``tracks.csv`` / ``segments.csv``: ``track_id,frame_id,x_min,y_min,x_max,y_max,score``."""
    f = CsvFile(path, TRACKS_HEADER)
    f.write(object_lines(table))
    f.close()


def _load_rows(path: os.PathLike, columns: int) -> np.ndarray:
    with warnings.catch_warnings():  # a header-only file (no object) is a valid, empty table
        warnings.simplefilter("ignore", UserWarning)
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if data.size and data.shape[1] != columns:
        raise ValueError(f"{path}: {data.shape[1]} columns, expected {columns}")
    return data


def read_tracks_csv(path: os.PathLike) -> ObjectTable:
    """Reads ``tracks.csv`` / ``segments.csv`` (:func:`write_tracks_csv`)."""
    data = _load_rows(path, 7)
    if data.size == 0:
        return ObjectTable.empty()
    return ObjectTable.build(data[:, 1], data[:, 2:6], data[:, 6], data[:, 0])


def read_objects_csv(path: os.PathLike) -> tuple[ObjectTable, np.ndarray]:
    """Reads ``objects.csv`` (:func:`write_objects_csv`): (the objects, (N,) bool flagged)."""
    data = _load_rows(path, 8)
    if data.size == 0:
        return ObjectTable.empty(), np.zeros(0, bool)
    return ObjectTable.build(data[:, 1], data[:, 2:6], data[:, 6], data[:, 0]), data[:, 7].astype(bool)


def write_mot(path: os.PathLike, table: ObjectTable) -> None:
    """MOTChallenge rows ``frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1`` (1-based frames)."""
    with open(path, "w") as f:
        for fr, tid, (x1, y1, x2, y2), s in zip(table.frame, table.track_id, table.xyxy, table.score):
            f.write(f"{fr + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.6f},-1,-1,-1\n")


def read_mot(path: os.PathLike) -> ObjectTable:
    """Reads :func:`write_mot` rows back (0-based frames, xyxy)."""
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    if data.size == 0:
        return ObjectTable.empty()
    xyxy = np.column_stack([data[:, 2], data[:, 3], data[:, 2] + data[:, 4], data[:, 3] + data[:, 5]])
    return ObjectTable.build(data[:, 0] - 1, xyxy, data[:, 6], data[:, 1])


# ----- masks ---------------------------------------------------------------------------------------------------
def mask_name(frame: int) -> str:
    return f"{int(frame):06d}.png"


def write_mask_png(path: os.PathLike, instance_map: np.ndarray) -> None:
    """(H, W) instance map as a 16-bit PNG (ids clipped to 0..65535)."""
    import cv2

    if not cv2.imwrite(str(path), np.clip(instance_map, 0, 65535).astype(np.uint16)):
        raise OSError(f"could not write mask {path}")


def read_mask_png(path: os.PathLike) -> np.ndarray:
    """(H, W) int32 instance map from a 16-bit mask PNG (0 = background)."""
    import cv2

    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise OSError(f"could not read mask {path}")
    return m.astype(np.int32)


# ----- frame scores, prompts, events, gaps ----------------------------------------------------------------------
def frame_score_lines(frames: np.ndarray, times: np.ndarray, scores: np.ndarray, anomalous: np.ndarray,
                      latency_ms: Optional[np.ndarray] = None) -> list[str]:
    """Rows of ``frame_scores.csv`` (``latency_ms``: the online column, None offline)."""
    lines = []
    for k in range(len(frames)):
        line = f"{int(frames[k])},{float(times[k]):.3f},{float(scores[k]):.6f},{int(bool(anomalous[k]))}"
        lines.append(line if latency_ms is None else f"{line},{float(latency_ms[k]):.2f}")
    return lines


def frame_scores_header(latency: bool) -> str:
    return FRAME_SCORES_HEADER + (",latency_ms" if latency else "")


def read_frame_scores_csv(path: os.PathLike) -> dict[str, np.ndarray]:
    """{column: (N,) array} of ``frame_scores.csv``."""
    with open(path) as f:
        names = f.readline().strip().split(",")
    data = _load_rows(path, len(names)).reshape(-1, len(names))
    return {name: data[:, k] for k, name in enumerate(names)}


def pooled_frame_scores(path: os.PathLike, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray, float]:
    """(scores, flags, frames per point) of ``frame_scores.csv`` read in blocks and max-pooled to at most
    ``max_points`` points (a days-long stream is never loaded whole)."""
    with open(path) as f:
        n = sum(1 for _ in f) - 1
    step = max(1, -(-n // max_points))
    scores, flags = [], []
    cur_s, cur_f, k = -np.inf, 0, 0
    with open(path) as f:
        for row in csv.DictReader(f):
            cur_s, cur_f, k = max(cur_s, float(row["score"])), max(cur_f, int(row["anomalous"])), k + 1
            if k == step:
                scores.append(cur_s), flags.append(cur_f)
                cur_s, cur_f, k = -np.inf, 0, 0
    if k:
        scores.append(cur_s), flags.append(cur_f)
    return np.asarray(scores), np.asarray(flags, bool), float(step)


def write_prompts_csv(path: os.PathLike, prompts: Prompts) -> None:
    rows = (np.column_stack([prompts.frame, prompts.obj_id, prompts.xyxy, prompts.point, prompts.score])
            if len(prompts) else np.zeros((0, 9)))
    np.savetxt(path, rows, delimiter=",", header=PROMPTS_HEADER, comments="", fmt="%.6g")


def read_prompts_csv(path: os.PathLike) -> Prompts:
    data = _load_rows(path, 9)
    if data.size == 0:
        return Prompts.empty()
    return Prompts(data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), data[:, 2:6], data[:, 6:8], data[:, 8])


def write_events_csv(path: os.PathLike, events: list, fps: float) -> None:
    f = CsvFile(path, EVENT_HEADER)
    f.write(ev.csv_row(fps) for ev in events)
    f.close()


def read_events_csv(path: os.PathLike) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def gap_line(gap: dict) -> str:
    return (f"{gap['after_frame']},{gap['start_s']},{gap['length_s']},{gap['attempts']},"
            f"{int(gap['reconnected'])}")


def write_gaps_csv(path: os.PathLike, gaps: list[dict]) -> None:
    f = CsvFile(path, GAPS_HEADER)
    f.write(gap_line(g) for g in gaps)
    f.close()


def read_gaps_csv(path: os.PathLike) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ----- text and JSON -------------------------------------------------------------------------------------------
def write_note(path: os.PathLike, note: str) -> None:
    Path(path).write_text(note + "\n")


def write_json(path: os.PathLike, data: dict) -> None:
    """JSON written to a temporary name and renamed (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read_json(path: os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
