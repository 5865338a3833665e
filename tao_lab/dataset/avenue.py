"""CUHK Avenue in its original layout (or the common frame-folder variant).

Original layout (``<root>`` = the extracted "Avenue Dataset" folder)::

    training_videos/01.avi ... 16.avi          normal training videos
    testing_videos/01.avi ... 21.avi           test videos
    testing_label_mask/1_label.mat ...         pixel GT: ``volLabel``, a 1 x T cell of (H, W) masks (nonzero =
                                               anomalous); also looked up in ``ground_truth_demo/``

Frame-folder variant (ano_pred and followers)::

    training/frames/01/0000.jpg ...            testing/frames/01/0000.jpg ...

Frame labels are ``mask.any()`` per frame. The .mat files are MATLAB v5 (scipy.io.loadmat); v7.3 files are read
with h5py when it is installed. A .mat file can only be read whole, so each clip's masks are loaded once, at
dataset construction, and kept as bounding-box crops (:class:`CroppedMasks`).
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np

from tao_lab.dataset.clips import (VIDEO_EXTENSIONS, CroppedMasks, FrameFolderClip, VideoFileClip, list_images,
                                natural_key)
from tao_lab.dataset.common import check_limit, check_unknown_ids, require_dir, select_ids
from tao_lab.dataset.errors import DataError
from tao_lab.types import Clip, ClipGT, Dataset

AVENUE_FPS = 25.0
_HOW = ("Download 'Avenue Dataset.zip' and 'ground_truth_demo.zip' from "
        "http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html, extract both into one folder and "
        "set paths.data_dir to it (it must contain training_videos/, testing_videos/ and testing_label_mask/).")


def _numbered(folder: str, want_dirs: bool) -> dict[int, str]:
    """{number: path} of the entries of ``folder`` named by a number (videos '01.avi' or frame folders '01')."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for n in sorted(os.listdir(folder), key=natural_key):
        p = os.path.join(folder, n)
        stem, ext = os.path.splitext(n)
        if want_dirs and os.path.isdir(p) and n.isdigit():
            out[int(n)] = p
        elif not want_dirs and os.path.isfile(p) and ext.lower() in VIDEO_EXTENSIONS and stem.isdigit():
            out[int(stem)] = p
    return out


def _split_sources(root: str, split: str) -> tuple[str, dict[int, str], bool]:
    """(folder, {number: video or frame folder}, is_video) for 'train'/'test'."""
    vid_dir = os.path.join(root, "training_videos" if split == "train" else "testing_videos")
    frm_dir = os.path.join(root, "training" if split == "train" else "testing", "frames")
    vids = _numbered(vid_dir, False)
    if vids:
        return vid_dir, vids, True
    frames = _numbered(frm_dir, True)
    if frames:
        return frm_dir, frames, False
    if split == "train" and (_numbered(os.path.join(root, "testing_videos"), False)
                             or _numbered(os.path.join(root, "testing", "frames"), True)):
        # a copy with test videos only (e.g. ../shared/datasets/avenue_partial): say what still works
        raise DataError(f"the Avenue training videos are missing: {root} has test videos but neither "
                        f"{vid_dir}/NN.avi nor {frm_dir}/NN/. A supervised run fits the scorer on the training "
                        f"videos; without them use training.mode=unsupervised (fits on the test videos, no labels "
                        f"read) or give a trained ckpt_path, or add training_videos/. {_HOW}")
    raise DataError(f"Avenue {split} clips not found: neither {vid_dir}/NN.avi nor {frm_dir}/NN/ exist. {_HOW}")


def read_mat_masks(path: str, key: str = "volLabel") -> list[np.ndarray]:
    """The per-frame masks of an Avenue ``N_label.mat`` file: list of (H, W) arrays (v5 via scipy, v7.3 via h5py)."""
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        return _read_mat73(path, key)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for corrupt files
        raise DataError(f"cannot read MATLAB file {path}: {e}") from e
    if key not in data:
        raise DataError(f"{path} has no variable {key!r} (found {sorted(k for k in data if not k.startswith('__'))})")
    cell = data[key]
    if cell.dtype == object:
        return _checked_masks([np.asarray(m) for m in cell.reshape(-1)], path, key)
    arr = np.asarray(cell)
    if arr.ndim == 3:  # stored as an (H, W, T) array instead of a cell
        return _checked_masks([arr[:, :, t] for t in range(arr.shape[2])], path, key)
    raise DataError(f"{path}: {key} has unexpected shape {arr.shape} (expected a 1 x T cell of masks)")


def _checked_masks(masks: list[np.ndarray], path: str, key: str) -> list[np.ndarray]:
    """The masks if every entry is a numeric (H, W) array of one size; DataError naming the entry otherwise (frame
    labels are derived from these masks, so a malformed entry must not turn into 'normal frame')."""
    if not masks:
        raise DataError(f"{path}: {key} holds no masks (expected one (H, W) mask per frame of the video)")
    first = None
    for k, m in enumerate(masks):
        if m.ndim != 2 or m.dtype == object or not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise DataError(f"{path}: {key}{{{k + 1}}} (frame {k}, 0-based) is a {m.dtype} array of shape "
                            f"{m.shape}, not an (H, W) mask; restore the official label file")
        if first is None:
            first = m.shape
        elif m.shape != first:
            raise DataError(f"{path}: {key}{{{k + 1}}} (frame {k}, 0-based) has shape {m.shape} but "
                            f"{key}{{1}} has {first}; every mask of a video has the frame size")
    return masks


