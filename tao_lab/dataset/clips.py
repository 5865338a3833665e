"""Clip implementations that stream frames lazily from disk, plus the lazy ground-truth mask readers.

Every clip yields ``uint8`` (H, W, 3) BGR frames (grey images are expanded to 3 equal channels) and is picklable
(an open ``cv2.VideoCapture`` is dropped on pickling and reopened on demand), so clips can be shipped to worker
processes.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from tao_lab.dataset.common import check_limit
from tao_lab.dataset.errors import DataError
from tao_lab.types import Clip, ClipGT

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv")

_NUM_RE = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key that orders embedded numbers numerically: 'frame2.png' < 'frame10.png'."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _NUM_RE.split(name) if t != ""]


def list_images(folder: str) -> list[str]:
    """Image files of ``folder`` (extensions in IMAGE_EXTENSIONS, any case), naturally sorted, hidden files skipped.

    Raises DataError when the folder does not exist.
    """
    if not os.path.isdir(folder):
        raise DataError(f"frame folder not found: {folder}")
    names = [n for n in os.listdir(folder)
             if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    names.sort(key=natural_key)
    return [os.path.join(folder, n) for n in names]


def files_signature(paths: Sequence[str]) -> str:
    """'n=<count>,bytes=<total size>,mtime=<latest mtime_ns>' of the files: changes when any file changes."""
    size = 0
    mtime = 0
    for p in paths:
        st = os.stat(p)
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
    return f"n={len(paths)},bytes={size},mtime={mtime}"


def read_image(path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decodes one image file (``np.fromfile`` + ``cv2.imdecode`` so non-ASCII paths work).

    flags=IMREAD_COLOR gives uint8 (H, W, 3) BGR (grey expanded, alpha dropped, 16-bit scaled down by OpenCV);
    IMREAD_GRAYSCALE gives uint8 (H, W). Raises DataError naming the path when the file cannot be decoded.
    """
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image file {path}: {e}") from e
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise DataError(f"unreadable image file (not a decodable image, or empty): {path}")
    return img


class FrameFolderClip(Clip):
    """A clip whose frames are image files in one folder (natural numeric order of file names).

    Args:
        folder: the folder; files with extensions jpg/jpeg/png/tif/tiff/bmp (any case) are frames.
        clip_id: defaults to the folder's base name.
        max_frames: keep only the first ``max_frames`` frames (None = all).
        gt: optional ground truth; its ``frame_labels`` must have exactly ``num_frames`` entries.
        files: an explicit, already-ordered list of frame files (then ``folder`` is only used for messages).
    Size is taken from the first frame; every later frame must have the same size (else DataError).
    ``source`` = absolute folder path + count, total bytes and latest mtime of the frame files.
    """

    def __init__(self, folder: str, clip_id: Optional[str] = None, fps: float = 25.0,
                 max_frames: Optional[int] = None, gt: Optional[ClipGT] = None,
                 files: Optional[Sequence[str]] = None):
        folder = os.path.abspath(folder)
        files = list_images(folder) if files is None else list(files)
        if not files:
            raise DataError(f"no image frames ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) in folder {folder}")
        max_frames = check_limit("max_frames", max_frames)
        if max_frames is not None:
            files = files[:max_frames]
        self.folder = folder
        self.files = files
        first = read_image(files[0])
        h, w = first.shape[:2]
        super().__init__(clip_id or os.path.basename(folder), len(files), h, w, fps, gt,
                         source=f"folder:{folder}|{files_signature(files)}")
        _check_labels(self, folder)

    def _read(self, i: int) -> np.ndarray:
        img = read_image(self.files[i])
        if img.shape[:2] != (self.height, self.width):
            raise DataError(f"frame {self.files[i]} has size {img.shape[1]}x{img.shape[0]} (WxH), expected "
                            f"{self.width}x{self.height} like the first frame of {self.folder}")
        return img


# Captures a forked worker inherited from its parent, dropped unreleased (VideoFileClip._abandon_inherited).
_INHERITED_CAPTURES: list = []


