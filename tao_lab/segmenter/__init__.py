"""Segmenters: prompts + frames -> per-object masks, per-pixel anomaly scores and per-object boxes.

- :class:`ForegroundSegmenter` (``segmenter=classical``, default): weight-free foreground inside the boxes;
- :class:`PosePersonSegmenter` (``segmenter=pose_person``): BlazePose person masks, classical for the rest;
- :class:`LearnedSegmenter` (``segmenter=learned``): the classical one with its box-to-mask step learned, without
  labels, on the camera's training clips (a small U-Net, torch imported lazily);
- :class:`FilledBoxSegmenter` (``segmenter=boxes``): filled boxes, the baseline;
- :class:`Sam2Segmenter` (``segmenter=sam2``): SAM 2 / 2.1 in video or image mode (torch/sam2 imported lazily).
"""
from tao_lab.segmenter.base import Segmenter, SegmentationBuilder, mask_box, masks_to_boxes
from tao_lab.segmenter.boxes import CarryingSegmenter, FilledBoxSegmenter
from tao_lab.segmenter.carry import PlannedBox, plan_boxes
from tao_lab.segmenter.classical import ForegroundSegmenter
from tao_lab.segmenter.learned import LearnedSegmenter
from tao_lab.segmenter.pose_person import PosePersonSegmenter
from tao_lab.segmenter.sam2_segmenter import Sam2Segmenter, checkpoint_name

__all__ = ["Segmenter", "SegmentationBuilder", "masks_to_boxes", "mask_box", "CarryingSegmenter",
           "FilledBoxSegmenter", "ForegroundSegmenter", "LearnedSegmenter", "PosePersonSegmenter", "Sam2Segmenter",
           "checkpoint_name", "PlannedBox", "plan_boxes"]
