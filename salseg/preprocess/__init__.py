"""Preprocessing: crop to nonzero, resample to the planned spacing, normalise; parallel restartable runner.

``preprocess_case`` / ``revert_preprocessing`` are the two halves the predictor uses on new scans.
"""

from salseg.preprocess.runner import (labels_to_indices, preprocess_case, preprocess_dataset,
                                      revert_preprocessing)

__all__ = ["labels_to_indices", "preprocess_case", "preprocess_dataset", "revert_preprocessing"]