class VideoFileClip(Clip):
    """A clip read from a video file (mp4/avi/... via ``cv2.VideoCapture``).

    ``frames()`` decodes sequentially from one open capture (``_read`` seeks only when the capture is not at the
    frame already). ``frame(i)`` reuses the open capture: a short forward jump (<= ``seek_window`` frames) is done by
    grabbing, anything else by setting CAP_PROP_POS_FRAMES.

    The frame count is verified: OpenCV's CAP_PROP_FRAME_COUNT can be wrong (it is estimated from the container
    header / duration), so the frames are counted once by grabbing through the file; the count is cached per
    (path, size, mtime) for the life of the process. ``expected_frames`` (e.g. the length of the labels) is
    checked against the counted number (DataError naming the file and both numbers on mismatch).
    ``source`` = absolute path + size + mtime of the file.
    """

    seek_window = 250
    _count_cache: dict[tuple, int] = {}

    def __init__(self, path: str, clip_id: Optional[str] = None, max_frames: Optional[int] = None,
                 gt: Optional[ClipGT] = None, expected_frames: Optional[int] = None,
                 fps: Optional[float] = None):
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise DataError(f"video file not found: {path}")
        self.path = path
        self._cap = None
        self._cap_pid = os.getpid()  # the process that opened _cap (a forked worker must open its own)
        self._pos = 0
        cap = self._open()
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        if h <= 0 or w <= 0:
            ok, img = cap.read()
            if not ok:
                self._release()
                raise DataError(f"video file has no decodable frame: {path}")
            h, w = img.shape[:2]
        # closed until the first read: a dataset's clips do not each hold a decoder (and its threads) from the start
        self._release()
        total = self.count_frames(path, expected_frames)
        if total == 0:
            raise DataError(f"video file has no decodable frame: {path}")
        if expected_frames is not None and int(expected_frames) != total:
            raise DataError(f"video {path} has {total} decodable frames but its labels have {int(expected_frames)}"
                            f" frames; the video or the ground truth file is wrong or from another version")
        max_frames = check_limit("max_frames", max_frames)
        n = total if max_frames is None else min(total, max_frames)
        st = os.stat(path)
        super().__init__(clip_id or os.path.splitext(os.path.basename(path))[0], n, h, w,
                         fps if fps is not None else (file_fps if file_fps and file_fps > 0 else 25.0), gt,
                         source=f"video:{path}|bytes={st.st_size},mtime={st.st_mtime_ns}")
        _check_labels(self, path)

    @classmethod
    def count_frames(cls, path: str, hint: Optional[int] = None) -> int:
        """The number of frames that actually decode, cached per (path, size, mtime).

        The candidate count (``hint`` or CAP_PROP_FRAME_COUNT) is verified by seeking to its last frame and
        checking that this frame decodes and nothing follows it; if that fails the frames are counted by
        grabbing through the whole file.
        """
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        if key in cls._count_cache:
            return cls._count_cache[key]
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise DataError(f"cannot open video file {path} (unsupported codec or not a video)")
        try:
            candidates = [int(c) for c in (hint, cap.get(cv2.CAP_PROP_FRAME_COUNT)) if c is not None and c > 0]
            n = None
            for cand in dict.fromkeys(candidates):
                cap.set(cv2.CAP_PROP_POS_FRAMES, cand - 1)
                if cap.grab() and not cap.grab():
                    n = cand
                    break
            if n is None:
                cap.release()
                cap = cv2.VideoCapture(path)
                n = 0
                while cap.grab():
                    n += 1
        finally:
            cap.release()
        cls._count_cache[key] = n
        return n

    def _open(self):
        if self._cap is not None and self._cap_pid != os.getpid():
            self._abandon_inherited()
        if self._cap is None:
            cap = cv2.VideoCapture(self.path)
            if not cap.isOpened():
                raise DataError(f"cannot open video file {self.path} (unsupported codec or not a video)")
            self._cap = cap
            self._cap_pid = os.getpid()
            self._pos = 0
        return self._cap

    def _release(self):
        if self._cap is not None and self._cap_pid != os.getpid():
            self._abandon_inherited()
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        self._pos = 0

    def _abandon_inherited(self):
        """Drops a capture this process inherited through fork (a worker process) without touching it.

        FFmpeg decodes with threads of the process that opened the capture; a forked copy has the decoder's state
        but not its threads, so reading from it, or releasing it, waits for them forever (a worker process that
        hangs at its first frame). The copy is kept referenced, never released: it holds no thread, and the worker
        ends with os._exit, which runs no destructor. This process opens its own capture instead."""
        _INHERITED_CAPTURES.append(self._cap)
        self._cap = None
        self._pos = 0

    def close(self):
        """Releases the open capture (it is reopened on the next read)."""
        self._release()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cap"] = None
        state["_pos"] = 0
        return state

    def __del__(self):
        try:
            self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _next(self, i: int) -> np.ndarray:
        ok, img = self._cap.read()
        if not ok or img is None:
            self._release()
            raise DataError(f"video {self.path}: frame {i} could not be decoded (clip has {self.num_frames} "
                            f"frames); the file may be truncated or modified since it was opened")
        self._pos = i + 1
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        return img

    def _read(self, i: int) -> np.ndarray:
        cap = self._open()
        if i != self._pos:
            if self._pos < i <= self._pos + self.seek_window:
                while self._pos < i:
                    if not cap.grab():
                        self._release()
                        raise DataError(f"video {self.path}: ended at frame {self._pos} while seeking to {i}")
                    self._pos += 1
            else:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                self._pos = i
        return self._next(i)


