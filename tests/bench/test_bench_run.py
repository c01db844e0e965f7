"""`salseg bench run`: a tiny raw dataset planned and preprocessed here, unet + none / lstmsa (2.5d) x 1 fold x 1 epoch,
locally and with a local Ray; results.csv against the fold summaries, table.md against salseg.stats / scipy,
report.html self-contained; finished combinations skipped on a re-run; invalid pairs reported."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import shutil

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from salseg import results as R
from salseg.bench.grid import bench_run, plan_grid
from salseg.errors import SalsegError
from salseg.train import TrainSettings
from salseg_cli.main import app

torch.set_num_threads(1)

NAME = "Tiny"
SHAPE = (4, 32, 32)
LABELS = {"background": 0, "disc": 1, "square": 2}
TRAIN = dict(seeds=[0], settings=TrainSettings(epochs=1, iters_per_epoch=2, width=4, device="cpu", workers=0,
                                                batch_size=2, options={"features": 4}))


def make_tiny_dataset(root, cases: int = 6, seed: int = 0) -> str:
    """``cases`` volumes of 4 x 32 x 32 (3 x 1 x 1 mm), two cases per group; planned and preprocessed (2d data)."""
    from salseg.convert.common import DatasetWriter, array_image
    from salseg.plan import plan_dataset
    from salseg.preprocess import preprocess_dataset

    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    with DatasetWriter(root, NAME, 951, explicit_id=True) as w:
        for i in range(cases):
            seg = np.zeros(SHAPE, np.uint8)
            cy, cx, r = rng.integers(11, 21), rng.integers(11, 21), rng.integers(5, 8)
            seg[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = 1
            sy, sx = rng.integers(1, 5), rng.integers(1, 5)
            seg[(z >= 1) & (y >= sy) & (y < sy + 6) & (x >= sx) & (x < sx + 6)] = 2
            img = rng.normal(100, 10, SHAPE) + np.where(seg == 1, 80, np.where(seg == 2, 40, 0))
            w.add_case(f"tiny_{i:03d}", [array_image(img.astype(np.int16), (3.0, 1.0, 1.0))],
                       array_image(seg, (3.0, 1.0, 1.0)), group=f"g{i // 2}")
        w.finish({"0": "MRI"}, LABELS)
    plan_dataset(root, NAME)
    preprocess_dataset(root, NAME, configs=["2.5d"])
    return "Dataset951_Tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return root, make_tiny_dataset(root)


def _summary(root, ds, module):
    return json.loads((R.fold_dir(root, ds, "unet", module, "2.5d", 0) / "validation" / "summary.json").read_text())


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_outputs(root, ds, name, invalid=False):
    out = R.bench_dir(root, name)
    # results.csv: one row per combination, values equal the fold summaries
    rows = _rows(out / "results.csv")
    assert [(r["network"], r["module"], r["fold"]) for r in rows] == [("unet", "none", "0"), ("unet", "lstmsa", "0")]
    assert list(rows[0]) == ["dataset", "network", "module", "config", "position", "fold", "seed", "n_cases",
                             "dice_1", "dice_2", "dice_mean", "hd95_1", "hd95_2", "hd95_mean"]
    assert [r["seed"] for r in rows] == ["0", "0"]
    for r in rows:
        s = _summary(root, ds, r["module"])
        assert int(r["n_cases"]) == len(s["metric_per_case"]) == 2
        for m, key in (("dice", "Dice"), ("hd95", "HD95")):
            for lab in ("1", "2"):
                assert float(r[f"{m}_{lab}"]) == pytest.approx(s["mean"][lab][key], rel=1e-5, nan_ok=True)
            assert float(r[f"{m}_mean"]) == pytest.approx(s["foreground_mean"][key], rel=1e-5, nan_ok=True)
    # significance = a direct paired t-test on the per-case mean foreground Dice (one comparison: Holm = raw p)
    per_case = {}
    for module in ("none", "lstmsa"):
        per_case[module] = {c["prediction_file"]: np.nanmean([c["metrics"][k]["Dice"] for k in ("1", "2")])
                            for c in _summary(root, ds, module)["metric_per_case"]}
    # ... of each patient's cases averaged first (dataset.json groups: two cases per patient)
    patients = sorted({int(c[5:8]) // 2 for c in per_case["none"]})
    a, b = ([np.mean([v for c, v in per_case[m].items() if int(c[5:8]) // 2 == g]) for g in patients]
            for m in ("lstmsa", "none"))
    bench = json.loads((out / "bench.json").read_text())
    (rec,) = bench["stats"]
    assert rec["method"] == "unet__lstmsa__2.5d" and rec["reference"] == "unet__none__2.5d"
    assert rec["n"] == len(patients) == 1 and rec["n_cases"] == 2 and rec["unit"] == "patient"
    assert rec["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    if len(a) > 1 and np.ptp(np.subtract(a, b)) > 0:
        assert rec["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and rec["p_corrected"] == rec["p"]
    # table.md: mean ± std, increase over none, verdict, efficiency, the invalid pair
    md = (out / "table.md").read_text()
    d_none, d_mod = (float(r["dice_mean"]) for r in rows)
    assert f"| unet | none | 0 | 0 | 2 | {d_none:.3f} ± – | – |" in md
    assert f"| unet | lstmsa | 0 | 0 | 2 | {d_mod:.3f} ± – | {d_mod - d_none:+.3f} |" in md
    assert rec["verdict"] in md and "## Efficiency" in md and "1x3x1x32x32" in md
    assert ("invalid pair unet + reca" in md) == invalid
    eff = {e["module"]: e for e in bench["efficiency"]}
    assert eff["lstmsa"]["params"] > eff["none"]["params"] > 0
    # report.html: self-contained (no external src/href), every image an embedded PNG
    page = (out / "report.html").read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert links and all(v.startswith("data:image/png;base64,") for v in links)
    assert "url(" not in page and "@import" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3  # bar chart, training curves, overlays
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "unet__lstmsa__2.5d/fold_0" in page and f"{d_mod:.3f}" in page
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    # one seed per arm and 1 patient: every verdict output says so (salseg.stats' one decision)
    from salseg.stats import ONE_SEED

    assert rec["verdict"] == "not separable" and rec["verdict_reason"] == "too few pairs (n=1; need at least 2)"
    assert ONE_SEED in rec["warnings"]
    for text in (md, (out / "stats.md").read_text(), html.unescape(page)):
        assert ONE_SEED in text and "n too small: 1 patient (a verdict needs at least 6)" in text


def test_bench_run_local_rerun_and_ray(tiny):
    root, ds = tiny
    out = bench_run(root, NAME, ["unet"], ["none", "lstmsa", "reca"], config="2.5d", folds=[0], name="local",
                    efficiency_repeats=1, **TRAIN)
    grid = out["grid"]
    assert [c.module for c in grid.trained] == ["none", "lstmsa"] and not grid.skipped and not grid.failed
    assert grid.invalid == [{"network": "unet", "module": "reca",
                             "reason": "reca replaces self-attention, and unet has no self-attention"}]
    check_outputs(root, ds, "local", invalid=True)
    final = R.fold_dir(root, ds, "unet", "none", "2.5d", 0) / "checkpoint_final.pt"
    stamp = final.stat().st_mtime_ns
    cfg = json.loads((final.parent.parent.parent / "unet__lstmsa__2.5d" / "fold_0" / "config.json").read_text())
    assert cfg["options"] == {"width": 4, "features": 4}  # the module option reached only the module
    assert "features" not in json.loads((final.parent / "config.json").read_text())["options"]

    # re-run through the CLI (space-separated multi-values): everything finished is skipped
    res = CliRunner().invoke(app, ["--root", str(root), "bench", "run", NAME, "--networks", "unet", "--modules",
                                   "none", "lstmsa", "--config", "2.5d", "--folds", "0", "--epochs", "1",
                                   "--width", "4", "--name", "again", "-q"])
    assert res.exit_code == 0, res.output
    assert "trained 0, skipped 2 finished" in res.output and "report_html" in res.output
    assert "run with --seeds 0 1 2 to measure seed noise" in " ".join(res.output.split())
    assert final.stat().st_mtime_ns == stamp
    check_outputs(root, ds, "again")

    # Ray executor (a local Ray started by the executor): only the removed combination is trained again
    shutil.rmtree(R.experiment_dir(root, ds, "unet", "lstmsa", "2.5d"))
    out = bench_run(root, NAME, ["unet"], ["none", "lstmsa"], config="2.5d", folds=[0], name="ray", executor="ray",
                    ray_num_cpus=1, efficiency_repeats=1, **TRAIN)
    grid = out["grid"]
    assert [c.module for c in grid.trained] == ["lstmsa"] and [c.module for c in grid.skipped] == ["none"]
    assert not grid.failed
    check_outputs(root, ds, "ray")
    import ray
    assert not ray.is_initialized()  # the executor shut down the Ray it started


def test_bad_input(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(SalsegError, match="unknown module 'nope'"):
        plan_grid(["unet"], ["nope"], [0], "2d")
    with pytest.raises(SalsegError, match="no valid network \\+ module combination"):
        bench_run(root, NAME, ["unet"], ["reca"], config="2.5d")
    with pytest.raises(SalsegError, match="fold 7 does not exist"):
        bench_run(root, NAME, ["unet"], ["none"], config="2.5d", folds=[7])
    with pytest.raises(SalsegError, match="no configuration '3d_fullres'|preprocessed"):
        bench_run(root, NAME, ["unet"], ["none"], config="3d_fullres")
    res = CliRunner().invoke(app, ["--root", str(tmp_path), "bench", "run", "Nope", "--networks", "unet"])
    assert res.exit_code != 0 and "Traceback" not in res.output and "error" in res.output
    res = CliRunner().invoke(app, ["--root", str(root), "bench", "run", NAME, "--networks", "unet", "--executor",
                                   "slurm"])
    assert res.exit_code == 2 and "unknown executor 'slurm'" in res.output
    with pytest.raises(SalsegError, match="plain folder name"):
        from salseg.bench.report import check_name
        check_name("../x")
