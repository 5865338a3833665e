"""The records that flow between pipeline stages (the contracts every stage implementation obeys).

Conventions, everywhere in tao_lab:
- frames are ``uint8`` arrays of shape (H, W, 3) in OpenCV's BGR order; converted only at library boundaries
  (sam2 wants RGB, the metrics want nothing but masks and scores);
- frame indices are 0-based inside the code; file formats that are 1-based convert at the reader/writer;
- boxes are ``xyxy`` float32 in original-frame pixels (x to the right, y down; x2/y2 exclusive like slicing);
- every per-object table is columnar: one numpy array per column, all of the same length N.

Only numpy (and tao_lab.frame_memo, numpy only) is imported here so that every module can use these types cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Iterator, Optional

import numpy as np

from tao_lab.frame_memo import FRAMES


@dataclass
class ClipGT:
    """Ground truth of one clip; any part may be missing (None) for unlabelled video.

    frame_labels: (T,) bool, True = anomalous frame.
    mask: callable ``i -> (H, W) bool`` giving the pixel mask of anomalous objects in frame i (lazy: masks of a
        long clip are never all held in memory); None when the dataset has no pixel GT.
    tracks: GT object tracks of anomalous objects as an :class:`ObjectTable` (track_id = GT object id), or None.
    """

    frame_labels: Optional[np.ndarray] = None
    mask: Optional[Callable[[int], np.ndarray]] = None
    tracks: Optional["ObjectTable"] = None

    def masks(self) -> Iterator[np.ndarray]:
        """Yields every frame's mask in order (requires ``mask`` and ``frame_labels``)."""
        if self.mask is None or self.frame_labels is None:
            raise ValueError("this clip has no pixel ground truth")
        for i in range(len(self.frame_labels)):
            yield self.mask(i)


