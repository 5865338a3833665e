"""Detectors: ``Detector.detect(clip) -> ObjectTable`` (track_id = -1).

- :class:`BackgroundSubtractionDetector` (weight-free default, fixed cameras), built on :class:`BackgroundModel`;
- :class:`YoloDetector` (ultralytics, local weights file; ultralytics is imported only when it runs);
- :class:`HybridDetector` (YOLO boxes plus the background blobs they do not explain, ``cls`` -1 = unknown).
"""
from tao_lab.detector.background import BackgroundModel
from tao_lab.detector.base import Detector
from tao_lab.detector.hybrid import UNKNOWN_CLASS, HybridDetector, merge_detections
from tao_lab.detector.subtraction import BackgroundSubtractionDetector
from tao_lab.detector.yolo import YoloDetector

__all__ = ["BackgroundModel", "Detector", "BackgroundSubtractionDetector", "YoloDetector", "HybridDetector",
           "UNKNOWN_CLASS", "merge_detections"]
