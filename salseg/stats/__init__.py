"""Statistics a reviewer accepts: paired comparisons with both intervals, both p-values, effect sizes and
win/tie/loss counts; Holm over every comparison x label x metric of one call; verdicts that cannot overclaim;
rankings with their bootstrap stability; seeds; provenance. Inputs: salseg or nnU-Net result folders, summary.json
files, a long per-case CSV or a per-baseline table.

Records (see :data:`RECORD_KEYS`): statistics are oriented method minus reference.
"""

from __future__ import annotations

from salseg.stats.analysis import (Options, analyse_cases, analyse_results, analyse_table, compare_arms,
                                   read_cases)
from salseg.stats.corrections import CORRECTIONS, correct
from salseg.stats.load import LOWER_IS_BETTER_METRICS, ResultValues, load_result
from salseg.stats.ranking import rank_bootstrap, significance_map
from salseg.stats.tables import read_table
from salseg.stats.tests import RECORD_KEYS, TESTS, check_choices, finalize, make_record, paired_test
from salseg.stats.verdicts import decide

__all__ = ["CORRECTIONS", "LOWER_IS_BETTER_METRICS", "Options", "RECORD_KEYS", "ResultValues", "TESTS",
           "analyse_cases", "analyse_results", "analyse_table", "check_choices", "compare_arms",
           "correct", "decide", "finalize", "load_result", "make_record", "paired_test",
           "rank_bootstrap", "read_cases", "read_table", "significance_map"]
