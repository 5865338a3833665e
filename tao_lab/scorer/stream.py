"""Scoring frame by frame (online): the scorer's per-clip ``score_clip`` on a ring buffer of the last T frames.

``ObjectScorer.stream(window) -> ScorerStream``; ``step(index, objects, features) -> WindowScores`` once per frame,
with that frame's tracked objects (``frame`` = the stream index) and their features. The window gives track smoothing
and frame-score smoothing the recent past; the current frame is the window's last one. A scorer that can score
incrementally overrides ``ObjectScorer.stream``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from tao_lab.types import ObjectScores, ObjectTable


@dataclass
class WindowScores:
    """The scores of the ring buffer after a frame: ``scores`` over window-relative frames 0..num_frames-1 (the
    current frame is ``num_frames - 1``), as ``score_clip`` returns them for a clip of that length."""

    scores: ObjectScores
    num_frames: int

    @property
    def current(self) -> np.ndarray:
        """(K,) float32 anomaly scores of the current frame's objects (in the order they were given)."""
        objects = self.scores.objects
        return objects.score[objects.frame == self.num_frames - 1].astype(np.float32)

    @property
    def frame_score(self) -> float:
        fs = np.asarray(self.scores.frame_scores)
        return float(fs[self.num_frames - 1]) if self.num_frames - 1 < len(fs) else 0.0


class ScorerStream:
    """The default per-frame scorer: ``score_clip`` on the last ``window`` frames' objects and features."""

    def __init__(self, scorer, window: int):
        if window < 1:
            raise ValueError(f"the scoring window must hold >= 1 frame, got {window}")
        self.scorer = scorer
        self.buffer: deque = deque(maxlen=int(window))  # (stream index, objects, features)

    def step(self, index: int, objects: ObjectTable, features: dict[str, np.ndarray]) -> WindowScores:
        """index: the frame's stream index (``objects.frame`` holds it too); features: {name: (K, D)}."""
        self.buffer.append((index, objects, features))
        first = self.buffer[0][0]
        w = index - first + 1
        win_objs = ObjectTable.concat([ObjectTable(o.frame - first, o.xyxy, o.score, o.track_id, o.cls)
                                       for _, o, _ in self.buffer])
        win_feats = {name: np.concatenate([f[name] for _, _, f in self.buffer]) for name in features}
        return WindowScores(self.scorer.score_clip(win_objs, win_feats, w), w)
