"""Command-line front end: score other systems' outputs with tao_lab's metrics.

    python -m tao_lab.metrics object --tracks DIR --detections DIR --num-frames N [--group-ties]
    python -m tao_lab.metrics pixel --scores DIR --masks DIR [--protocol standard|tao] [--threshold T]
    python -m tao_lab.metrics frame --scores FILE --labels FILE [--videos FILE]

Each prints one JSON object on stdout (NaN is printed as null) and exits with status 2 and a one-line
``error: ...`` message on stderr when the input is malformed.

object: DIR holds one ``<video>.txt`` per video (formats in :mod:`tao_lab.metrics.tracks`; frame ids on the same
    base in both folders). A video without anomalous objects needs an empty tracks file; a detections file without
    a tracks file is an error (unknown video) unless ``--missing-tracks-ok``.
pixel: ``--scores`` holds one ``<video>.npy`` real array (T, H, W) per video; ``--masks`` one ``<video>.npy``
    boolean array (T, H, W) or a ``<video>/`` folder of T mask images (nonzero = anomalous, natural sort order).
    Both folders must hold the same videos.
frame: one value per line; labels 0/1; optional video ids (one per line) for the macro AUC (without them
    ``auc_macro`` is null).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

__all__ = ["main"]

IMAGE_EXTS = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm"}


class InputError(ValueError):
    """Malformed user input (reported as ``error: ...``, exit status 2)."""


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if np.ndim(v) != 0:
            continue
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        else:
            v = float(v)
            out[k] = None if math.isnan(v) else v
    return out


def _others(folder: Path, ext: str) -> str:
    """' (it holds a.csv, b.json, ...)' naming what a folder holds instead of ``ext`` files, or ''."""
    try:
        names = sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() != ext)
    except OSError:
        return ""
    if not names:
        return " (the folder is empty)"
    return f" (it holds {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}, not {ext} files)"


def _txt_files(folder, what: str, fmt: str) -> None:
    """Refuses a folder without any ``<video>.txt`` file: scoring it would silently give RBDC = TBDC = 0."""
    d = Path(folder)
    if d.is_dir() and not any(d.glob("*.txt")):
        raise InputError(f"no <video>.txt {what} files in {d}{_others(d, '.txt')}; expected one {fmt} text file "
                         f"per video (an empty file for a video without any)")


def _load_npy(path: Path, what: str) -> np.ndarray:
    """A .npy array (memory-mapped), or InputError naming the file when it is not one."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy {what} array ({e}); expected an array saved with "
                         f"numpy.save (no pickled objects)") from None


# ----------------------------------------------------------------------------------------------------------------
def run_object(args) -> dict:
    from tao_lab.metrics.objects import rbdc_tbdc
    from tao_lab.metrics.tracks import read_txt_dir

    _txt_files(args.tracks, "tracks", "track_id,frame_id,x_min,y_min,x_max,y_max")
    _txt_files(args.detections, "detections", "frame_id,x_min,y_min,x_max,y_max,score")
    tracks = read_txt_dir(args.tracks, "tracks", args.frame_base)
    dets = read_txt_dir(args.detections, "detections", args.frame_base)
    unknown = sorted(set(dets) - set(tracks))
    if unknown and not args.missing_tracks_ok:
        raise InputError(f"unknown video(s) {unknown[:5]}: detection files without a tracks file in {args.tracks} "
                         "(add an empty <video>.txt for videos without anomalous objects, or pass "
                         "--missing-tracks-ok)")
    if not tracks:
        raise InputError(f"no <video>.txt tracks files in {args.tracks}")
    r = rbdc_tbdc(tracks, dets, args.num_frames, group_ties=args.group_ties)
    out = _jsonable(r)
    out["group_ties"] = bool(args.group_ties)
    out["num_videos"] = len(set(tracks) | set(dets))
    return out


