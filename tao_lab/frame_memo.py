"""Per-frame arrays kept in memory, so a clip's stages compute them once: its decoded frames, and the background
differences the detector leaves to the segmenter.

A clip's stages each read its frames: the background detector samples 60 frames for its median background, then
reads every frame; the features read every frame again; the segmenter fits its own background from the same samples
and reads every frame that has a prompt. On Ped2 that is about 3.2 decodes a frame, and a decode (a 240 x 360 TIFF)
costs about as much as the whole tracker. :data:`FRAMES` keeps the frames the first reader decoded, and every later
read of the same frame of the same clip object gets a copy of it. The detector and the segmenter also difference
each frame against the same background model (the camera's, shared through tao_lab.detector.camera): the detector's
differences and foreground masks are kept in :data:`FOREGROUNDS` under the model, and the segmenter's frames take
them instead of computing them again.

Exact by construction: an entry is found only under the object it was computed for (the clip object that decoded
the frame, or the background model fitted for one clip; its identity, checked through a weak reference, not its
name: clips built in code may share a source), at the same frame index, and every reader gets its own copy (a
reader may draw on its frame). Bounded: a memo holds at most ``max_bytes``. When an entry would pass the bound, the
owners read least recently are dropped first; the entries of the owner being read are never dropped for its later
frames (a clip longer than the bound keeps the frames it read first, and decodes the rest on every read: dropping the
oldest would make each sequential pass miss every frame). An owner's entries are freed when it dies. Thread-safe.

One memo of each per process: forked workers start with their parent's, and fill their own. Their bounds are the
config keys ``frame_memo_mb`` and ``foreground_memo_mb`` (configs/pipeline.yaml; 0 = off), set by the pipeline. A
clip class whose frames are in memory already says so with ``memoize_frames = False`` (tao_lab.types.Clip).
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Optional, Union

import numpy as np

#: the default bounds, in MiB (configs/pipeline.yaml ``frame_memo_mb``, ``foreground_memo_mb``)
DEFAULT_MB = 128
DEFAULT_FOREGROUND_MB = 128

#: what is kept per frame: one array or a tuple of arrays
Arrays = Union[np.ndarray, tuple]


def _nbytes(value: Arrays) -> int:
    return sum(a.nbytes for a in value) if isinstance(value, tuple) else value.nbytes


def _copy(value: Arrays) -> Arrays:
    return tuple(a.copy() for a in value) if isinstance(value, tuple) else value.copy()


class _Entries:
    """What one owner has kept: its arrays by frame index, their bytes, a weak reference to the owner."""

    __slots__ = ("ref", "frames", "nbytes")

    def __init__(self, owner, on_death):
        self.ref = weakref.ref(owner, on_death)
        self.frames: dict[int, Arrays] = {}
        self.nbytes = 0


class FrameMemo:
    """Per-frame arrays by (owner object, frame index), at most ``max_bytes`` in all; see the module docstring. The
    owner is the clip (decoded frames) or what computed the arrays for one clip (a background model)."""

    def __init__(self, max_bytes: int = DEFAULT_MB << 20):
        self.max_bytes = int(max_bytes)
        self._owners: "OrderedDict[int, _Entries]" = OrderedDict()  # id(owner) -> its entries, least recent first
        self._nbytes = 0
        self._lock = threading.Lock()
        # ids of owners that died: their entries are freed at the next call (a weakref callback may run while this
        # thread holds the lock, so it only notes the id)
        self._dead: list[int] = []
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def set_max_bytes(self, max_bytes: int) -> None:
        """A new bound (0 = keep nothing); entries over it are dropped, least recently read owners first."""
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            while self._owners and self._nbytes > self.max_bytes:
                self._drop_oldest()

    def get(self, owner, index: int) -> Optional[Arrays]:
        """A copy of what is kept for frame ``index`` of ``owner``, else None."""
        with self._lock:
            entries = self._entries(owner)
            arrays = None if entries is None else entries.frames.get(index)
            if arrays is None:
                self.misses += 1
                return None
            self.hits += 1
            self._owners.move_to_end(id(owner))
        return _copy(arrays)

    def put(self, owner, index: int, arrays: Arrays) -> None:
        """Keeps a copy of ``owner``'s arrays of frame ``index`` if the bound allows (module docstring)."""
        size = _nbytes(arrays)
        if size > self.max_bytes:
            return
        with self._lock:
            entries = self._entries(owner)
            if entries is not None and index in entries.frames:
                return
            while self._nbytes + size > self.max_bytes and any(key != id(owner) for key in self._owners):
                self._drop_oldest(keep=id(owner))
            if self._nbytes + size > self.max_bytes:
                return  # the owner's own entries fill the bound: its later frames are computed on every read
            if entries is None:
                entries = self._owners[id(owner)] = _Entries(owner, lambda _, key=id(owner): self._dead.append(key))
            entries.frames[index] = _copy(arrays)
            entries.nbytes += size
            self._nbytes += size
            self._owners.move_to_end(id(owner))

    def drop(self, owner) -> None:
        """Forgets everything kept for ``owner``, e.g. when it changes what it would compute."""
        with self._lock:
            if self._entries(owner) is not None:
                self._nbytes -= self._owners.pop(id(owner)).nbytes

    def clear(self) -> None:
        """Drops every entry and zeroes the hit and miss counts."""
        with self._lock:
            self._owners.clear()
            self._nbytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(len(e.frames) for e in self._owners.values())

    def _entries(self, owner) -> Optional[_Entries]:
        while self._dead:
            key = self._dead.pop()
            dead = self._owners.get(key)
            if dead is not None and dead.ref() is None:
                self._nbytes -= self._owners.pop(key).nbytes
        entries = self._owners.get(id(owner))
        if entries is not None and entries.ref() is not owner:  # a dead owner whose id was given to a new object
            self._nbytes -= entries.nbytes
            del self._owners[id(owner)]
            return None
        return entries

    def _drop_oldest(self, keep: Optional[int] = None) -> None:
        for key in self._owners:
            if key != keep:
                self._nbytes -= self._owners.pop(key).nbytes
                return


#: the process's decoded frames, by clip (tao_lab.types.Clip reads through it)
FRAMES = FrameMemo(DEFAULT_MB << 20)
#: the process's background differences and foreground masks, by background model
#: (tao_lab.detector.background.BackgroundModel.frame_foreground)
FOREGROUNDS = FrameMemo(DEFAULT_FOREGROUND_MB << 20)


def configure(cfg) -> None:
    """Bounds the process's memos by the config's ``frame_memo_mb`` and ``foreground_memo_mb`` (configs/pipeline.yaml;
    absent = the defaults)."""
    for memo, key, default in ((FRAMES, "frame_memo_mb", DEFAULT_MB),
                               (FOREGROUNDS, "foreground_memo_mb", DEFAULT_FOREGROUND_MB)):
        mb = cfg.get(key, default)
        memo.set_max_bytes(int(default if mb is None else mb) << 20)
