"""Optical flow handed from the detector to the features, and from the features to the segmenter, of the same clip,
so it is computed once.

The background detector's motion split (tao_lab/detector/motion_split.py) needs the flow of a frame from the
previous one, and so do the features (FrameContext.flow): the same DIS flow of the same frames, 3.3 ms a frame on
Ped2, about the cost of the whole detector without it. The pipeline runs a clip's stages one after the other
(detect the whole clip, track, then features), so the detector leaves its flows here and the features take them.

Exact by construction: a flow is found only under the same clip (source, id, size), frame index and flow settings
(:attr:`tao_lab.features.FlowEstimator.signature`), and is used only if the two grey frames it was computed from
equal the reader's (clips built in code may share a source); anything else is computed as before. Bounded: at most
``clip_bytes`` per clip (later frames are not kept: the features compute them) and the ``clips`` most recent
clips (a clip whose features never ran, e.g. its detections were needed alone, is dropped when newer clips come);
the features drop their clip's leftovers when they finish, unless the clip's segmentation follows
(``FeatureSet.extract(leave_flows=True)``, the pipeline's ``scores(clip, segment_next=True)``): then they leave
every flow they read, and the segmenter (its motion coherence reads the same flow of the same frames) takes them and
drops the rest (``share_flows``, tao_lab.pipeline.shares_flows). Thread-safe (parallel extraction runs one clip per
thread). Online, each stream has a memo of its own (:class:`tao_lab.streaming.StreamContext` ``flows``) holding the
last frame's flow: the detector's step leaves it, the features' step of the same frame takes it.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable, Optional

import numpy as np


class FlowMemo:
    """Flows by (clip key, frame index); see the module docstring."""

    def __init__(self, clip_bytes: int = 256 << 20, clips: int = 4):
        self.clip_bytes = int(clip_bytes)
        self.clips = int(clips)
        self._store: "OrderedDict[Hashable, dict[int, tuple]]" = OrderedDict()
        self._bytes: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def put(self, key: Hashable, index: int, flow: np.ndarray, grey: np.ndarray, previous_grey: np.ndarray) -> None:
        """Leaves the flow of frame ``index`` computed from its grey image and the previous frame's."""
        size = flow.nbytes + grey.nbytes + previous_grey.nbytes
        with self._lock:
            if key not in self._store:
                self._store[key], self._bytes[key] = {}, 0
                while len(self._store) > self.clips:
                    old, _ = self._store.popitem(last=False)
                    self._bytes.pop(old, None)
            replaced = self._store[key].pop(int(index), None)
            if replaced is not None:
                self._bytes[key] -= replaced[3]
            if self._bytes[key] + size > self.clip_bytes:
                return
            self._store[key][int(index)] = (flow, grey, previous_grey, size)
            self._bytes[key] += size

    def take(self, key: Hashable, index: int, grey: np.ndarray, previous_grey: np.ndarray) -> Optional[np.ndarray]:
        """The flow left for frame ``index`` (removed from the memo) if it was computed from these two grey frames,
        else None."""
        with self._lock:
            frames = self._store.get(key)
            entry = frames.pop(int(index), None) if frames else None
            if entry is not None:
                self._bytes[key] -= entry[3]
        if entry is None:
            return None
        flow, g, p, _ = entry
        return flow if np.array_equal(g, grey) and np.array_equal(p, previous_grey) else None

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._store.pop(key, None)
            self._bytes.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(f) for f in self._store.values())


#: The process-wide memo the detector fills and the features read.
SHARED_FLOWS = FlowMemo()


def clip_key(clip, signature: tuple) -> tuple:
    """The memo key of a clip's flows computed with the given FlowEstimator settings."""
    return (clip.source, clip.clip_id, clip.num_frames, clip.height, clip.width, signature)
