"""UCSD Ped1 / Ped2 in the original layout, and a writer of that layout.

Layout (``<root>`` = the ``UCSDped2`` folder, or its parent, or the extracted ``UCSD_Anomaly_Dataset.v1p2``)::

    UCSDped2/Train/Train001/001.tif ...        training frames (normal only); any image extension
    UCSDped2/Test/Test001/001.tif ...          test frames
    UCSDped2/Test/Test001_gt/001.bmp ...       pixel masks, one per frame (png/bmp/tif; 'frame001.bmp' too)
    UCSDped2/Test/UCSDped2.m                   frame labels: ``TestVideoFile{end+1}.gt_frame = [61:180];``

The .m file holds, per test clip in order, 1-based inclusive frame ranges (several per clip allowed, e.g.
``[5:90, 140:200]``). Frame labels always come from it; masks come lazily from ``TestNNN_gt`` when that folder
exists (Ped1 has them for only some clips; the others get ``mask=None``). Internally frames are 0-based.
The entries are positional, so a gap (``TestVideoFile{1}``, ``{3}``), a duplicate, or an entry without its TestNNN
folder is refused naming the file and the entry instead of being read as "all normal".
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Optional, Union

import cv2
import numpy as np

from tao_lab.dataset.clips import FolderMasks, FrameFolderClip, list_images
from tao_lab.dataset.common import check_limit, check_unknown_ids, require_dir, select_ids
from tao_lab.dataset.errors import DataError
from tao_lab.types import Clip, ClipGT, Dataset

UCSD_FPS = 10.0  # the UCSD clips were recorded at 10 frames/s
_HOW = ("Download http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz, extract it and set "
        "paths.data_dir to the folder that contains UCSDped1/UCSDped2 (or to the UCSDpedN folder itself).")
_ENTRY_RE = re.compile(r"TestVideoFile\s*\{\s*(end\s*\+\s*1|\d+)\s*\}\s*\.\s*gt_frame\s*=\s*\[([^\]]*)\]")


def _subset_name(subset: Union[str, int]) -> str:
    s = str(subset).lower().replace("ucsd", "").replace("_", "").replace("ped", "")
    if s not in ("1", "2"):
        raise ValueError(f"unknown UCSD subset {subset!r}: expected 'ped1' or 'ped2'")
    return f"UCSDped{s}"


def find_ucsd_root(data_dir: str, subset: Union[str, int] = "ped2") -> str:
    """The ``UCSDpedN`` folder (the one holding Train/ and Test/) under or at ``data_dir``; DataError if absent."""
    name = _subset_name(subset)
    d = require_dir(data_dir, f"UCSD {name} dataset directory", _HOW)
    other = "UCSDped1" if name == "UCSDped2" else "UCSDped2"
    for cand in (d, os.path.join(d, name), os.path.join(d, "UCSD_Anomaly_Dataset.v1p2", name),
                 os.path.join(d, f"ucsd_{name[4:].lower()}", name)):
        if os.path.isdir(os.path.join(cand, "Test")) or os.path.isdir(os.path.join(cand, "Train")):
            if os.path.basename(cand.rstrip(os.sep)) == other:
                raise DataError(f"{cand} is {other}, but subset={subset!r} asks for {name}: set the subset to "
                                f"'{other[4:].lower()}' or point paths.data_dir at the {name} folder")
            return cand
    raise DataError(f"UCSD {name} not found under {d}: expected {d}/{name}/Train and {d}/{name}/Test "
                    f"(or Train/ and Test/ directly in it). {_HOW}")


def parse_ucsd_m(path: str) -> list[list[tuple[int, int]]]:
    """Parses a ``UCSDpedN.m`` label file: per test clip (in file order), the 1-based inclusive (start, end) ranges.

    Accepts ``[61:180]``, ``[5:90, 140:200]``, single frames ``[7]``, ``a:step:b`` (expanded) and ``[]``.
    """
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise DataError(f"cannot read UCSD label file {path}: {e}") from e
    text = re.sub(r"%[^\n]*", "", text)  # MATLAB comments
    entries: dict[int, list[tuple[int, int]]] = {}
    nxt = 0
    for m in _ENTRY_RE.finditer(text):
        idx = nxt if m.group(1).replace(" ", "").startswith("end") else int(m.group(1)) - 1
        if idx < 0:
            raise DataError(f"UCSD label file {path}: entry TestVideoFile{{{idx + 1}}} has no test clip (MATLAB "
                            f"indices start at 1); number the entries 1, 2, 3, ... or write {{end+1}}")
        if idx in entries:
            # a second entry for the same clip would silently replace the first one's labels
            raise DataError(f"UCSD label file {path}: TestVideoFile{{{idx + 1}}} is given twice; keep one entry "
                            f"per test clip, in clip order")
        nxt = max(nxt, idx + 1)
        ranges = []
        for tok in re.split(r"[,;\s]+", m.group(2).strip()):
            if not tok:
                continue
            parts = tok.split(":")
            try:
                nums = [int(p) for p in parts]
            except ValueError as e:
                raise DataError(f"UCSD label file {path}: cannot parse range {tok!r} of test clip {idx + 1}") from e
            if len(nums) == 1:
                ranges.append((nums[0], nums[0]))
            elif len(nums) == 2:
                ranges.append((nums[0], nums[1]))
            elif len(nums) == 3 and nums[1] == 1:
                ranges.append((nums[0], nums[2]))
            elif len(nums) == 3:
                ranges.extend((k, k) for k in range(nums[0], nums[2] + 1, nums[1]))
            else:
                raise DataError(f"UCSD label file {path}: cannot parse range {tok!r} of test clip {idx + 1}")
        entries[idx] = ranges
    if not entries:
        raise DataError(f"UCSD label file {path} has no 'TestVideoFile{{end+1}}.gt_frame = [a:b];' entries")
    missing = [i + 1 for i in range(max(entries) + 1) if i not in entries]
    if missing:
        # a gap is not "no anomaly": the entries are positional, so a missing one means the file is damaged or
        # was cut by hand, and guessing 'all normal' for it silently wrecks the frame metrics
        shown = ", ".join(f"TestVideoFile{{{k}}}" for k in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"UCSD label file {path} has no entry for {shown} (it has entries up to "
                        f"TestVideoFile{{{max(entries) + 1}}}); write one entry per test clip in order (use "
                        f"'gt_frame = [];' for a clip without anomalous frames)")
    return [entries[i] for i in range(max(entries) + 1)]


def ranges_to_labels(ranges: list[tuple[int, int]], num_frames: int, where: str = "") -> np.ndarray:
    """(T,) bool labels from 1-based inclusive ranges; DataError if a range ends after the last frame."""
    labels = np.zeros(num_frames, dtype=bool)
    for a, b in ranges:
        if a < 1 or b < a or b > num_frames:
            raise DataError(f"{where}: anomalous range [{a}:{b}] (1-based) does not fit the clip's {num_frames} "
                            f"frames")
        labels[a - 1:b] = True
    return labels


def _numbered_dirs(folder: str, prefix: str) -> dict[int, str]:
    out = {}
    if os.path.isdir(folder):
        for n in os.listdir(folder):
            m = re.fullmatch(re.escape(prefix) + r"(\d+)", n)
            if m and os.path.isdir(os.path.join(folder, n)):
                out[int(m.group(1))] = os.path.join(folder, n)
    return dict(sorted(out.items()))


def load_ucsd(data_dir: str, subset: Union[str, int] = "ped2", max_clips: Optional[int] = None,
              max_frames: Optional[int] = None, clip_ids: Optional[Iterable[str]] = None,
              splits: Iterable[str] = ("train", "test"), fps: float = UCSD_FPS) -> Dataset:
    """Reads UCSD Ped1/Ped2 from the original layout (see module docstring) into a :class:`Dataset`.

    Args:
        data_dir: the folder holding ``UCSDpedN/`` (or the ``UCSDpedN`` folder itself).
        subset: 'ped1' or 'ped2'.
        max_clips: per split, keep the first N clips (None = all).
        max_frames: per clip, keep the first N frames (None = all); labels/masks are cut to match.
        clip_ids: only these clips, e.g. ``['Test001', 'Train003']``.
        splits: which splits to read (the other one is left empty).
    Clip ids are 'TrainNNN'/'TestNNN'; frame labels (T,) bool from the .m file; masks lazily from TestNNN_gt.
    Frame counts are checked against the .m ranges and the mask counts (DataError naming both numbers).
    """
    root = find_ucsd_root(data_dir, subset)
    name = _subset_name(subset)
    max_frames = check_limit("max_frames", max_frames)
    splits = set(splits)
    train_dir, test_dir = os.path.join(root, "Train"), os.path.join(root, "Test")
    train_dirs = {f"Train{k:03d}": p for k, p in _numbered_dirs(train_dir, "Train").items()}
    test_dirs = {f"Test{k:03d}": (k, p) for k, p in _numbered_dirs(test_dir, "Test").items()}
    if "train" in splits and not train_dirs:
        raise DataError(f"no TrainNNN folders in {train_dir}. {_HOW}")
    if "test" in splits and not test_dirs:
        raise DataError(f"no TestNNN folders in {test_dir}. {_HOW}")
    check_unknown_ids(clip_ids, list(train_dirs) + list(test_dirs), root)

    train: list[Clip] = []
    if "train" in splits:
        for cid in select_ids(list(train_dirs), clip_ids, max_clips):
            train.append(FrameFolderClip(train_dirs[cid], cid, fps=fps, max_frames=max_frames))

    test: list[Clip] = []
    if "test" in splits:
        ids = select_ids(list(test_dirs), clip_ids, max_clips)
        m_path = _find_m_file(test_dir, name)
        entries = parse_ucsd_m(m_path)
        _check_entries_match_folders(entries, test_dirs, m_path, test_dir)
        for cid in ids:
            k, folder = test_dirs[cid]
            test.append(_test_clip(cid, folder, entries[k - 1], m_path, fps, max_frames))
    return Dataset(f"ucsd_{name[4:].lower()}", train, test)


def _check_entries_match_folders(entries: list, test_dirs: dict[str, tuple[int, str]], m_path: str,
                                 test_dir: str) -> None:
    """DataError unless the .m file has exactly one entry per TestNNN folder (entry k labels TestNNN with NNN=k).

    The entries are positional, so an entry without its folder (or the reverse) means the labels and the clips
    were cut or copied separately, and any pairing of them would be a guess.
    """
    numbers = sorted(k for k, _ in test_dirs.values())
    last = numbers[-1]
    if len(entries) < last:
        raise DataError(f"UCSD label file {m_path} has {len(entries)} test clips but {test_dir} has "
                        f"{len(test_dirs)} (up to Test{last:03d}): Test{len(entries) + 1:03d} has no "
                        f"TestVideoFile{{{len(entries) + 1}}} entry; restore the original .m file")
    orphans = [k for k in range(1, len(entries) + 1) if k not in set(numbers)]
    if orphans:
        shown = ", ".join(f"TestVideoFile{{{k}}} (Test{k:03d})" for k in orphans[:5]) + \
            (" ..." if len(orphans) > 5 else "")
        raise DataError(f"UCSD label file {m_path} has entries for test clips that do not exist in {test_dir}: "
                        f"{shown}. Restore the missing TestNNN folders, or delete those entries and renumber the "
                        f"folders to match (to evaluate a subset, keep the full dataset and set dataset.clip_ids "
                        f"or dataset.max_clips)")


def _find_m_file(test_dir: str, name: str) -> str:
    p = os.path.join(test_dir, f"{name}.m")
    if os.path.isfile(p):
        return p
    cands = sorted(n for n in os.listdir(test_dir) if n.lower().endswith(".m"))
    if len(cands) == 1:
        return os.path.join(test_dir, cands[0])
    raise DataError(f"UCSD frame-label file not found: {p} (the original dataset ships it in Test/). {_HOW}")


def _test_clip(cid: str, folder: str, ranges, m_path: str, fps: float, max_frames: Optional[int]) -> Clip:
    files = list_images(folder)
    if not files:
        raise DataError(f"no image frames in test folder {folder}")
    n = len(files)
    labels = ranges_to_labels(ranges, n, f"{m_path} entry for {cid} ({folder} has {n} frames)")
    gt_dir = folder + "_gt"
    masks = None
    if os.path.isdir(gt_dir):
        mfiles = list_images(gt_dir)
        if len(mfiles) != n:
            raise DataError(f"mask folder {gt_dir} has {len(mfiles)} masks but {folder} has {n} frames")
        masks = mfiles
    keep = n if max_frames is None else min(n, max_frames)
    clip = FrameFolderClip(folder, cid, fps=fps, files=files[:keep])
    clip.gt = ClipGT(labels[:keep], None if masks is None else FolderMasks(masks[:keep], clip.height, clip.width))
    return clip


def write_ucsd_layout(dataset_or_generator, out_dir: str, name: str = "UCSDped2") -> str:
    """Writes a dataset in the original UCSD layout, losslessly (PNG frames and masks); returns ``out_dir/name``.

    Writes ``Train/TrainNNN/NNN.png``, ``Test/TestNNN/NNN.png``, ``Test/TestNNN_gt/NNN.png`` (0/255, only for
    test clips with pixel GT) and ``Test/<name>.m`` (1-based inclusive ranges of anomalous frames). Clips are
    numbered in list order, so ``load_ucsd(out_dir, name)`` reads back the same frames, labels and masks (clip ids
    become TrainNNN/TestNNN; GT tracks are not part of the UCSD format). ``dataset_or_generator`` is a
    :class:`Dataset` or anything with a ``dataset()`` method (e.g. a SyntheticGenerator). Frames stream one at a
    time, so a long dataset is never held in memory.
    """
    ds = dataset_or_generator if isinstance(dataset_or_generator, Dataset) else dataset_or_generator.dataset()
    root = os.path.join(os.path.abspath(out_dir), name)
    lines = ["TestVideoFile = {};"]
    for split, prefix in (("train", "Train"), ("test", "Test")):
        for k, clip in enumerate(ds.split(split), start=1):
            d = os.path.join(root, prefix, f"{prefix}{k:03d}")
            os.makedirs(d, exist_ok=True)
            for i, img in enumerate(clip.frames()):
                _write_png(os.path.join(d, f"{i + 1:03d}.png"), img)
            if split != "test":
                continue
            gt = clip.gt
            labels = np.zeros(clip.num_frames, bool) if gt is None or gt.frame_labels is None else \
                np.asarray(gt.frame_labels, bool)
            lines.append(f"TestVideoFile{{end+1}}.gt_frame = [{', '.join(_label_ranges(labels))}];")
            if gt is not None and gt.mask is not None:
                gd = d + "_gt"
                os.makedirs(gd, exist_ok=True)
                for i in range(clip.num_frames):
                    mask = np.asarray(gt.mask(i), bool).astype(np.uint8) * 255
                    _write_png(os.path.join(gd, f"{i + 1:03d}.png"), mask)
    os.makedirs(os.path.join(root, "Test"), exist_ok=True)
    with open(os.path.join(root, "Test", f"{name}.m"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


def _label_ranges(labels: np.ndarray) -> list[str]:
    """'a:b' strings (1-based inclusive) of the runs of True in labels."""
    x = np.concatenate([[0], labels.astype(np.int8), [0]])
    d = np.diff(x)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [f"{s + 1}:{e}" for s, e in zip(starts, ends)]


def _write_png(path: str, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DataError(f"cannot encode PNG for {path}")
    buf.tofile(path)
