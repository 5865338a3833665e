"""GT object tracks derived from pixel masks, and the standard txt formats of tracks and detections.

Datasets such as UCSD Ped2 ship only pixel masks; RBDC/TBDC need object tracks. :func:`tracks_from_masks`
derives them (these are *not* the hand-made Ramachandra & Jones annotations, which were never published for
Ped2; numbers on derived tracks are comparable with each other, not with published tables):

1. per frame, the connected components of the mask (8-connected by default); components smaller than
   ``min_area`` pixels are dropped (annotation specks);
2. each component is linked to an active track whose last mask overlaps it with pixel IoU >= ``link_iou``,
   greedily by decreasing IoU (one component per track, one track per component; ties go to the older track
   and the first component in OpenCV's scan order), else it starts a new track;
3. a track stays active for ``max_gap`` frames without a match (a short gap in the annotation does not split it);
4. one row per (frame, track): the component's box, xyxy exclusive (x2 = last column + 1), score 1, class 0.

Track ids start at 0 per call (per clip) in order of appearance. Deterministic.

Text formats (AED-compatible; one file per video, comma-separated, no header; blank lines and lines starting with
``#`` are ignored):
- tracks: ``track_id, frame_id, x_min, y_min, x_max, y_max``
- detections: ``frame_id, x_min, y_min, x_max, y_max, score``
``x_max``/``y_max`` are inclusive pixel coordinates by default (``inclusive_max=True``: the box spans columns
x_min..x_max, AED's "+1" convention), converted to and from the exclusive ObjectTable convention by adding or
subtracting 1. ``frame_base`` is the file's index of a video's first frame (0 or 1); the readers return 0-based
frames. Malformed files raise ``ValueError`` naming the file and line.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Union

import cv2
import numpy as np

from tao_lab.types import ObjectTable

__all__ = ["tracks_from_masks", "read_tracks_txt", "write_tracks_txt", "read_detections_txt",
           "write_detections_txt", "read_txt_dir", "TRACK_COLUMNS", "DETECTION_COLUMNS"]

TRACK_COLUMNS = ("track_id", "frame_id", "x_min", "y_min", "x_max", "y_max")
DETECTION_COLUMNS = ("frame_id", "x_min", "y_min", "x_max", "y_max", "score")

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------------------------------------
# tracks from masks
# ----------------------------------------------------------------------------------------------------------------
def tracks_from_masks(masks: Iterable[np.ndarray], min_area: int = 20, connectivity: int = 8,
                      link_iou: float = 0.1, max_gap: int = 5) -> ObjectTable:
    """GT object tracks of one clip from its per-frame anomaly masks.

    Args:
        masks: the clip's masks in frame order, each (H, W) bool (nonzero = anomalous); streamed, never stacked.
        min_area: components with fewer pixels are dropped.
        connectivity: 8 or 4.
        link_iou: minimum pixel IoU between a component and a track's last mask to continue the track.
        max_gap: frames a track may go unmatched and still be continued.

    Returns:
        ObjectTable sorted by (frame, track_id): frame 0-based, xyxy exclusive in pixels, score 1, track_id >= 0,
        cls 0. Empty when no mask has a component of ``min_area`` pixels.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    shape = None
    active: list[dict] = []        # {"id", "last", "pix" (flat indices), "area"}
    next_id = 0
    out_frame, out_box, out_tid = [], [], []
    for t, mask in enumerate(masks):
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ValueError(f"mask of frame {t} must be 2-D (H, W), got shape {m.shape}")
        if shape is None:
            shape = m.shape
        elif m.shape != shape:
            raise ValueError(f"mask of frame {t} has shape {m.shape}, earlier frames {shape}")
        m = m if m.dtype == bool else m != 0
        active = [a for a in active if t - a["last"] - 1 <= max_gap]
        if not m.any():
            continue
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        r0, c0 = int(rows[0]), int(cols[0])
        sub = np.ascontiguousarray(m[r0:rows[-1] + 1, c0:cols[-1] + 1])
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sub.view(np.uint8), connectivity=connectivity,
                                                               ltype=cv2.CV_32S)
        keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area) + 1
        if not len(keep):
            continue
        # full-frame flat pixel indices of every kept component, grouped by component
        rr, cc = np.nonzero(labels)
        lab = labels[rr, cc]
        order = np.argsort(lab, kind="stable")
        flat = ((rr + r0) * shape[1] + (cc + c0))[order]
        bounds = np.searchsorted(lab[order], np.arange(n + 1))
        comp_pix = [flat[bounds[k]:bounds[k + 1]] for k in keep]
        comp_area = stats[keep, cv2.CC_STAT_AREA].astype(np.int64)
        # link: pixel IoU with each active track's last mask, greedy by decreasing IoU
        assigned = np.full(len(keep), -1, np.int64)
        if active:
            label_of = np.zeros(shape[0] * shape[1], np.int32)
            for j, pix in enumerate(comp_pix):
                label_of[pix] = j + 1
            cand = []
            for i, a in enumerate(active):
                ov = np.bincount(label_of[a["pix"]], minlength=len(keep) + 1)[1:]
                for j in np.flatnonzero(ov):
                    iou = ov[j] / (a["area"] + comp_area[j] - ov[j])
                    if iou >= link_iou:
                        cand.append((-iou, i, j))
            used_tracks = set()
            for _, i, j in sorted(cand):
                if i in used_tracks or assigned[j] >= 0:
                    continue
                used_tracks.add(i)
                assigned[j] = i
        for j, k in enumerate(keep):
            if assigned[j] >= 0:
                a = active[assigned[j]]
            else:
                a = {"id": next_id}
                next_id += 1
                active.append(a)
            a.update(last=t, pix=comp_pix[j], area=int(comp_area[j]))
            x, y, w, h = (int(v) for v in stats[k, :4])
            out_frame.append(t)
            out_box.append((x + c0, y + r0, x + c0 + w, y + r0 + h))
            out_tid.append(a["id"])
    if not out_frame:
        return ObjectTable.empty()
    table = ObjectTable.build(np.array(out_frame), np.array(out_box, np.float32), track_id=np.array(out_tid))
    return table.take(np.lexsort((table.track_id, table.frame)))


