"""Prompt filters: anomalous boxes of one clip -> segmenter prompts (frame, object id, box, point, score).

Interface (docs/CONTRACTS.md): ``PromptFilter.__call__(anomalous: ObjectTable, num_frames: int) -> Prompts`` where
``anomalous`` holds the objects whose anomaly score passed the threshold (``score`` = anomaly score, ``track_id`` =
tracker id or -1).

The ``Prompts`` artifact (tao_lab.types.Prompts), as produced here:
- one row per (frame, object) that the segmenter must be prompted on, sorted by frame then object id;
- ``obj_id`` >= 1, stable over the clip for one object (0 is the background label of instance maps);
- ``xyxy``: the box prompt in original pixels, or all-NaN when the prompt type is ``point``;
- ``point``: one positive point (x, y) -- the box centre -- or all-NaN when the prompt type is ``box``;
- ``score``: the anomaly score of the (merged) box the prompt came from.

:class:`RobustPromptFilter` implements TAO's temporal filter with every rule exposed as a knob. The
``tao_faithful`` preset (configs/prompt_filter/tao_faithful.yaml) reproduces the published code's behaviour
(docs: ../shared/docs/REFERENCE.md §2); the ``robust`` preset (the default) fixes its weak points:

| rule | TAO's code (``tao_faithful``) | ``robust`` | why |
|---|---|---|---|
| merge of a frame's boxes | touch/overlap -> union, one order-dependent pass | IoU >= 0.5 -> union, to a fixed point | crossing or adjacent objects are not glued into one prompt |
| identity | first match scanning the previous 5 frames oldest first | Hungarian assignment against each object's constant-velocity prediction; tracker ids first | no id swaps when objects cross; most recent evidence wins |
| confirmation of a new object | 3 of the next 5 frames match the *original* box; 1 at the very first anomalous frame | 3 of the next 5, chained (each frame matched to the previous match); 3 also at the first frame | fast objects are confirmed; a lone box at the first anomalous frame is not special |
| re-prompt | on frames with index % 5 == 0 | 5 frames after the object's previous prompt | every object is refreshed at the same rate, whatever its phase |
| point of a new object | centre of the frame's *last* box (stale variable) | the box's own centre | bug fix |
| coordinates | truncated to int before matching | as given | |
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from tao_lab.prompt_filter.geometry import MatchRule, box_centers, merge_any_overlap, merge_iou
from tao_lab.types import ObjectTable, Prompts

PROMPT_TYPES = ("box", "point", "both")
MERGE_RULES = ("any_overlap", "iou", "none")
ASSOCIATIONS = ("tao", "best")
REPROMPT_ANCHORS = ("absolute", "object")
_NO_MATCH = 1e6


class PromptFilter(ABC):
    """Turns the anomalous boxes of one clip into segmenter prompts."""

    @abstractmethod
    def __call__(self, anomalous: ObjectTable, num_frames: int) -> Prompts:
        """anomalous: rows whose anomaly score passed the threshold (0-based frames, xyxy px); num_frames: clip
        length. Returns prompts sorted by (frame, obj_id), object ids >= 1."""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _build_prompts(rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]], prompt_type: str) -> Prompts:
    """rows: (frame, obj_id) -> (box (4,), point (2,), score). Applies the prompt type (NaN = unused part)."""
    if not rows:
        return Prompts.empty()
    keys = sorted(rows)
    boxes = np.array([rows[k][0] for k in keys], dtype=np.float32).reshape(-1, 4)
    points = np.array([rows[k][1] for k in keys], dtype=np.float32).reshape(-1, 2)
    if prompt_type == "point":
        boxes[:] = np.nan
    elif prompt_type == "box":
        points[:] = np.nan
    return Prompts(np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), boxes, points,
                   np.array([rows[k][2] for k in keys], dtype=np.float32))


@dataclass
class _FrameBoxes:
    boxes: np.ndarray  # (n, 4) float64 after merging
    scores: np.ndarray  # (n,)
    track_ids: list[list[int]]  # tracker ids of the merged members (>= 0 only)
    ids: np.ndarray = field(default=None)  # (n,) int64 prompt object id, 0 = none yet

    def __post_init__(self):
        if self.ids is None:
            self.ids = np.zeros(len(self.boxes), dtype=np.int64)


class RobustPromptFilter(PromptFilter):
    """TAO's robust temporal prompt filter with every rule configurable (see the module docstring).

    Args:
        look_back: frames before the current one in which an object's identity may be found (TAO: 5).
        look_ahead: frames after a new box inspected to confirm it is a real object (TAO: 5).
        min_matches: how many of those ``look_ahead`` frames must contain a matching box (TAO: 3).
        first_frame_matches: the same count for boxes on the clip's first anomalous frame (TAO: 1).
        match_iou: two boxes match when IoU >= this (TAO: 0.3); None = no IoU test.
        match_center_dist: ... and/or when their centres are <= this many pixels apart (TAO: 20); None = no test.
        match_combine: "or" (TAO) or "and": how the two tests combine.
        reprompt_interval: re-prompt every known object every this many frames (TAO: 5); 0/None = never.
        reprompt_anchor: "absolute" = on frames with index % interval == 0 (TAO), "object" = interval frames
            after the object's previous prompt.
        merge: rule for overlapping boxes in one frame: "any_overlap" (TAO: touching/overlapping -> union, single
            pass), "iou" (pairs with IoU >= merge_iou -> union, repeated), "none".
        merge_iou: IoU threshold of the "iou" merge.
        prompt_type: "box", "point" (box centre) or "both" (TAO).
        association: how a box inherits an object id: "tao" = first matching box found scanning the previous
            ``look_back`` frames oldest first (a matching box without id ends the scan of its frame),
            "best" = optimal one-to-one assignment (Hungarian, cost (1 - IoU) + distance / match_center_dist) of
            the frame's boxes to the objects seen in the last ``look_back`` frames.
        use_track_ids: with "best": a box whose tracker id was last seen as object k inherits k first.
        motion_prediction: with "best": match against each object's constant-velocity prediction (from its last
            two boxes) instead of its last box.
        chain_look_ahead: confirmation matches each future frame against the previous frame's match instead of
            the original box (fast objects drift out of a fixed 20 px radius).
        integer_coords: truncate coordinates to int before matching and for the centre point (TAO's code).
        stale_center: TAO's bug, reproduced only when True: a new object confirmed after the first anomalous frame
            is prompted with the centre of the *last* box of the frame instead of its own centre (a re-prompt of
            the same object on the same frame still overrides it, as in the published code). Keep False
            everywhere except ``tao_faithful``.
    """

    def __init__(self, look_back: int = 5, look_ahead: int = 5, min_matches: int = 3, first_frame_matches: int = 3,
                 match_iou: Optional[float] = 0.3, match_center_dist: Optional[float] = 20.0,
                 match_combine: str = "or", reprompt_interval: Optional[int] = 5, reprompt_anchor: str = "object",
                 merge: str = "iou", merge_iou: float = 0.5, prompt_type: str = "both", association: str = "best",
                 use_track_ids: bool = True, motion_prediction: bool = True, chain_look_ahead: bool = True,
                 integer_coords: bool = False, stale_center: bool = False):
        if look_back < 0 or look_ahead < 0:
            raise ValueError("look_back and look_ahead must be >= 0")
        if min_matches < 0 or first_frame_matches < 0:
            raise ValueError("min_matches and first_frame_matches must be >= 0")
        self.look_back = int(look_back)
        self.look_ahead = int(look_ahead)
        self.min_matches = int(min_matches)
        self.first_frame_matches = int(first_frame_matches)
        self.rule = MatchRule(match_iou, match_center_dist, match_combine, integer_coords)
        self.reprompt_interval = int(reprompt_interval or 0)
        self.reprompt_anchor = _check_choice("reprompt_anchor", reprompt_anchor, REPROMPT_ANCHORS)
        self.merge = _check_choice("merge", merge, MERGE_RULES)
        self.merge_iou = float(merge_iou)
        self.prompt_type = _check_choice("prompt_type", prompt_type, PROMPT_TYPES)
        self.association = _check_choice("association", association, ASSOCIATIONS)
        self.use_track_ids = bool(use_track_ids)
        self.motion_prediction = bool(motion_prediction)
        self.chain_look_ahead = bool(chain_look_ahead)
        self.integer_coords = bool(integer_coords)
        self.stale_center = bool(stale_center)

    # ------------------------------------------------------------------ helpers
    def _frames(self, anomalous: ObjectTable, num_frames: int) -> dict[int, _FrameBoxes]:
        out: dict[int, _FrameBoxes] = {}
        keep = (anomalous.frame >= 0) & (anomalous.frame < num_frames)
        table = anomalous.take(keep)
        order = np.argsort(table.frame, kind="stable")  # rows keep their input order within a frame
        frames, starts = np.unique(table.frame[order], return_index=True)
        for t, rows in zip(frames, np.split(order, starts[1:])):
            boxes = table.xyxy[rows].astype(np.float64)
            scores = table.score[rows].astype(np.float64)
            tids = table.track_id[rows]
            if self.merge == "any_overlap":
                boxes, scores, members = merge_any_overlap(boxes, scores)
            elif self.merge == "iou":
                boxes, scores, members = merge_iou(boxes, scores, self.merge_iou)
            else:
                members = [[i] for i in range(len(rows))]
            track_ids = []
            for g in members:
                g = sorted(g, key=lambda i: -table.score[rows[i]])  # best-scored member's tracker id first
                track_ids.append([int(tids[i]) for i in g if tids[i] >= 0])
            out[int(t)] = _FrameBoxes(boxes, scores, track_ids)
        return out

    def _center(self, box: np.ndarray) -> np.ndarray:
        c = box_centers(box)[0]
        return np.trunc(c) if self.integer_coords else c

    def _future_matches(self, t: int, box: np.ndarray, frames: dict[int, _FrameBoxes], num_frames: int) -> int:
        """Number of the next ``look_ahead`` frames that hold a box matching ``box`` (chained if configured)."""
        ref = box[None]
        count = 0
        for f in range(t + 1, min(t + self.look_ahead + 1, num_frames)):
            fb = frames.get(f)
            if fb is None or not len(fb.boxes):
                continue
            match, iou, dist = self.rule.matrices(ref, fb.boxes)
            if match[0].any():
                count += 1
                if self.chain_look_ahead:
                    cost = np.where(match[0], self.rule.cost(iou[0], dist[0]), np.inf)
                    ref = fb.boxes[int(np.argmin(cost))][None]
        return count

    def _inherit_tao(self, t: int, fb: _FrameBoxes, frames: dict[int, _FrameBoxes], used: set[int]) -> None:
        for i, box in enumerate(fb.boxes):
            inherited = 0
            for pf in range(max(0, t - self.look_back), t):
                prev = frames.get(pf)
                if prev is None or not len(prev.boxes):
                    continue
                match = self.rule(box[None], prev.boxes)[0]
                for j in np.flatnonzero(match):
                    pid = int(prev.ids[j])
                    if pid == 0 or pid not in used:
                        # the first matching box that is free decides; one without an id ends this frame's scan
                        inherited = pid
                        break
                if inherited:
                    break
            if inherited:
                fb.ids[i] = inherited
                used.add(inherited)

    def _predict(self, history: list[tuple[int, np.ndarray]], t: int) -> np.ndarray:
        f2, b2 = history[-1]
        if not self.motion_prediction or len(history) < 2:
            return b2
        f1, b1 = history[-2]
        v = (box_centers(b2)[0] - box_centers(b1)[0]) / max(f2 - f1, 1)
        shift = v * (t - f2)
        return b2 + np.array([shift[0], shift[1], shift[0], shift[1]])

    def _inherit_best(self, t: int, fb: _FrameBoxes, objects: dict[int, list], track_owner: dict[int, int],
                      used: set[int]) -> None:
        active = [oid for oid, hist in objects.items() if t - hist[-1][0] <= self.look_back]
        if self.use_track_ids:
            for i, tids in enumerate(fb.track_ids):
                for tid in tids:
                    oid = track_owner.get(tid)
                    if oid is not None and oid in active and oid not in used:
                        fb.ids[i] = oid
                        used.add(oid)
                        break
        free_boxes = np.flatnonzero(fb.ids == 0)
        free_objs = [oid for oid in active if oid not in used]
        if not len(free_boxes) or not free_objs:
            return
        from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize is slow to import

        pred = np.stack([self._predict(objects[oid], t) for oid in free_objs])
        match, iou, dist = self.rule.matrices(pred, fb.boxes[free_boxes])
        cost = np.where(match, self.rule.cost(iou, dist), _NO_MATCH)
        for r, c in zip(*linear_sum_assignment(cost)):
            if match[r, c]:
                fb.ids[free_boxes[c]] = free_objs[r]
                used.add(free_objs[r])

    # ------------------------------------------------------------------ main
    def __call__(self, anomalous: ObjectTable, num_frames: int) -> Prompts:
        frames = self._frames(anomalous, int(num_frames))
        order = [t for t in sorted(frames) if len(frames[t].boxes)]
        rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]] = {}
        if not order:
            return _build_prompts(rows, self.prompt_type)
        first = order[0]
        next_id = 1
        last_prompt: dict[int, int] = {}
        objects: dict[int, list[tuple[int, np.ndarray]]] = {}  # id -> last two (frame, box) ("best")
        track_owner: dict[int, int] = {}  # tracker id -> object id ("best" with use_track_ids)

        def emit(t: int, oid: int, box: np.ndarray, point: np.ndarray, score: float) -> None:
            rows[(t, oid)] = (box.copy(), point.copy(), float(score))  # a later prompt of (t, oid) replaces it
            last_prompt[oid] = t

        for t in order:
            fb = frames[t]
            used: set[int] = set()
            if t != first:
                if self.association == "tao":
                    self._inherit_tao(t, fb, frames, used)
                else:
                    self._inherit_best(t, fb, objects, track_owner, used)
            # new objects: confirmed by matches in the following frames
            stale = self._center(fb.boxes[-1])  # TAO's stale variable: the centre of the frame's last box
            need = self.first_frame_matches if t == first else self.min_matches
            for i in np.flatnonzero(fb.ids == 0):
                if self._future_matches(t, fb.boxes[i], frames, num_frames) >= need:
                    fb.ids[i] = next_id
                    next_id += 1
                    point = stale if (self.stale_center and t != first) else self._center(fb.boxes[i])
                    emit(t, int(fb.ids[i]), fb.boxes[i], point, fb.scores[i])
            # re-prompts of known objects
            if self.reprompt_interval > 0:
                for i in np.flatnonzero(fb.ids > 0):
                    oid = int(fb.ids[i])
                    if self.reprompt_anchor == "absolute":
                        due = t % self.reprompt_interval == 0
                    else:
                        due = t - last_prompt.get(oid, -10 ** 9) >= self.reprompt_interval
                    if due:
                        emit(t, oid, fb.boxes[i], self._center(fb.boxes[i]), fb.scores[i])
            # memory for the next frames
            for i in np.flatnonzero(fb.ids > 0):
                oid = int(fb.ids[i])
                objects[oid] = (objects.get(oid, []) + [(t, fb.boxes[i])])[-2:]
                for tid in fb.track_ids[i]:
                    track_owner[tid] = oid
        return _build_prompts(rows, self.prompt_type)


class PassThroughPromptFilter(PromptFilter):
    """``prompt_filter=none``: every anomalous box becomes a prompt on its own frame (no merge, no confirmation).

    Object id = tracker id + 1 (ids >= 1; 0 is the background label); untracked rows (track_id = -1) each get
    a fresh id above all others. If one object has several boxes in a frame, the highest-scored one is kept.

    Args:
        prompt_type: "box", "point" (box centre) or "both".
    """

    def __init__(self, prompt_type: str = "both"):
        self.prompt_type = _check_choice("prompt_type", prompt_type, PROMPT_TYPES)

    def __call__(self, anomalous: ObjectTable, num_frames: int) -> Prompts:
        keep = (anomalous.frame >= 0) & (anomalous.frame < int(num_frames))
        table = anomalous.take(keep)
        ids = table.track_id + 1
        untracked = np.flatnonzero(table.track_id < 0)
        start = int(max(ids.max(initial=0), 0)) + 1
        ids[untracked] = start + np.arange(len(untracked))
        rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]] = {}
        centers = box_centers(table.xyxy)
        for r in np.argsort(-table.score, kind="stable"):
            key = (int(table.frame[r]), int(ids[r]))
            if key not in rows:
                rows[key] = (table.xyxy[r].astype(np.float64), centers[r], float(table.score[r]))
        return _build_prompts(rows, self.prompt_type)
