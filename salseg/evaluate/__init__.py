"""Evaluation: one spacing-aware metrics implementation, a folder/array evaluator and summary.json."""

from salseg.evaluate.definitions import (
    CATALOGUE,
    DEFAULT_METRICS,
    INSTANCE_METRICS,
    metric_definitions,
    parse_tolerance,
)
from salseg.evaluate.evaluator import evaluate_arrays, evaluate_folders, list_images, metric_options
from salseg.evaluate.instances import match_instances
from salseg.evaluate.metrics import (
    ALL_METRICS,
    EMPTY_POLICIES,
    EMPTY_RULES,
    LOWER_IS_BETTER,
    METRIC_KEYS,
    apply_empty_policy,
    assd,
    binary_metrics,
    dice,
    empty_rules,
    hd95,
    label_metrics,
    image_extent,
    nsd,
    worst_distance,
)
from salseg.evaluate.summary import build_summary, case_id_of, write_summary

__all__ = ["ALL_METRICS", "CATALOGUE", "DEFAULT_METRICS", "EMPTY_POLICIES", "EMPTY_RULES", "INSTANCE_METRICS",
           "apply_empty_policy", "empty_rules", "image_extent", "match_instances", "metric_definitions",
           "metric_options", "parse_tolerance", "worst_distance", "LOWER_IS_BETTER", "METRIC_KEYS", "assd",
           "binary_metrics", "build_summary", "case_id_of", "dice", "evaluate_arrays", "evaluate_folders", "hd95",
           "label_metrics", "list_images", "nsd", "write_summary"]