# ----------------------------------------------------------------------------------------------------------------
# txt formats
# ----------------------------------------------------------------------------------------------------------------
def _parse(path: PathLike, columns: tuple[str, ...]) -> np.ndarray:
    """Rows of a comma-separated numeric file as an (N, len(columns)) float64 array, with precise errors."""
    rows = []
    ncol = len(columns)
    with open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = [p.strip() for p in text.split(",")]
            if parts and parts[-1] == "" and len(parts) == ncol + 1:   # tolerate a trailing comma
                parts = parts[:-1]
            if len(parts) != ncol:
                raise ValueError(f"{path}:{lineno}: expected {ncol} comma-separated values "
                                 f"({', '.join(columns)}), got {len(parts)}: {text!r}")
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: non-numeric value in {text!r}") from None
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{path}:{lineno}: NaN or inf in {text!r}")
            rows.append(values)
    return np.array(rows, np.float64).reshape(-1, ncol)


def _integral(values: np.ndarray, path: PathLike, column: str) -> np.ndarray:
    bad = values != np.round(values)
    if bad.any():
        raise ValueError(f"{path}: {column} must be integers, got {values[bad][0]!r}")
    return values.astype(np.int64)


def _boxes_from_file(a: np.ndarray, path: PathLike, inclusive_max: bool) -> np.ndarray:
    box = a.copy()
    bad = (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])
    if bad.any():
        raise ValueError(f"{path}: box {box[bad][0].tolist()} has x_max < x_min or y_max < y_min")
    if inclusive_max:
        box[:, 2:] += 1
    return box.astype(np.float32)


def _frames_from_file(f: np.ndarray, path: PathLike, frame_base: int) -> np.ndarray:
    f = _integral(f, path, "frame_id") - int(frame_base)
    if (f < 0).any():
        raise ValueError(f"{path}: frame_id {int(f.min()) + frame_base} is below frame_base {frame_base}")
    return f


def read_tracks_txt(path: PathLike, frame_base: int = 0, inclusive_max: bool = True) -> ObjectTable:
    """Reads ``track_id, frame_id, x_min, y_min, x_max, y_max`` rows into an ObjectTable (score 1, cls 0)."""
    a = _parse(path, TRACK_COLUMNS)
    return ObjectTable.build(_frames_from_file(a[:, 1], path, frame_base), _boxes_from_file(a[:, 2:6], path,
                             inclusive_max), track_id=_integral(a[:, 0], path, "track_id"))


def read_detections_txt(path: PathLike, frame_base: int = 0, inclusive_max: bool = True) -> ObjectTable:
    """Reads ``frame_id, x_min, y_min, x_max, y_max, score`` rows into an ObjectTable (track_id -1, cls 0)."""
    a = _parse(path, DETECTION_COLUMNS)
    return ObjectTable.build(_frames_from_file(a[:, 0], path, frame_base),
                             _boxes_from_file(a[:, 1:5], path, inclusive_max), score=a[:, 5])


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else format(float(v), ".9g")


def _write(path: PathLike, columns: list[np.ndarray]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for row in zip(*columns):
            f.write(",".join(_fmt(v) for v in row) + "\n")
    os.replace(tmp, path)


def _boxes_to_file(xyxy: np.ndarray, inclusive_max: bool) -> np.ndarray:
    box = xyxy.astype(np.float64)
    if inclusive_max:
        box[:, 2:] -= 1
    return box


def write_tracks_txt(path: PathLike, tracks: ObjectTable, frame_base: int = 0, inclusive_max: bool = True) -> None:
    """Writes an ObjectTable as ``track_id, frame_id, x_min, y_min, x_max, y_max`` rows (atomic replace)."""
    box = _boxes_to_file(tracks.xyxy, inclusive_max)
    _write(path, [tracks.track_id, tracks.frame + frame_base, box[:, 0], box[:, 1], box[:, 2], box[:, 3]])


def write_detections_txt(path: PathLike, detections: ObjectTable, frame_base: int = 0,
                         inclusive_max: bool = True) -> None:
    """Writes an ObjectTable as ``frame_id, x_min, y_min, x_max, y_max, score`` rows (atomic replace)."""
    box = _boxes_to_file(detections.xyxy, inclusive_max)
    _write(path, [detections.frame + frame_base, box[:, 0], box[:, 1], box[:, 2], box[:, 3], detections.score])


def read_txt_dir(directory: PathLike, kind: str, frame_base: int = 0, inclusive_max: bool = True) \
        -> dict[str, ObjectTable]:
    """Every ``<video>.txt`` of a folder: ``kind`` = "tracks" or "detections"; returns video id -> ObjectTable."""
    reader = {"tracks": read_tracks_txt, "detections": read_detections_txt}.get(kind)
    if reader is None:
        raise ValueError(f"kind must be 'tracks' or 'detections', got {kind!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{kind} folder not found: {directory}")
    return {p.stem: reader(p, frame_base, inclusive_max) for p in sorted(directory.glob("*.txt"))}
