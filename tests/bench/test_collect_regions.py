"""bench results.csv rows of a region dataset carry the region means beside the label means."""

import json
from types import SimpleNamespace

from salseg.bench.collect import csv_text, fold_row


def test_fold_row_region_columns(tmp_path):
    fold = tmp_path / "fold_0"
    (fold / "validation").mkdir(parents=True)
    summary = {"metric_per_case": [{}], "mean": {"1": {"Dice": 0.5, "HD95": 3.0}, "2": {"Dice": 0.25, "HD95": 4.0}},
               "foreground_mean": {"Dice": 0.375, "HD95": 3.5},
               "region_mean": {"(1, 2)": {"Dice": 0.75, "HD95": 2.0}, "(2,)": {"Dice": 0.25, "HD95": 4.0}},
               "region_foreground_mean": {"Dice": 0.5, "HD95": 3.0}}
    (fold / "validation" / "summary.json").write_text(json.dumps(summary))
    combo = SimpleNamespace(network="unet", module="none", config="2d", position="", fold=0, seed=0,
                            fold_dir=lambda root, ds: fold)
    row = fold_row(tmp_path, "Dataset902_X", combo)
    assert row["dice_region_1_2"] == 0.75 and row["dice_region_2"] == 0.25 and row["dice_region_mean"] == 0.5
    assert row["hd95_region_mean"] == 3.0 and row["dice_mean"] == 0.375
    assert "dice_region_1_2" in csv_text([row]).splitlines()[0]
