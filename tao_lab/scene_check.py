"""The scene check: a label-free sign of how well each group of the scorer fits the video it scores.

Per fusion group of the attribute scorer (``fusion: sum_excess``), the share of the scored objects whose excess over
the group's baseline exceeds ``SCENE_CHECK_EXCESS`` (AttributeScorer.excess_counts), next to the same share on the
training objects. ``eval.py`` reports it as ``<split>/scene_check_<group>`` and ``train/scene_check_<group>``,
``infer.py`` in its summary and report (README "Scene check"). Nothing for scorers without group baselines.
"""
from __future__ import annotations

#: An object counts when its excess over a group's baseline exceeds this (AttributeScorer.excess_counts).
SCENE_CHECK_EXCESS = 0.5
#: What the check reports, as every output (eval's table, infer's summary and report) words it.
DESCRIPTION = f"share of objects more than {SCENE_CHECK_EXCESS:g} above each group's normal level (label-free)"


class SceneCheck:
    """Label-free: per fusion group of the scorer, the share of the evaluated objects whose excess over the group's
    baseline exceeds ``SCENE_CHECK_EXCESS`` (AttributeScorer.excess_counts), next to the same share on the training
    objects: ``<split>/scene_check_<group>`` and ``train/scene_check_<group>``. Nothing for scorers without it."""

    def __init__(self, scorer):
        self.scorer = scorer if hasattr(scorer, "excess_counts") else None
        self.objects, self.over = 0, None

    def add(self, scores) -> None:
        if self.scorer is None or not scores.parts:
            return
        got = self.scorer.excess_counts(scores.parts)
        if got is None:  # a fusion without group baselines
            self.scorer = None
            return
        self.objects += got[0]
        self.over = got[1] if self.over is None else self.over + got[1]

    def shares(self) -> dict[str, tuple[float, float]]:
        """{group: (share on the objects added, share on the training objects)}; empty without a scene check."""
        if self.scorer is None or not self.objects:
            return {}
        train = self.scorer.fusion__check_train.cpu().numpy()
        return {name: (float(self.over[g] / self.objects), float(train[g]))
                for g, name in enumerate(self.scorer.groups)}

    def metrics(self, split: str) -> dict[str, float]:
        out = {}
        for name, (here, train) in self.shares().items():
            out[f"{split}/scene_check_{name}"] = here
            out[f"train/scene_check_{name}"] = train
        return out
