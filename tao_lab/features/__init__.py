"""Per-object features: extractors combined by :func:`extract_features` (one decoding pass per clip).

Weight-free: :class:`VelocityFeature` (optical flow), :class:`MotionPatternFeature` (rigid or articulated motion),
:class:`BoxGeometryFeature`, :class:`GroundFeature` (the ground below the feet), :class:`PlaceFeature` (footprint
relative to the frame, for the scene-context attributes), :class:`CropAppearanceFeature`.
From local model files (torch/ultralytics imported only when they run): :class:`DeepFeature`, :class:`PoseFeature`.
"""
from tao_lab.features.appearance import CropAppearanceFeature
from tao_lab.features.base import (FeatureExtractor, FeatureSet, FlowEstimator, FrameContext, clip_boxes,
                                   extract_features)
from tao_lab.features.deep import DeepFeature
from tao_lab.features.geometry import BoxGeometryFeature
from tao_lab.features.ground import GroundFeature
from tao_lab.features.motion_pattern import MotionPatternFeature
from tao_lab.features.place import PlaceFeature
from tao_lab.features.pose import PoseFeature
from tao_lab.features.velocity import VelocityFeature

__all__ = ["FeatureExtractor", "FeatureSet", "FlowEstimator", "FrameContext", "clip_boxes", "extract_features",
           "VelocityFeature", "MotionPatternFeature", "BoxGeometryFeature", "GroundFeature", "PlaceFeature",
           "CropAppearanceFeature", "DeepFeature", "PoseFeature"]