class Clip:
    """One video clip that streams its frames lazily.

    Subclasses implement ``_read(i)`` (decode frame i) and may override ``_sequential(start, stop)`` for faster
    sequential decoding (video files). ``num_frames``, ``height``, ``width`` are known without decoding every frame.
    Frames are read through the process's frame memo (tao_lab/frame_memo.py), so the stages of a clip decode each
    frame once; a subclass whose frames are held in memory already sets ``memoize_frames = False``.
    """

    #: read through tao_lab.frame_memo.FRAMES (False: the frames are in memory already, a copy would only cost)
    memoize_frames = True

    def __init__(self, clip_id: str, num_frames: int, height: int, width: int, fps: float = 25.0,
                 gt: Optional[ClipGT] = None, source: str = ""):
        self.clip_id = clip_id
        self.num_frames = int(num_frames)
        self.height = int(height)
        self.width = int(width)
        self.fps = float(fps)
        self.gt = gt
        self.source = source  # where the frames come from (path or generator spec): part of cache keys

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.clip_id!r}, T={self.num_frames}, {self.height}x{self.width})"

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_frames:
            raise IndexError(f"clip {self.clip_id}: frame {i} out of range [0, {self.num_frames})")
        if not self.memoize_frames:
            return self._read(i)
        frame = FRAMES.get(self, i)
        if frame is None:
            frame = self._read(i)
            FRAMES.put(self, i, frame)
        return frame

    def frames(self, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if not self.memoize_frames:
            yield from self._sequential(start, stop)
            return
        decoder = None  # a sequential decode positioned at frame i (restarted after frames the memo had)
        for i in range(start, stop):
            frame = FRAMES.get(self, i)
            if frame is not None:
                decoder = None
            else:
                if decoder is None:
                    decoder = self._sequential(i, stop)
                frame = next(decoder)
                FRAMES.put(self, i, frame)
            yield frame

    def _sequential(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames [start, stop) decoded in order (a subclass may decode a run of frames faster than one by one)."""
        for i in range(start, stop):
            yield self._read(i)

    def _read(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class SubClip(Clip):
    """Frames [start, stop) of another clip, re-indexed from 0 (e.g. the first seconds used to fit a scorer)."""

    def __init__(self, parent: Clip, start: int, stop: int, clip_id: Optional[str] = None):
        start, stop = max(0, int(start)), min(int(stop), parent.num_frames)
        if stop <= start:
            raise ValueError(f"empty sub-clip [{start}, {stop}) of {parent.clip_id} ({parent.num_frames} frames)")
        super().__init__(clip_id or f"{parent.clip_id}[{start}:{stop}]", stop - start, parent.height,
                         parent.width, parent.fps, gt=None, source=f"{parent.source}[{start}:{stop}]")
        self.parent, self.start = parent, start

    memoize_frames = False  # the parent's frames are memoized: keeping them again under the sub-clip would double

    def _read(self, i: int) -> np.ndarray:
        return self.parent.frame(self.start + i)

    def _sequential(self, start: int, stop: int) -> Iterator[np.ndarray]:
        return self.parent.frames(self.start + start, self.start + stop)


@dataclass
class Dataset:
    """A named collection of train and test clips (train clips are normal-only unless stated)."""

    name: str
    train: list[Clip] = field(default_factory=list)
    test: list[Clip] = field(default_factory=list)

    def split(self, name: str) -> list[Clip]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}: expected 'train' or 'test'")
        return getattr(self, name)


@dataclass
class ObjectTable:
    """Per-object rows of one clip: detections, tracked objects, GT tracks, or scored objects.

    frame: (N,) int64, 0-based frame index.
    xyxy: (N, 4) float32 box in original pixels.
    score: (N,) float32; detector confidence for detections/tracks, anomaly score after scoring.
    track_id: (N,) int64; -1 when untracked.
    cls: (N,) int64 detector class (0 for class-agnostic detectors).
    """

    frame: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    track_id: np.ndarray
    cls: np.ndarray

    def __post_init__(self):
        self.frame = np.asarray(self.frame, dtype=np.int64).reshape(-1)
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        self.cls = np.asarray(self.cls, dtype=np.int64).reshape(-1)
        n = len(self.frame)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"ObjectTable column {f.name!r} has {len(getattr(self, f.name))} rows, "
                                 f"expected {n}")

    @classmethod
    def empty(cls) -> "ObjectTable":
        return cls(np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def build(cls, frame, xyxy, score=None, track_id=None, klass=None) -> "ObjectTable":
        n = len(np.asarray(frame).reshape(-1))
        return cls(frame, xyxy,
                   np.ones(n) if score is None else score,
                   np.full(n, -1) if track_id is None else track_id,
                   np.zeros(n) if klass is None else klass)

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, index) -> "ObjectTable":
        """Rows selected by a boolean mask or an index array."""
        return ObjectTable(self.frame[index], self.xyxy[index], self.score[index], self.track_id[index],
                           self.cls[index])

    def with_score(self, score: np.ndarray) -> "ObjectTable":
        return ObjectTable(self.frame, self.xyxy, score, self.track_id, self.cls)

    @staticmethod
    def concat(tables: list["ObjectTable"]) -> "ObjectTable":
        if not tables:
            return ObjectTable.empty()
        return ObjectTable(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(ObjectTable)))

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ObjectScores:
    """Output of a scorer for one clip.

    objects: the scored objects (rows aligned with the features' rows); ``objects.score`` is the calibrated
        anomaly score (higher = more anomalous; roughly 0 = typical training object, 1 = the training tail).
    frame_scores: (T,) float32 frame-level anomaly score (e.g. max over objects, smoothed).
    parts: optional per-attribute object scores, name -> (N,) float32, for interpretability.
    """

    objects: ObjectTable
    frame_scores: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Prompts:
    """Segmenter prompts of one clip (output of the prompt filter).

    frame: (P,) int64; obj_id: (P,) int64 prompt object id (stable across frames for one object);
    xyxy: (P, 4) float32 box prompt; point: (P, 2) float32 positive point (x, y); score: (P,) float32 the
    anomaly score of the box the prompt came from.
    """

    frame: np.ndarray
    obj_id: np.ndarray
    xyxy: np.ndarray
    point: np.ndarray
    score: np.ndarray

    def __post_init__(self):
        self.frame = np.asarray(self.frame, dtype=np.int64).reshape(-1)
        self.obj_id = np.asarray(self.obj_id, dtype=np.int64).reshape(-1)
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.point = np.asarray(self.point, dtype=np.float32).reshape(-1, 2)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        n = len(self.frame)
        if not all(len(a) == n for a in (self.obj_id, self.xyxy, self.point, self.score)):
            raise ValueError("Prompts columns differ in length")

    @classmethod
    def empty(cls) -> "Prompts":
        return cls(np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 2)), np.zeros(0))

    @classmethod
    def from_boxes(cls, frame, obj_id, xyxy, score) -> "Prompts":
        """Box prompts whose positive point is the box centre."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        return cls(frame, obj_id, xyxy, centres, score)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class Segmentation:
    """Output of a segmenter for one clip.

    score_maps: (T, H, W) float16 per-pixel anomaly score (0 where no anomalous object; higher = more anomalous).
    objects: one row per (frame, object): the box around the object's mask, ``track_id`` = prompt object id,
        ``score`` = the object's anomaly score; these rows are the detections for RBDC/TBDC.
    instance_maps: optional (T, H, W) int32 label map, 0 = background, k = object id k (on overlap, the higher
        scored object wins).
    """

    score_maps: np.ndarray
    objects: ObjectTable
    instance_maps: Optional[np.ndarray] = None
