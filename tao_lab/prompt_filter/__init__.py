"""Prompt filters: anomalous boxes -> segmenter prompts (see tao_lab.prompt_filter.filter for the rules and artifact)."""
from tao_lab.prompt_filter.filter import PassThroughPromptFilter, PromptFilter, RobustPromptFilter
from tao_lab.prompt_filter.geometry import MatchRule, box_centers, box_iou, center_distance, merge_any_overlap, merge_iou

__all__ = ["PromptFilter", "RobustPromptFilter", "PassThroughPromptFilter", "MatchRule", "box_iou", "box_centers",
           "center_distance", "merge_any_overlap", "merge_iou"]
