"""The tao_lab modules renamed when the packages took their config groups' names (``detector=`` ->
``tao_lab.detector``, ...): old name -> new name, for what was written before the rename and still names them.

- A scorer checkpoint records the class that wrote it (``tao_lab_scorer``, e.g.
  ``tao_lab.scorers.attribute.AttributeScorer``): :func:`current_name` maps it to today's name, so a checkpoint
  trained before the rename still loads.
- A stage-cache key is the hash of a spec holding ``_target_`` class paths (``tao_lab.detector.YoloDetector``):
  :func:`pre_rename_names` puts the old names back before hashing, so a cache filled before the rename keeps its
  keys (its detections, features and fitted scorers are found, not computed again).

No module is importable under an old name: only these two stored forms are translated.
"""
from __future__ import annotations

import re

#: old module -> new module (dotted, under tao_lab)
RENAMED: dict[str, str] = {
    "tao_lab.data": "tao_lab.dataset",
    "tao_lab.detect": "tao_lab.detector",
    "tao_lab.track": "tao_lab.tracker",
    "tao_lab.scorers": "tao_lab.scorer",
    "tao_lab.prompts": "tao_lab.prompt_filter",
    "tao_lab.segment": "tao_lab.segmenter",
    "tao_lab.thresholds": "tao_lab.threshold",
    "tao_lab.offline": "tao_lab.no_network",
}


def _pattern(names) -> re.Pattern:
    # whole module names only: "tao_lab.scorer" must not match inside "tao_lab.scorers", nor "tao_lab.data" inside
    # "tao_lab.dataset"
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b")


_OLD = _pattern(RENAMED)
_NEW_TO_OLD = {new: old for old, new in RENAMED.items()}
_NEW = _pattern(_NEW_TO_OLD)


def current_name(path: str) -> str:
    """``path`` (a dotted module or class path) with any pre-rename module name replaced by today's."""
    return _OLD.sub(lambda m: RENAMED[m.group(1)], path)


def pre_rename_names(text: str) -> str:
    """``text`` with today's names of the renamed modules replaced by their old ones (for hashing only)."""
    return _NEW.sub(lambda m: _NEW_TO_OLD[m.group(1)], text)