def _mask_frames(path: Path) -> tuple[int, Iterator[np.ndarray], tuple]:
    """(number of frames, iterator of (H, W) bool masks, (H, W)) of a .npy array or a folder of images."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS),
                       key=lambda p: _natural_key(p.name))
        if not files:
            raise InputError(f"mask folder {path} holds no images ({', '.join(sorted(IMAGE_EXTS))})")

        def read(p):
            m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if m is None:
                raise InputError(f"cannot read mask image {p}")
            if m.ndim == 3:
                m = m.max(axis=2)
            return m != 0

        first = read(files[0])
        return len(files), (read(p) for p in files), first.shape
    arr = _load_npy(path, "mask")
    if arr.ndim != 3:
        raise InputError(f"{path}: masks must be (T, H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise InputError(f"{path}: masks must be boolean (or integer, nonzero = anomalous), got dtype {arr.dtype}")
    return arr.shape[0], (np.asarray(arr[i]) != 0 for i in range(arr.shape[0])), arr.shape[1:]


def run_pixel(args) -> dict:
    from tao_lab.metrics.pixel import PixelMetrics, TaoPixelMetrics

    sdir, mdir = Path(args.scores), Path(args.masks)
    for d, what in ((sdir, "--scores"), (mdir, "--masks")):
        if not d.is_dir():
            raise InputError(f"{what} folder not found: {d}")
    scores = {p.stem: p for p in sdir.glob("*.npy")}
    masks = {p.stem: p for p in mdir.glob("*.npy")}
    masks.update({p.name: p for p in mdir.iterdir() if p.is_dir()})
    if not scores:
        raise InputError(f"no <video>.npy score files in {sdir}{_others(sdir, '.npy')}")
    unknown = sorted(set(scores) - set(masks))
    if unknown:
        raise InputError(f"unknown video(s) {unknown[:5]}: score files without masks in {mdir}")
    missing = sorted(set(masks) - set(scores))
    if missing:
        raise InputError(f"video(s) {missing[:5]} have masks in {mdir} but no scores in {sdir}")
    if args.protocol == "tao":
        acc = TaoPixelMetrics()
    else:
        acc = PixelMetrics(binned=args.binned, num_bins=args.num_bins)
    for video in sorted(scores, key=_natural_key):
        s = _load_npy(scores[video], "score")
        if s.ndim != 3:
            raise InputError(f"{scores[video]}: scores must be (T, H, W), got shape {s.shape}")
        if s.dtype.kind not in "fiu":
            raise InputError(f"{scores[video]}: scores must be real numbers, got dtype {s.dtype}")
        n, frames, hw = _mask_frames(masks[video])
        if n != s.shape[0] or tuple(hw) != tuple(s.shape[1:]):
            raise InputError(f"video {video}: scores {tuple(s.shape)} but masks ({n}, {hw[0]}, {hw[1]})")
        for i, m in enumerate(frames):
            if m.shape != s.shape[1:]:
                raise InputError(f"video {video} frame {i}: mask shape {m.shape} != scores {tuple(s.shape[1:])}")
            frame = np.asarray(s[i])
            if frame.dtype.kind == "f" and not np.isfinite(frame).all():
                raise InputError(f"video {video} frame {i}: scores contain NaN or inf")
            acc.update(frame, m)
    if args.protocol == "tao":
        out = acc.compute()
    else:
        out = acc.compute(fpr_limit=args.fpr_limit, threshold=args.threshold)
    out = _jsonable(out)
    out["protocol"] = args.protocol
    return out


def _read_lines(path: str, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found: {p}")
    return [line.strip() for line in p.read_text().splitlines() if line.strip()]


def _numbers(lines: list[str], path: str) -> np.ndarray:
    out = np.empty(len(lines))
    for i, t in enumerate(lines):
        try:
            out[i] = float(t)
        except ValueError:
            raise InputError(f"{path}: line {i + 1} is not a number: {t!r}") from None
        if not math.isfinite(out[i]):
            raise InputError(f"{path}: line {i + 1} is NaN or inf")
    return out


def run_frame(args) -> dict:
    from tao_lab.metrics.frame import frame_metrics

    s = _numbers(_read_lines(args.scores, "--scores"), args.scores)
    y = _numbers(_read_lines(args.labels, "--labels"), args.labels)
    if len(s) != len(y):
        raise InputError(f"{len(s)} scores in {args.scores} but {len(y)} labels in {args.labels}")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"{args.labels}: labels must be 0 or 1")
    if args.videos:
        v = _read_lines(args.videos, "--videos")
        if len(v) != len(s):
            raise InputError(f"{len(s)} scores but {len(v)} video ids in {args.videos}")
        ids = list(dict.fromkeys(v))
        va = np.array(v)
        out = frame_metrics([s[va == k] for k in ids], [y[va == k] for k in ids])
        out["num_videos"] = len(ids)
    else:
        out = frame_metrics([s], [y])
        out.update(auc_macro=float("nan"), macro_videos_skipped=0, macro_videos=0)
    out["num_frames"] = len(s)
    return _jsonable(out)


# ----------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tao_lab.metrics",
                                 description="Frame, pixel and object anomaly-detection metrics (prints JSON).")
    sub = ap.add_subparsers(dest="command", required=True)

    o = sub.add_parser("object", help="RBDC / TBDC from tracks and detections txt folders")
    o.add_argument("--tracks", required=True, help="folder of <video>.txt: track_id,frame_id,x_min,y_min,x_max,y_max")
    o.add_argument("--detections", required=True, help="folder of <video>.txt: frame_id,x_min,y_min,x_max,y_max,score")
    o.add_argument("--num-frames", type=int, required=True, help="total number of test frames (FPR denominator)")
    o.add_argument("--group-ties", action="store_true", help="one operating point per distinct score")
    o.add_argument("--frame-base", type=int, default=0, help="frame id of a video's first frame (default 0)")
    o.add_argument("--missing-tracks-ok", action="store_true",
                   help="treat detection files without a tracks file as videos without GT")
    o.set_defaults(func=run_object)

    p = sub.add_parser("pixel", help="pixel AUROC / AP / AUPRO / F1 from score and mask arrays")
    p.add_argument("--scores", required=True, help="folder of <video>.npy float arrays (T, H, W)")
    p.add_argument("--masks", required=True, help="folder of <video>.npy bool arrays (T, H, W) or <video>/ images")
    p.add_argument("--protocol", choices=("standard", "tao"), default="standard")
    p.add_argument("--fpr-limit", type=float, default=0.3, help="AUPRO integration limit (standard protocol)")
    p.add_argument("--threshold", type=float, default=None, help="also report F1 at this score threshold")
    p.add_argument("--binned", action="store_true", help="fixed-memory histograms with certified error bounds")
    p.add_argument("--num-bins", type=int, default=1 << 20)
    p.set_defaults(func=run_pixel)

    f = sub.add_parser("frame", help="frame AUC (micro, macro) and AP from text files")
    f.add_argument("--scores", required=True, help="one score per line")
    f.add_argument("--labels", required=True, help="one 0/1 label per line")
    f.add_argument("--videos", default=None, help="one video id per line (for the macro AUC)")
    f.set_defaults(func=run_frame)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "num_frames", 1) is not None and getattr(args, "num_frames", 1) < 1:
            raise InputError(f"--num-frames must be >= 1, got {args.num_frames}")
        out = args.func(args)
    except (InputError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=False))
    return 0
