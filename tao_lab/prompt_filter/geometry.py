"""Box geometry used by the prompt filters: IoU, centre distance, the match rule and the two merge rules.

Boxes are ``xyxy`` float arrays in original-frame pixels, x2/y2 exclusive (the project convention), so the area of
a box is ``(x2 - x1) * (y2 - y1)`` with no +1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tao_lab.boxes import box_iou


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """(N, 2) centres (x, y) of (N, 4) xyxy boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def center_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (N, M) in pixels between the centres of boxes ``a`` and ``b``."""
    ca, cb = box_centers(a), box_centers(b)
    return np.sqrt(((ca[:, None, :] - cb[None, :, :]) ** 2).sum(-1))


class MatchRule:
    """When two boxes (in different frames) are "the same object".

    Args:
        iou: match when IoU >= iou; None = this test is not used.
        center_dist: match when the centre distance (px) <= center_dist; None = this test is not used.
        combine: "or" (either test suffices; TAO's rule) or "and" (both tests must hold).
        integer_coords: truncate box coordinates to integers before testing (TAO's code does this).
    """

    def __init__(self, iou: Optional[float] = 0.3, center_dist: Optional[float] = 20.0, combine: str = "or",
                 integer_coords: bool = False):
        if iou is None and center_dist is None:
            raise ValueError("match rule needs at least one of iou / center_dist")
        if combine not in ("or", "and"):
            raise ValueError(f"match combine must be 'or' or 'and', got {combine!r}")
        self.iou = None if iou is None else float(iou)
        self.center_dist = None if center_dist is None else float(center_dist)
        self.combine = combine
        self.integer_coords = bool(integer_coords)

    def _prep(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.trunc(boxes) if self.integer_coords else boxes

    def matrices(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(match (N, M) bool, iou (N, M), centre distance (N, M))."""
        a, b = self._prep(a), self._prep(b)
        iou, dist = box_iou(a, b), center_distance(a, b)
        tests = []
        if self.iou is not None:
            tests.append(iou >= self.iou)
        if self.center_dist is not None:
            tests.append(dist <= self.center_dist)
        match = np.logical_or.reduce(tests) if self.combine == "or" else np.logical_and.reduce(tests)
        return match, iou, dist

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Match matrix (N, M) bool between boxes ``a`` (N, 4) and ``b`` (M, 4)."""
        return self.matrices(a, b)[0]

    def cost(self, iou: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Assignment cost (lower = better) combining both cues; used to pick the best of several matches."""
        scale = self.center_dist if self.center_dist else 20.0
        return (1.0 - iou) + dist / scale


def _union(boxes: np.ndarray) -> np.ndarray:
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def _touch_or_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    # inclusive comparisons: boxes that share an edge count, as in TAO's code
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


def merge_any_overlap(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """TAO's merge: one pass over the boxes in order; a box that touches or overlaps an already kept box replaces
    it by their union (appended at the end of the kept list); the union is not re-tested against the others, so
    the result may still contain overlapping boxes and depends on the input order (as in the published code).

    Returns (merged boxes (K, 4), merged scores (K,) = max of the members, members: list of input row indices).
    The published code scores a merged box with the mean of the frame's *first two* scores (an indexing slip);
    scores never reach SAM2 there, so the max of the members is used instead.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    kept: list[np.ndarray] = []
    members: list[list[int]] = []
    for i, box in enumerate(boxes):
        for j, other in enumerate(kept):
            if _touch_or_overlap(box, other):
                kept.pop(j)
                group = members.pop(j) + [i]
                kept.append(_union(np.stack([box, other])))
                members.append(group)
                break
        else:
            kept.append(box.copy())
            members.append([i])
    out_scores = np.array([scores[g].max() for g in members]) if members else np.zeros(0)
    return np.array(kept).reshape(-1, 4), out_scores, members


def merge_iou(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5
              ) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """IoU-threshold merge: repeatedly replaces the pair with the highest IoU >= ``iou_threshold`` by its union
    until no pair qualifies (order-independent, a fixed point). Duplicate detections of one object merge, while
    two objects that merely brush past each other stay separate.

    Returns (merged boxes (K, 4), merged scores (K,) = max of the members, members: list of input row indices).
    """
    boxes = [b for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    members = [[i] for i in range(len(boxes))]
    while len(boxes) > 1:
        iou = box_iou(np.stack(boxes), np.stack(boxes))
        np.fill_diagonal(iou, -1.0)
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] < iou_threshold:
            break
        i, j = min(i, j), max(i, j)
        boxes[i] = _union(np.stack([boxes[i], boxes[j]]))
        members[i] = sorted(members[i] + members[j])
        del boxes[j], members[j]
    out_scores = np.array([scores[g].max() for g in members]) if members else np.zeros(0)
    return np.array(boxes).reshape(-1, 4), out_scores, members
