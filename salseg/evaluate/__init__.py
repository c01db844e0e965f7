"""Evaluation: one spacing-aware metrics implementation, a folder/array evaluator and summary.json."""

from salseg.evaluate.evaluator import evaluate_arrays, evaluate_folders, list_images
from salseg.evaluate.metrics import (
    ALL_METRICS,
    EMPTY_RULES,
    LOWER_IS_BETTER,
    METRIC_KEYS,
    assd,
    binary_metrics,
    dice,
    hd95,
    label_metrics,
    nsd,
)
from salseg.evaluate.summary import build_summary, case_id_of, write_summary

__all__ = ["ALL_METRICS", "EMPTY_RULES", "LOWER_IS_BETTER", "METRIC_KEYS", "assd", "binary_metrics", "build_summary",
           "case_id_of", "dice", "evaluate_arrays", "evaluate_folders", "hd95", "label_metrics", "list_images", "nsd",
           "write_summary"]