class FolderMasks:
    """Lazy pixel GT: ``masks(i) -> (H, W) bool`` read from the i-th mask image file (any pixel > 0 = anomalous)."""

    def __init__(self, files: Sequence[str], height: int, width: int):
        self.files = list(files)
        self.height = int(height)
        self.width = int(width)

    def __call__(self, i: int) -> np.ndarray:
        m = read_image(self.files[i], cv2.IMREAD_GRAYSCALE)
        if m.shape != (self.height, self.width):
            raise DataError(f"mask {self.files[i]} has size {m.shape[1]}x{m.shape[0]} (WxH), expected the frame "
                            f"size {self.width}x{self.height}")
        return m > 0

    def signature(self) -> str:
        """Changes when any mask file is added, removed, renamed or rewritten (path, size, mtime of each file)."""
        h = hashlib.sha1()
        for p in self.files:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return f"files:{len(self.files)}:{h.hexdigest()[:16]}"


class CroppedMasks:
    """Lazy-ish pixel GT held compactly: per frame, the crop of the mask's bounding box (or nothing when empty).

    Built from any iterable of (H, W) masks; ``__call__(i) -> (H, W) bool``. Used when the source format can only
    be read whole (e.g. Avenue's .mat files), so a long clip's masks cost memory only where they are nonzero.
    """

    def __init__(self, masks, height: int, width: int, where: str = ""):
        self.height, self.width = int(height), int(width)
        self.crops: list = []
        for k, m in enumerate(masks):
            m = np.asarray(m)
            if m.shape != (self.height, self.width):
                raise DataError(f"{where}: mask {k} has shape {m.shape}, expected the frame size "
                                f"({self.height}, {self.width})")
            m = m != 0
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            if len(rows) == 0:
                self.crops.append(None)
            else:
                y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                self.crops.append((int(y0), int(x0), m[y0:y1, x0:x1].copy()))

    def __len__(self) -> int:
        return len(self.crops)

    def labels(self) -> np.ndarray:
        """(T,) bool: frames whose mask is not empty."""
        return np.array([c is not None for c in self.crops], dtype=bool)

    def __call__(self, i: int) -> np.ndarray:
        m = np.zeros((self.height, self.width), dtype=bool)
        c = self.crops[i]
        if c is not None:
            y0, x0, crop = c
            m[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return m

    def signature(self) -> str:
        """A hash of the masks' content (held in memory, so hashing costs no read)."""
        h = hashlib.sha1(f"{self.height}x{self.width}".encode())
        for c in self.crops:
            if c is None:
                h.update(b"-")
            else:
                h.update(f"{c[0]},{c[1]},{c[2].shape}".encode())
                h.update(np.packbits(c[2]).tobytes())
        return f"content:{len(self.crops)}:{h.hexdigest()[:16]}"


class ArrayMasks:
    """Lazy pixel GT backed by an array-like of shape (T, H, W) (e.g. a memory-mapped .npy); nonzero = anomalous."""

    def __init__(self, array, height: int, width: int, path: str = ""):
        self.array = array
        self.height = int(height)
        self.width = int(width)
        self.path = path

    def __call__(self, i: int) -> np.ndarray:
        m = np.asarray(self.array[i])
        if m.shape != (self.height, self.width):
            raise DataError(f"mask {i} of {self.path or 'array'} has shape {m.shape}, expected "
                            f"({self.height}, {self.width})")
        return m != 0

    def signature(self) -> str:
        """The array file's path, size and mtime; the content's hash for an array that is not from a file."""
        shape = tuple(np.shape(self.array))
        if self.path and os.path.isfile(self.path):
            st = os.stat(self.path)
            return f"file:{os.path.abspath(self.path)}|{shape}|{st.st_size}|{st.st_mtime_ns}"
        data = np.ascontiguousarray(np.asarray(self.array) != 0)
        return f"content:{shape}:{hashlib.sha1(np.packbits(data).tobytes()).hexdigest()[:16]}"


def _check_labels(clip: Clip, where: str) -> None:
    gt = clip.gt
    if gt is not None and gt.frame_labels is not None and len(gt.frame_labels) != clip.num_frames:
        raise DataError(f"{where}: clip {clip.clip_id} has {clip.num_frames} frames but {len(gt.frame_labels)} "
                        f"frame labels")
