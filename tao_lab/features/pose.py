"""Pose keypoints of each box from a LOCAL ultralytics pose model (optional feature)."""
from __future__ import annotations

import numpy as np

from tao_lab.detector.yolo import check_yolo_weights
from tao_lab.features.base import FeatureExtractor, FrameContext, clip_boxes


class PoseFeature(FeatureExtractor):
    """17 COCO keypoints of the most confident person found in each box crop, box-relative.

    Columns (D = 34): x0, y0, x1, y1, ... with x, y in [0, 1] relative to the box (0 = left/top edge,
    1 = right/bottom edge). Rows where the model finds no person are NaN (the attribute scorer gives such objects
    the calibrated minimum for this attribute).

    Args:
        weights: local ultralytics pose model (e.g. yolov8n-pose.pt; a model .yaml builds random weights, tests
            only). Missing -> FileNotFoundError naming the file and how to get it.
        imgsz: inference size of the crops (px, multiple of 32).
        conf: minimum person confidence.
        pad: fraction of the box size added on every side of the crop (pose models need some context).
        device: torch device string.
    """

    name = "pose"
    num_keypoints = 17

    def __init__(self, weights: str, imgsz: int = 160, conf: float = 0.25, pad: float = 0.1, device: str = "cpu"):
        self.weights = str(weights)
        self.imgsz = int(imgsz)
        self.conf = float(conf)
        self.pad = float(pad)
        self.device = str(device)
        self._model = None
        check_yolo_weights(self.weights)

    @property
    def dim(self) -> int:
        return 2 * self.num_keypoints

    @property
    def model(self):
        if self._model is None:
            from tao_lab.detector.yolo import load_yolo

            self._model = load_yolo(self.weights, task="pose")
        return self._model

    def compute(self, ctx: FrameContext, boxes: np.ndarray) -> np.ndarray:
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
