"""Object scorers (LightningModules) and the numpy helpers they share.

The LightningModule classes are exported lazily (``from tao_lab.scorer import AttributeScorer`` imports lightning
then, not before), so importing this package stays cheap.
"""
from __future__ import annotations

from tao_lab.scorer.common import frame_scores_from_objects, smooth_along_tracks, smooth_frame_scores

__all__ = ["ObjectScorer", "AttributeScorer", "TemporalMaeScorer", "frame_scores_from_objects",
           "smooth_along_tracks", "smooth_frame_scores"]

_LAZY = {"ObjectScorer": "tao_lab.scorer.base", "AttributeScorer": "tao_lab.scorer.attribute",
         "TemporalMaeScorer": "tao_lab.scorer.temporal_mae"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
