"""Pixel-level metrics as streaming accumulators, one module per job:

- protocols: :mod:`~tao_lab.metrics.pixel.standard` (:class:`PixelMetrics`: all test frames pooled, continuous
  scores, exact AUROC, AP, AUPRO@limit, max-F1, F1@threshold; optional binned mode with certified error bounds)
  and :mod:`~tao_lab.metrics.pixel.tao` (:class:`TaoPixelMetrics`: TAO's per-frame protocol, keys ``*_tao``);
- storage engines of the standard protocol: :mod:`~tao_lab.metrics.pixel.exact_store` (normal pixels as an exact
  multiset, anomalous pixels as weighted runs) and :mod:`~tao_lab.metrics.pixel.binned_store` (fixed-size
  histograms);
- :mod:`~tao_lab.metrics.pixel.checks`: the per-frame input contract both protocols share.
"""
from tao_lab.metrics.pixel.standard import PixelMetrics, aupro_key
from tao_lab.metrics.pixel.tao import TaoPixelMetrics

__all__ = ["PixelMetrics", "TaoPixelMetrics", "aupro_key"]
