"""Fixtures for tests/plan (helpers in rawdata_helpers.py)."""

import numpy as np
import pytest

from tests.plan.rawdata_helpers import blob_case, write_raw_dataset


@pytest.fixture
def acdc_like(tmp_path):
    """6 frames of 3 patients (2 frames each), mixed slice spacings 5..10 mm, in-plane 1.5 mm."""
    rng = np.random.default_rng(0)
    cases, groups = [], {}
    z_spacings = [5.0, 10.0, 6.0, 8.0, 7.5, 10.0]
    z_sizes = [10, 6, 9, 8, 8, 6]
    for i, (zs, nz) in enumerate(zip(z_spacings, z_sizes)):
        pid = f"patient{i // 2 + 1:03d}"
        cid = f"{pid}_frame{1 if i % 2 == 0 else 12:02d}"
        cases.append(blob_case(cid, (nz, 40 + 2 * i, 44), (zs, 1.5, 1.5), rng))
        groups[cid] = pid
    folder = write_raw_dataset(tmp_path, "ACDC", cases, labels={"background": 0, "RV": 1, "MYO": 2},
                               channel_names={"0": "cineMRI"}, groups=groups, dataset_id=27)
    return tmp_path, folder, cases
