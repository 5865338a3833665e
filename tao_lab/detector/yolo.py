"""Ultralytics YOLO detector from a local weights file (any YOLO detection model: v5u/v8/11/...).

ultralytics (and torch) are imported only when the detector is built, after the offline environment is set.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from tao_lab.boxes import box_iou
from tao_lab.detector.base import Detector, DetectorStream
from tao_lab.types import Clip, ObjectTable


#: Model files ultralytics.YOLO loads here: PyTorch checkpoints and LiteRT (TFLite) exports (the latter through
#: the ``ai-edge-litert`` runtime pinned in requirements.txt); a model ``.yaml`` builds random weights (tests only).
WEIGHT_SUFFIXES = (".pt", ".tflite")

#: Where real detector weights come from (the message of a missing file names it).
WEIGHTS_HELP = ("the COCO int8 exports yolo11n_int8.tflite / yolov8n_int8.tflite are in ../shared/weights (see its "
                "PROVENANCE.md; run with paths.weights_dir=../shared/weights); .pt models (e.g. yolov8s.pt, "
                "yolov8n-pose.pt) download from https://github.com/ultralytics/assets/releases on a machine with "
                "internet")


def check_yolo_weights(weights: str) -> None:
    """Raises FileNotFoundError naming the file and how to get it when a weights path does not exist
    (a model ``.yaml`` is always accepted: ultralytics builds it with random weights, for tests)."""
    weights = str(weights)
    if not weights.endswith((".yaml", ".yml")) and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"YOLO weights not found: {os.path.abspath(weights)}; {WEIGHTS_HELP}. Copy or download the model, then "
            f"point the config at it (paths.weights_dir or the component's weights key)")


def load_yolo(weights: str, task: Optional[str] = None) -> Any:
    """Builds ``ultralytics.YOLO`` from a local ``.pt`` / ``.tflite`` file or a model ``.yaml`` (random weights).

    Nothing is ever downloaded: a bare name such as ``yolov8n.pt`` that is not a file is an error (see
    :func:`check_yolo_weights`). The offline environment is set before ultralytics is imported. A ``.tflite``
    model needs the ``ai-edge-litert`` package: without it ultralytics would try to pip-install a runtime at load
    time, so its absence is an error here instead.
    """
    from tao_lab.no_network import disable_ultralytics_sync, set_offline_env

    weights = str(weights)
    check_yolo_weights(weights)
    if weights.endswith(".tflite"):
        import importlib.util

        if importlib.util.find_spec("ai_edge_litert") is None:
            raise ImportError(f"{weights} is a LiteRT (TFLite) model and needs the package ai-edge-litert "
                              f"(pinned in requirements.txt; run `bash setup.sh`)")
    set_offline_env()
    disable_ultralytics_sync()
    from ultralytics import YOLO

    return YOLO(weights, task=task) if task else YOLO(weights)


def interpolate_key_frames(frames: np.ndarray, boxes: list[np.ndarray], conf: list[np.ndarray],
                           cls: list[np.ndarray], min_iou: float = 0.1) -> ObjectTable:
    """Detections on key frames only -> a table with boxes on the frames between consecutive key frames too.

    A box of key frame a and a box of the next key frame b of the same class are paired when their IoU is at least
    ``min_iou`` (one-to-one, highest IoU first, Hungarian); each pair gives linearly interpolated boxes on the
    frames a+1..b-1 with the lower of the two confidences. Unpaired boxes stay on their key frame only. This is
    what "detect every k-th frame and let the motion carry the boxes" amounts to for an offline pipeline.
    frames: (K,) increasing key-frame indices; boxes/conf/cls: per key frame (n_i,4) / (n_i,) / (n_i,).
    """
    from scipy.optimize import linear_sum_assignment

    rows = []
    for i, f in enumerate(frames):
        rows.append(ObjectTable.build(np.full(len(boxes[i]), f), boxes[i], conf[i], None, cls[i]))
        if i + 1 == len(frames) or frames[i + 1] - f < 2 or not len(boxes[i]) or not len(boxes[i + 1]):
            continue
        iou = box_iou(boxes[i], boxes[i + 1], dtype=np.float32)
        iou[cls[i][:, None] != cls[i + 1][None, :]] = 0.0
        ra, rb = linear_sum_assignment(-iou)
        keep = iou[ra, rb] >= min_iou
        ra, rb = ra[keep], rb[keep]
        steps = np.arange(1, frames[i + 1] - f)
        t = (steps / (frames[i + 1] - f)).astype(np.float32)[:, None, None]  # (S,1,1)
        between = (1 - t) * boxes[i][ra][None] + t * boxes[i + 1][rb][None]  # (S,P,4)
        rows.append(ObjectTable.build(np.repeat(f + steps, len(ra)), between.reshape(-1, 4),
                                      np.tile(np.minimum(conf[i][ra], conf[i + 1][rb]), len(steps)), None,
                                      np.tile(cls[i][ra], len(steps))))
    out = ObjectTable.concat(rows)
    return out.take(np.argsort(out.frame, kind="stable"))


class YoloDetector(Detector):
    """Boxes from an ultralytics YOLO detection model, frame by frame (or every ``stride``-th frame).

    Args:
        weights: local path of a ``.pt`` or ``.tflite`` detection model (or a model ``.yaml``: random weights,
            tests only).
        classes: class indices to keep (None = all); e.g. [0, 1, 2, 3, 5, 7] for COCO person/bicycle/car/
            motorcycle/bus/truck.
        conf: minimum confidence of a kept box.
        iou: NMS IoU threshold.
        imgsz: inference size (px, multiple of 32); a TFLite export has its input size fixed at export time.
        device: torch device string ("cpu", "cuda:0").
        max_det: maximum boxes per frame.
        batch: frames per forward pass.
        stride: run the model on every ``stride``-th frame (and the last) only; boxes on the frames between are
            interpolated between paired boxes of the neighbouring key frames (:func:`interpolate_key_frames`).
            1 = every frame. The cheap way to run a slow model on a slow CPU.
    Output: ``cls`` = the model's class index, ``score`` = confidence, ``track_id`` = -1.
    """

    #: the ``cls`` column means something (the scorer's ``class`` attribute needs that)
    has_classes = True

    def __init__(self, weights: str, classes: Optional[Sequence[int]] = None, conf: float = 0.1, iou: float = 0.7,
                 imgsz: int = 640, device: str = "cpu", max_det: int = 300, batch: int = 8, stride: int = 1):
        check_yolo_weights(weights)
        self.weights = str(weights)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.conf = float(conf)
        self.iou = float(iou)
        self.imgsz = int(imgsz)
        self.device = str(device)
        self.max_det = int(max_det)
        self.batch = max(1, int(batch))
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1 (1 = every frame), got {stride}")
        self.stride = int(stride)
        self._model = None
        # set by tao_lab.features.yolo_litert.share_detector_pass when a LiteRT deep feature of the same .tflite
        # runs in the same pipeline: every frame's pass then also leaves its feature map there (no second inference)
        self.map_tap = None
        self._tap_installed = False

    @property
    def model(self):
        if self._model is None:
            self._model = load_yolo(self.weights, task="detect")
        return self._model

    @property
    def class_names(self) -> dict[int, str]:
        """{class index: name} of the model (COCO-80 for the official exports)."""
        return {int(k): str(v) for k, v in self.model.names.items()}

    def _install_tap(self) -> None:
        """Once: ultralytics builds its predictor (and LiteRT interpreter) inside the first predict call, so the
        capturing interpreter goes in from the predictor's start callback."""
        if self.map_tap is None or self._tap_installed:
            return
        from tao_lab.features.yolo_litert import install_tap

        tap = self.map_tap
        self.model.add_callback("on_predict_start", lambda predictor: install_tap(predictor, tap))
        self._tap_installed = True

    def predict_frames(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(xyxy (K,4) float32, conf (K,) float32, cls (K,) int64) for each BGR uint8 frame."""
        self._install_tap()
        results = self.model.predict(frames, conf=self.conf, iou=self.iou, imgsz=self.imgsz, device=self.device,
                                     classes=self.classes, max_det=self.max_det, verbose=False)
        out = []
        for r in results:
            b = r.boxes
            out.append((b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                        b.cls.cpu().numpy().astype(np.int64)))
        return out

    def stream(self, ctx) -> DetectorStream:
        """Online: the model on every frame (whatever ``stride``: there is no next key frame to interpolate to)."""

        def step(frame: np.ndarray) -> ObjectTable:
            xyxy, conf, cls = self.predict_frames([frame])[0]
            if self.map_tap is not None:  # online, the features run on their own (nothing assigns these maps)
                self.map_tap.discard_pending()
            return ObjectTable.build(np.zeros(len(conf)), xyxy, conf, None, cls)

        return DetectorStream(step)

    def key_frames(self, num_frames: int) -> np.ndarray:
        """The frames the model runs on: every ``stride``-th frame and the last one."""
        if num_frames < 1:
            return np.zeros(0, np.int64)
        return np.unique(np.append(np.arange(0, num_frames, self.stride), num_frames - 1))

    def prepare(self) -> None:
        from tao_lab.no_network import disable_ultralytics_sync, set_offline_env

        set_offline_env()
        disable_ultralytics_sync()  # imports ultralytics (and torch) in this thread

    def detect(self, clip: Clip) -> ObjectTable:
        keys = self.key_frames(clip.num_frames)
        wanted = set(keys.tolist()) if self.stride > 1 else None
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        batch: list[np.ndarray] = []
        indices: list[int] = []

        def run() -> None:
            found.extend(self.predict_frames(batch))
            if self.map_tap is not None:  # the feature maps of these passes, for the features stage of this clip
                self.map_tap.assign(clip.clip_id, indices, batch[0].shape[:2])
            batch.clear()
            indices.clear()

        for i, frame in enumerate(clip.frames()):
            if wanted is not None and i not in wanted:
                continue
            batch.append(frame)
            indices.append(i)
            if len(batch) == self.batch:
                run()
        if batch:
            run()
        if not found:
            return ObjectTable.empty()
        boxes, conf, cls = ([f[j] for f in found] for j in range(3))
        if self.stride == 1:
            return ObjectTable.concat([ObjectTable.build(np.full(len(b), i), b, c, None, k)
                                       for i, (b, c, k) in enumerate(zip(boxes, conf, cls))])
        return interpolate_key_frames(keys, boxes, conf, cls)
