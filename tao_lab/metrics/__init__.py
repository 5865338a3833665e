"""Exact, streaming, protocol-labelled metrics for video anomaly detection.

Frame level: :func:`frame_metrics` (micro AUC, AP, macro AUC).
Pixel level: :class:`PixelMetrics` (standard protocol: pooled AUROC, AP, AUPRO@limit, max-F1, F1@threshold; exact
and streaming, optional binned mode with certified error bounds) and :class:`TaoPixelMetrics` (TAO's protocol,
keys ``*_tao``; its ``aupro_tao`` is TAO's mislabelled PR-AUC).
Masks: :func:`mask_iou`, :func:`boundary_f1` and :class:`MaskAgreement` (binary masks against the GT masks).
Object level: :func:`rbdc_tbdc` (RBDC / TBDC, vectorised, deterministic ties), GT tracks from masks
(:func:`tracks_from_masks`) and the standard txt formats.
Command line: ``python -m tao_lab.metrics {object,pixel,frame} ...``.

Conventions: predicted positive when ``score >= threshold``; tied scores are one operating point; undefined
metrics (a class is absent) are NaN. Only numpy, scipy and OpenCV are imported.
"""
from tao_lab.metrics._core import RankCounts, SortedLookup, rank_counts_from_arrays
from tao_lab.metrics.frame import frame_metrics
from tao_lab.metrics.masks import MaskAgreement, boundary_f1, mask_iou
from tao_lab.metrics.objects import box_iou, rbdc_tbdc
from tao_lab.metrics.pixel import PixelMetrics, TaoPixelMetrics, aupro_key
from tao_lab.metrics.tracks import (DETECTION_COLUMNS, TRACK_COLUMNS, read_detections_txt, read_tracks_txt,
                                    read_txt_dir, tracks_from_masks, write_detections_txt, write_tracks_txt)

__all__ = ["frame_metrics", "PixelMetrics", "TaoPixelMetrics", "aupro_key", "rbdc_tbdc", "box_iou",
           "tracks_from_masks", "read_tracks_txt", "write_tracks_txt", "read_detections_txt",
           "write_detections_txt", "read_txt_dir", "TRACK_COLUMNS", "DETECTION_COLUMNS", "RankCounts",
           "SortedLookup", "rank_counts_from_arrays", "mask_iou", "boundary_f1", "MaskAgreement"]
