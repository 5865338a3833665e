"""ShanghaiTech Campus in its original layout.

Layout (``<root>`` = the folder holding ``training/`` and ``testing/``)::

    training/videos/01_001.avi ...               normal training videos (or training/frames/01_001/*.jpg)
    testing/frames/01_0014/000.jpg ...           test frames (or testing/videos/01_0014.avi)
    testing/test_frame_mask/01_0014.npy          (T,) 0/1 frame labels
    testing/test_pixel_mask/01_0014.npy          (T, H, W) 0/1 pixel masks (memory-mapped, read lazily)

Clip ids are the file/folder names ('01_001', '01_0014'). Frame counts are checked against both .npy files.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Optional

import numpy as np

from tao_lab.dataset.clips import VIDEO_EXTENSIONS, ArrayMasks, FrameFolderClip, VideoFileClip, list_images, natural_key
from tao_lab.dataset.common import check_limit, check_unknown_ids, require_dir, select_ids
from tao_lab.dataset.errors import DataError
from tao_lab.types import Clip, ClipGT, Dataset

SHANGHAITECH_FPS = 24.0
_HOW = ("Download ShanghaiTech Campus (https://svip-lab.github.io/dataset/campus_dataset.html), extract it and set "
        "paths.data_dir to the folder that contains training/ and testing/.")
_ID_RE = re.compile(r"\d+_\d+")


def _entries(root: str, split: str) -> tuple[str, dict[str, str], bool]:
    base = os.path.join(root, "training" if split == "train" else "testing")
    order = ("videos", "frames") if split == "train" else ("frames", "videos")
    for kind in order:
        folder = os.path.join(base, kind)
        if not os.path.isdir(folder):
            continue
        out = {}
        for n in sorted(os.listdir(folder), key=natural_key):
            p = os.path.join(folder, n)
            stem, ext = os.path.splitext(n)
            if kind == "videos" and os.path.isfile(p) and ext.lower() in VIDEO_EXTENSIONS and _ID_RE.fullmatch(stem):
                out[stem] = p
            elif kind == "frames" and os.path.isdir(p) and _ID_RE.fullmatch(n):
                out[n] = p
        if out:
            return folder, out, kind == "videos"
    raise DataError(f"ShanghaiTech {split} clips not found: expected {base}/{order[0]}/ (or {base}/{order[1]}/) "
                    f"with XX_YYY entries. {_HOW}")


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(f"ShanghaiTech ground-truth file not found: {path}. {_HOW}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read .npy file {path}: {e}") from e


def frame_labels_from_npy(arr: np.ndarray, path: str) -> np.ndarray:
    """(T,) bool from a ``test_frame_mask`` array: one 0/1 value per frame, else DataError naming the file.

    A (T, H, W) pixel mask, scores or other values are refused instead of being flattened or thresholded.
    """
    a = np.asarray(arr)
    if a.ndim == 2 and 1 in a.shape:  # (1, T) / (T, 1), as MATLAB exports write them
        a = a.reshape(-1)
    if a.ndim != 1:
        raise DataError(f"frame labels {path} have shape {a.shape}: expected one 0/1 value per frame, shape (T,)"
                        + (" (this looks like a pixel mask: those go in test_pixel_mask/)" if a.ndim == 3 else ""))
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"frame labels {path} have dtype {a.dtype}: expected 0/1 integers")
    bad = ~np.isin(a, (0, 1))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        values = np.unique(a[bad])[:5]
        raise DataError(f"frame labels {path} hold values other than 0 and 1 ({', '.join(map(str, values))}; first "
                        f"at frame {k}, 0-based): expected 1 = anomalous, 0 = normal per frame")
    return a != 0


def _warn_orphan_labels(label_dir: str, test_ids: set[str], frames_dir: str) -> None:
    """Frame-label files whose test clip is missing are named, not guessed: the labels are keyed by clip id, so
    they cannot shift onto other clips, but a copy that lost test clips must not look complete."""
    if not os.path.isdir(label_dir):
        return
    orphans = sorted(n[:-4] for n in os.listdir(label_dir) if n.endswith(".npy") and n[:-4] not in test_ids)
    if orphans:
        import logging

        logging.getLogger(__name__).warning(
            "%s has frame labels for %d test clips that are not in %s (%s%s): only the %d clips present are "
            "evaluated; restore them for numbers comparable with published ShanghaiTech results", label_dir,
            len(orphans), frames_dir, ", ".join(orphans[:5]), " ..." if len(orphans) > 5 else "", len(test_ids))


def load_shanghaitech(data_dir: str, max_clips: Optional[int] = None, max_frames: Optional[int] = None,
                      clip_ids: Optional[Iterable[str]] = None, splits: Iterable[str] = ("train", "test"),
                      fps: float = SHANGHAITECH_FPS, pixel_masks: bool = True) -> Dataset:
    """Reads ShanghaiTech Campus (see the module docstring) into a :class:`Dataset`.

    Test clips get frame labels (T,) bool from ``test_frame_mask`` and, when ``pixel_masks`` and the file exists,
    lazy masks (H, W) bool from the memory-mapped ``test_pixel_mask`` (T, H, W). A frame count that differs from
    either .npy, or a pixel mask of another size than the frames, raises DataError naming the paths and numbers.
    """
    root = require_dir(data_dir, "ShanghaiTech dataset directory", _HOW)
    max_frames = check_limit("max_frames", max_frames)
    splits = set(splits)
    sources = {s: _entries(root, s) for s in ("train", "test") if s in splits}
    check_unknown_ids(clip_ids, [c for src in sources.values() for c in src[1]], root)
    if "test" in sources:
        _warn_orphan_labels(os.path.join(root, "testing", "test_frame_mask"), set(sources["test"][1]),
                            sources["test"][0])
    out: dict[str, list[Clip]] = {"train": [], "test": []}
    for split, (folder, entries, is_video) in sources.items():
        for cid in select_ids(list(entries), clip_ids, max_clips):
            path = entries[cid]
            labels = pix = None
            if split == "test":
                lpath = os.path.join(root, "testing", "test_frame_mask", f"{cid}.npy")
                labels = frame_labels_from_npy(_load_npy(lpath, False), lpath)
                ppath = os.path.join(root, "testing", "test_pixel_mask", f"{cid}.npy")
                if pixel_masks and os.path.isfile(ppath):
                    pix = (ppath, _load_npy(ppath, True))
                    if pix[1].ndim != 3 or pix[1].shape[0] != len(labels):
                        raise DataError(f"pixel mask {ppath} has shape {pix[1].shape}, but {lpath} has "
                                        f"{len(labels)} frames (expected ({len(labels)}, H, W))")
            if is_video:
                clip = VideoFileClip(path, cid, max_frames=max_frames, fps=fps,
                                     expected_frames=None if labels is None else len(labels))
            else:
                files = list_images(path)
                if labels is not None and len(files) != len(labels):
                    raise DataError(f"frame folder {path} has {len(files)} frames but {lpath} has {len(labels)} "
                                    f"labels")
                clip = FrameFolderClip(path, cid, fps=fps, max_frames=max_frames, files=files)
            if labels is not None:
                mask = None
                if pix is not None:
                    if pix[1].shape[1:] != (clip.height, clip.width):
                        raise DataError(f"pixel mask {pix[0]} has frame size {pix[1].shape[1:]}, but the frames of "
                                        f"{path} are ({clip.height}, {clip.width})")
                    mask = ArrayMasks(pix[1], clip.height, clip.width, pix[0])
                clip.gt = ClipGT(labels[:clip.num_frames], mask)
            out[split].append(clip)
    return Dataset("shanghaitech", out["train"], out["test"])
