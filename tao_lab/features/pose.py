"""Pose keypoints of each box: BlazePose through LiteRT (``backend: litert``) or a LOCAL ultralytics pose model.

``backend: litert`` (configs/features/pose_blazepose.yaml): MediaPipe's BlazePose GHUM full landmark model on a
square ROI around each track box (tao_lab.features.blazepose documents the published graph it follows). Only
objects that may be persons are run: COCO person (``cls`` 0, also what class-agnostic detectors give every box)
and the hybrid detector's unexplained blobs (``cls`` -1); other classes (bicycle, car, ...) get NaN rows.
``backend: ultralytics``: 17 COCO keypoints of the most confident person found in the box crop.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes

BACKENDS = ("ultralytics", "litert")
#: ``cls`` values that may be a person: 0 = COCO person and every box of a class-agnostic detector; -1 = a blob of
#: the hybrid detector that no class-aware box explains (tao_lab.detector.hybrid.UNKNOWN_CLASS).
PERSON_CLASSES = (0, -1)


class PoseFeature(FeatureExtractor):
    """Body keypoints of each box, box-relative; NaN rows where there is no (person) pose.

    Keypoint x, y are relative to the box (0 = left/top edge, 1 = right/bottom edge; outside [0, 1] when a limb
    leaves the box). Rows are NaN when no pose is found, and (litert) for objects whose class is not a possible
    person (:data:`PERSON_CLASSES`) or whose pose presence is below ``presence_threshold``; the attribute scorer
    gives NaN rows score 0 for this attribute (configs/scorer/attribute_pose.yaml says why).

    Columns: ``ultralytics`` (D = 34): x0, y0, ..., x16, y16 (COCO order). ``litert`` (D = 100): x0, y0, ...,
    x32, y32 (BlazePose order) in columns 0-65, the 33 visibilities (sigmoid) in 66-98, the pose presence in 99.

    Args:
        weights: ultralytics: a local pose model (.pt; a model .yaml builds random weights, tests only); litert:
            ``pose_landmark_full.tflite``. Missing -> FileNotFoundError naming the file and how to get it.
        backend: "ultralytics" | "litert".
        imgsz, conf, pad, device: ultralytics only: crop inference size (px), minimum person confidence, context
            added around the box (fraction per side), torch device.
        presence_threshold: litert: rows with a lower pose presence are NaN (MediaPipe's graph: 0.5).
        roi_scale: litert: ROI side / the box's longer side (MediaPipe's pose ROI: 1.25).
        num_threads: litert: interpreter threads.
        person_classes: litert: ``cls`` values run through the model (others get NaN rows).
    """

    name = "pose"

    def __init__(self, weights: str, backend: str = "ultralytics", imgsz: int = 160, conf: float = 0.25,
                 pad: float = 0.1, device: str = "cpu", presence_threshold: float = 0.5, roi_scale: float = 1.25,
                 num_threads: int = 1, person_classes: Sequence[int] = PERSON_CLASSES):
        if backend not in BACKENDS:
            raise ValueError(f"pose backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.weights = str(weights)
        self.imgsz = int(imgsz)
        self.conf = float(conf)
        self.pad = float(pad)
        self.device = str(device)
        self.presence_threshold = float(presence_threshold)
        self.person_classes = tuple(int(c) for c in person_classes)
        self._model = None
        if backend == "litert":
            from tao_lab.features.blazepose import BlazePose, NUM_KEYPOINTS

            self.num_keypoints = NUM_KEYPOINTS
            self._blazepose = BlazePose(self.weights, roi_scale=roi_scale, num_threads=num_threads)
        else:
            from tao_lab.detector.yolo import check_yolo_weights

            self.num_keypoints = 17
            check_yolo_weights(self.weights)

    @property
    def dim(self) -> int:
        if self.backend == "litert":
            return 3 * self.num_keypoints + 1
        return 2 * self.num_keypoints

    @property
    def model(self):
        if self._model is None:
            from tao_lab.detector.yolo import load_yolo

            self._model = load_yolo(self.weights, task="pose")
        return self._model

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        if self.backend == "litert":
            return self._compute_litert(ctx, boxes)
        frame = ctx.frame
        h, w = frame.shape[:2]
        b = np.asarray(boxes, np.float32).copy()
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        padded = b + np.stack([-bw, -bh, bw, bh], axis=1) * self.pad
        ib = clip_boxes(padded, h, w)
        crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in ib]
        out = np.full((len(b), self.dim), np.nan, np.float32)
        results = self.model.predict(crops, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False)
        for r, (res, (x1, y1, _, _)) in enumerate(zip(results, ib)):
            if res.keypoints is None or res.boxes is None or len(res.boxes) == 0:
                continue
            best = int(res.boxes.conf.cpu().numpy().argmax())
            kp = res.keypoints.xy.cpu().numpy()[best]  # (17, 2) crop pixels
            if kp.shape[0] != self.num_keypoints:
                continue
            rel = (kp + np.array([x1, y1], np.float32) - b[r, :2]) / np.maximum(np.array([bw[r], bh[r]]), 1.0)
            out[r] = rel.reshape(-1)
        return out

    def _compute_litert(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
        import cv2

        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.full((len(b), self.dim), np.nan, np.float32)
        classes = getattr(ctx, "classes", None)
        run = np.ones(len(b), bool) if classes is None else np.isin(np.asarray(classes), self.person_classes)
        if not run.any():
            return out
        frame = ctx.frame
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        k = self.num_keypoints
        for r in np.flatnonzero(run):
            res = self._blazepose(rgb, b[r])
            if not res.presence >= self.presence_threshold:
                continue
            size = np.maximum(b[r, 2:] - b[r, :2], 1.0)
            out[r, :2 * k] = ((res.keypoints - b[r, :2]) / size).reshape(-1)
            out[r, 2 * k:3 * k] = res.visibility
            out[r, 3 * k] = res.presence
        return out
