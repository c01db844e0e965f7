"""Statistics a reviewer accepts: paired comparisons with both intervals, both p-values, effect sizes and
win/tie/loss counts; with 2 or more seeds a mixed model in which trained runs are a unit of replication; cases of
one patient as one unit; Holm over every comparison x label x metric of one call; verdicts that cannot overclaim;
rankings with their bootstrap stability; provenance. Inputs: salseg or nnU-Net result folders, summary.json
files, a long per-case CSV or a per-baseline table.

Records (see :data:`RECORD_KEYS`): statistics are oriented method minus reference.
"""

from __future__ import annotations

from salseg.stats.analysis import Options, analyse, analyse_cases, analyse_results, analyse_table, compare_arms
from salseg.stats.compare import comparison
from salseg.stats.corrections import CORRECTIONS, correct
from salseg.stats.csv_input import read_cases, read_table
from salseg.stats.load import LOWER_IS_BETTER_METRICS, ResultValues, load_result
from salseg.stats.ranking import rank_bootstrap, significance_map
from salseg.stats.tests import RECORD_KEYS, TESTS, check_choices, finalize, make_record, paired_test
from salseg.stats.verdicts import ONE_SEED, decide

__all__ = ["CORRECTIONS", "LOWER_IS_BETTER_METRICS", "ONE_SEED", "Options", "RECORD_KEYS", "ResultValues", "TESTS",
           "analyse", "analyse_cases", "analyse_results", "analyse_table", "check_choices", "compare_arms",
           "comparison", "correct", "decide", "finalize", "load_result",
           "make_record", "paired_test", "rank_bootstrap", "read_cases", "read_table", "significance_map"]
