"""tests/preprocess shares the raw-dataset helpers of tests/plan (rawdata_helpers.py)."""

import sys
from pathlib import Path

_PLAN_TESTS = str(Path(__file__).resolve().parents[1] / "plan")
if _PLAN_TESTS not in sys.path:
    sys.path.insert(0, _PLAN_TESTS)
