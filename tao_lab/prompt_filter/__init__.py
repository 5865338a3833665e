"""Prompt filters: anomalous boxes -> segmenter prompts (the rules and the artifact: tao_lab.prompt_filter.filter)."""
from tao_lab.prompt_filter.filter import PassThroughPromptFilter, PromptFilter, RobustPromptFilter
from tao_lab.prompt_filter.geometry import (MatchRule, box_centers, box_iou, center_distance, merge_any_overlap,
                                            merge_iou)

__all__ = ["PromptFilter", "RobustPromptFilter", "PassThroughPromptFilter", "MatchRule", "box_iou", "box_centers",
           "center_distance", "merge_any_overlap", "merge_iou"]
