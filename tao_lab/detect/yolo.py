"""Ultralytics YOLO detector from a local weights file (any YOLO detection model: v5u/v8/11/...).

ultralytics (and torch) are imported only when the detector is built, after the offline environment is set.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from tao_lab.detect.base import Detector
from tao_lab.types import Clip, ObjectTable


def check_yolo_weights(weights: str) -> None:
    """Raises FileNotFoundError naming the file and how to get it when a ``.pt`` weights path does not exist
    (a model ``.yaml`` is always accepted: ultralytics builds it with random weights, for tests)."""
    weights = str(weights)
    if not weights.endswith((".yaml", ".yml")) and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"YOLO weights not found: {os.path.abspath(weights)}; download the model (e.g. yolov8s.pt or "
            f"yolov8n-pose.pt from https://github.com/ultralytics/assets/releases) on a machine with internet, "
            f"copy it there and point the config at it (paths.weights_dir or the component's weights key)")


def load_yolo(weights: str, task: Optional[str] = None) -> Any:
    """Builds ``ultralytics.YOLO`` from a local ``.pt`` file or a model ``.yaml`` (random weights, for tests).

    Nothing is ever downloaded: a bare name such as ``yolov8n.pt`` that is not a file is an error (see
    :func:`check_yolo_weights`). The offline environment is set before ultralytics is imported.
    """
    from tao_lab.offline import disable_ultralytics_sync, set_offline_env

    weights = str(weights)
    check_yolo_weights(weights)
    set_offline_env()
    disable_ultralytics_sync()
    from ultralytics import YOLO

    return YOLO(weights, task=task) if task else YOLO(weights)


class YoloDetector(Detector):
    """Boxes from an ultralytics YOLO detection model, frame by frame.

    Args:
        weights: local path of a ``.pt`` detection model (or a model ``.yaml``: random weights, tests only).
        classes: class indices to keep (None = all); e.g. [0, 1, 2, 3, 5, 7] for COCO person/bicycle/car/
            motorcycle/bus/truck.
        conf: minimum confidence of a kept box; keep it low (e.g. 0.1) when ByteTrack follows, which uses the
            low-confidence boxes for its second association.
        iou: NMS IoU threshold.
        imgsz: inference size (px, multiple of 32).
        device: torch device string ("cpu", "cuda:0").
        max_det: maximum boxes per frame.
        batch: frames per forward pass.
    Output: ``cls`` = the model's class index, ``score`` = confidence, ``track_id`` = -1.
    """

    def __init__(self, weights: str, classes: Optional[Sequence[int]] = None, conf: float = 0.1, iou: float = 0.7,
                 imgsz: int = 640, device: str = "cpu", max_det: int = 300, batch: int = 8):
        check_yolo_weights(weights)
        self.weights = str(weights)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.conf = float(conf)
        self.iou = float(iou)
        self.imgsz = int(imgsz)
        self.device = str(device)
        self.max_det = int(max_det)
        self.batch = max(1, int(batch))
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_yolo(self.weights, task="detect")
        return self._model

    def predict_frames(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(xyxy (K,4) float32, conf (K,) float32, cls (K,) int64) for each BGR uint8 frame."""
        results = self.model.predict(frames, conf=self.conf, iou=self.iou, imgsz=self.imgsz, device=self.device,
                                     classes=self.classes, max_det=self.max_det, verbose=False)
        out = []
        for r in results:
            b = r.boxes
            out.append((b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                        b.cls.cpu().numpy().astype(np.int64)))
        return out

    def detect(self, clip: Clip) -> ObjectTable:
        rows = []
        batch: list[np.ndarray] = []
        start = 0

        def flush():
            for j, (xyxy, conf, cls) in enumerate(self.predict_frames(batch)):
                rows.append(ObjectTable.build(np.full(len(xyxy), start + j), xyxy, conf, None, cls))

        for i, frame in enumerate(clip.frames()):
            batch.append(frame)
            if len(batch) == self.batch:
                flush()
                start = i + 1
                batch = []
        if batch:
            flush()
        return ObjectTable.concat(rows)
