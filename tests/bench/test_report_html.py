"""report.html: verdict box first, per-case paired plot, ranking, efficiency, robustness, training times, overlays
with a colour key -- one self-contained file. Checked by parsing the HTML (section order, no external URL, every
image decodes), on inputs built here (no training)."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib import image as mpimg

from salseg.bench import report_html as H
from salseg.stats import finalize, make_record, paired_test

ORDER = ["verdict", "paired", "results", "ranking", "efficiency", "robustness", "training", "overlays", "notes"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.urls, self.images, self.meta, self.scroll_tables = [], [], [], [], 0
        self._in_scroll = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a["src"])
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "meta":
            self.meta.append(a)
        if tag == "div" and a.get("class") == "scroll":
            self._in_scroll = True
        if tag == "table" and self._in_scroll:
            self.scroll_tables += 1
            self._in_scroll = False


def _inputs(tmp_path):
    rng = np.random.default_rng(0)
    cases = [f"c{i}" for i in range(4)]
    base = rng.uniform(0.6, 0.8, 4)
    values = {"unet__none__2d": dict(zip(cases, base)),
              "unet__lstmsa__2d": dict(zip(cases, base + rng.uniform(0.01, 0.05, 4))),
              "unet__stack__2d": dict(zip(cases, base + rng.normal(0, 0.02, 4)))}
    recs = []
    for m in ("unet__lstmsa__2d", "unet__stack__2d"):
        a, b = [values[m][c] for c in cases], [values["unet__none__2d"][c] for c in cases]
        recs.append(make_record(dataset="D", method=m, reference="unet__none__2d", metric="dice", label="all",
                                lower_is_better=False, result=paired_test(a, b, n_boot=200)))
    stats = finalize(recs)
    summary = [{"network": "unet", "module": m.split("__")[1], "position": None, "dice_mean": float(np.mean(
        list(v.values())))} for m, v in values.items()]
    eff = [{"network": "unet", "module": s["module"], "position": None, "latency_ms": 5.0 + i, "flops": 1e9 * (i + 1)}
           for i, s in enumerate(summary)]
    rob = {"unet__lstmsa__2d": {"conditions": [{"name": "clean", "n_cases": 4, "dice": 0.8, "dice_drop": 0.0,
                                                 "hd95": 3.0, "hd95_increase": 0.0},
                                                {"name": "noise_0.1", "n_cases": 4, "dice": 0.7, "dice_drop": 0.1,
                                                 "hd95": 5.0, "hd95_increase": 2.0}]}}
    figures = {"stats": stats, "paired": H.paired_plot(stats, values), "efficiency": H.efficiency_plot(summary, eff),
               "ranking": H.ranking_figures(stats, values, tmp_path), "robustness": rob,
               "empty": {"unet__stack__2d": {"cases": 4, "empty_cases": ["c1.nii.gz"], "missed": 2}},
               "seconds": {"unet__none__2d": 12.0, "unet__lstmsa__2d": 30.5},
               "overlays": [("unet + none · c0 slice 2 · the prediction is EMPTY", H.paired_plot(stats, values))],
               "overlay_values": [1, 2], "names": {"1": "LV", "2": "RV"}}
    tables = [{"title": "Results", "headers": ["Network", "Module"], "rows": [["unet", "none"]],
               "note": "Δ: the network's `none` subtracted."},
              {"title": "Efficiency (model as trained)", "headers": ["Network", "Params"], "rows": [["unet", "1"]],
               "note": "latency"}]
    return stats, tables, figures


def test_report_sections_self_contained_and_images_decode(tmp_path):
    stats, tables, figures = _inputs(tmp_path)
    page = H.render("salseg benchmark: t", ["Dataset D, configuration 2d."], tables, figures,
                    ["invalid pair unet + `reca`: no attention"], "0 combination(s) trained in this run (0 s)")
    p = Page()
    p.feed(page)
    assert p.sections == ORDER
    assert any(m.get("name") == "viewport" and "width=device-width" in m.get("content", "") for m in p.meta)
    assert all(u.startswith("data:image/png;base64,") for u in p.urls), [u[:40] for u in p.urls]
    assert len(p.images) == 1 + 1 + 3 + 1        # paired, forest + significance + ranks, efficiency, overlay
    for src in p.images:
        arr = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert arr.ndim == 3 and arr.shape[0] > 50 and arr.shape[1] > 50
    assert p.scroll_tables == page.count("<table>")        # every table scrolls inside its box
    # the verdict box: each comparison with its interval, corrected p, n, verdict and reason, and the warnings
    box = page[page.index('id="verdict"'):page.index('id="paired"')]
    for s in stats:
        assert f"[{s['boot_ci_low']:+.4f}, {s['boot_ci_high']:+.4f}]" in box and s["verdict"] in box
        assert H.text(s["verdict_reason"]) in box
    assert "only n = 4 paired cases" in box and "1 of 4 validation prediction(s) empty (all folds and seeds), 2 structure(s) missed" in box
    # Markdown backticks become <code>, none printed literally; training times kept; robustness shown; colour key
    assert "`" not in re.sub(r"<[^>]+>", "", page) and "<code>none</code>" in page
    assert "30" in page[page.index('id="training"'):] and "log.jsonl" in page
    assert "noise_0.1" in page and "+0.1000" in page
    assert "LV</span>" in page and "reference (solid)" in page and "EMPTY" in page
    assert (tmp_path / "plots" / "forest.png").is_file() and (tmp_path / "plots" / "ranks_unet.png").is_file()


def test_report_without_comparisons_says_why(tmp_path):
    page = H.render("t", [], [{"title": "Results", "headers": ["a"], "rows": [], "note": ""}], {}, [])
    p = Page()
    p.feed(page)
    assert p.sections == ["verdict", "results", "training"] and "needs a reference arm" in page


def test_bench_seeds_feed_the_seed_model(tmp_path):
    from salseg.bench.collect import pooled_values
    from salseg.stats import Options, compare_arms
    from tests.stats.test_stats_inputs import CASES, DICE_A, _salseg_exp

    shift = {0: 0.0, 1: 0.02, 2: -0.01}
    exp = _salseg_exp(tmp_path, "unet__none__2d", DICE_A, seeds=(0, 1, 2), shift=shift)

    class Combo:
        network, module, config, position = "unet", "none", "2d", None

        def __init__(self, seed):
            self.seed = seed

        def fold_dir(self, root, dataset):
            return exp / ("fold_0" if self.seed == 0 else f"fold_0_seed{self.seed}")

    pv = pooled_values(tmp_path, "Dataset001_X", [Combo(s) for s in (0, 1, 2)])
    assert pv.n_seeds == 3 and pv.seed_sd() == pytest.approx(np.std([np.mean(DICE_A) + v for v in shift.values()],
                                                                     ddof=1))
    assert pv.values == pytest.approx({c: d + np.mean(list(shift.values())) for c, d in zip(CASES, DICE_A)})
    assert pv.seeds[1] == pytest.approx({c: d + 0.02 for c, d in zip(CASES, DICE_A)})
    # the bench's comparison of such arms is the mixed model (runs as a unit of replication)
    rec = compare_arms(pv, [pv], "dice", "all", Options(n_boot=50))[0]
    assert rec["test"] == "mixed" and rec["n_seeds_method"] == rec["n_seeds_reference"] == 3