def _read_mat73(path: str, key: str) -> list[np.ndarray]:
    try:
        import h5py
    except ImportError as e:
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file: install h5py or re-save it with "
                        f"save(..., '-v7') in MATLAB") from e
    with h5py.File(path, "r") as f:
        if key not in f:
            raise DataError(f"{path} has no variable {key!r}")
        refs = np.asarray(f[key]).reshape(-1)
        # HDF5 stores MATLAB arrays column-major: transpose back to (H, W)
        return [np.asarray(f[r]).T for r in refs]


def _find_label_dir(root: str) -> Optional[str]:
    for cand in (os.path.join(root, "testing_label_mask"),
                 os.path.join(root, "ground_truth_demo", "testing_label_mask")):
        if os.path.isdir(cand):
            return cand
    return None


def load_avenue(data_dir: str, max_clips: Optional[int] = None, max_frames: Optional[int] = None,
                clip_ids: Optional[Iterable[str]] = None, splits: Iterable[str] = ("train", "test"),
                fps: float = AVENUE_FPS) -> Dataset:
    """Reads CUHK Avenue (see the module docstring) into a :class:`Dataset`.

    Clip ids 'Train01'.. / 'Test01'..; test clips get frame labels (T,) bool and lazy masks (H, W) bool from
    ``testing_label_mask/N_label.mat``. The number of masks must equal the number of decodable frames (DataError
    naming the video, the .mat file and both numbers otherwise). ``max_clips`` per split, ``max_frames`` per
    clip, ``clip_ids`` as in :func:`tao_lab.dataset.load_ucsd`.
    """
    root = require_dir(data_dir, "Avenue dataset directory", _HOW)
    max_frames = check_limit("max_frames", max_frames)
    splits = set(splits)
    sources = {s: _split_sources(root, s) for s in ("train", "test") if s in splits}
    ids = {s: {f"{'Train' if s == 'train' else 'Test'}{k:02d}": (k, p) for k, p in src[1].items()}
           for s, src in sources.items()}
    check_unknown_ids(clip_ids, [c for d in ids.values() for c in d], root)
    out: dict[str, list[Clip]] = {"train": [], "test": []}
    label_dir = _find_label_dir(root) if "test" in splits else None
    if "test" in splits and label_dir is None:
        raise DataError(f"Avenue test ground truth not found: {root}/testing_label_mask/ (or "
                        f"{root}/ground_truth_demo/testing_label_mask/) is missing. {_HOW}")
    if label_dir is not None:
        _note_unused_label_files(label_dir, {k for k, _ in ids["test"].values()})
    for split, (folder, _, is_video) in sources.items():
        for cid in select_ids(list(ids[split]), clip_ids, max_clips):
            k, path = ids[split][cid]
            gt = None
            expected = None
            if split == "test":
                mat = os.path.join(label_dir, f"{k}_label.mat")
                if not os.path.isfile(mat):
                    mat2 = os.path.join(label_dir, f"{k:02d}_label.mat")
                    if not os.path.isfile(mat2):
                        raise DataError(f"Avenue mask file not found: {mat} (needed for test clip {path}). {_HOW}")
                    mat = mat2
                masks = read_mat_masks(mat)
                expected = len(masks)
                gt = (mat, masks)
            out[split].append(_make_clip(cid, path, is_video, gt, expected, max_frames, fps))
    return Dataset("avenue", out["train"], out["test"])


def _note_unused_label_files(label_dir: str, test_numbers: set[int]) -> None:
    """Logs the label files that belong to no test video. They are named by video number, so an unused one cannot
    shift the others (unlike UCSD's positional .m entries); the official ground truth ships all 21 separately from
    the videos, so a copy with fewer test videos (../shared/datasets/avenue_partial) is expected to have some."""
    import logging
    import re

    unused = sorted(int(m.group(1)) for n in os.listdir(label_dir)
                    if (m := re.fullmatch(r"0*(\d+)_label\.mat", n)) and int(m.group(1)) not in test_numbers)
    if unused:
        logging.getLogger(__name__).info("%s: label files for %d test videos that are not in this copy (%s); only "
                                         "the %d present videos are evaluated", label_dir, len(unused),
                                         ", ".join(map(str, unused)), len(test_numbers))


def _make_clip(cid, path, is_video, gt, expected, max_frames, fps) -> Clip:
    if is_video:
        clip = VideoFileClip(path, cid, max_frames=max_frames, expected_frames=expected, fps=fps)
    else:
        files = list_images(path)
        if expected is not None and len(files) != expected:
            raise DataError(f"frame folder {path} has {len(files)} frames but its mask file {gt[0]} has {expected}")
        clip = FrameFolderClip(path, cid, fps=fps, max_frames=max_frames, files=files)
    if gt is not None:
        mat, masks = gt
        cm = CroppedMasks(masks[:clip.num_frames], clip.height, clip.width, where=mat)
        clip.gt = ClipGT(cm.labels(), cm)
    return clip
