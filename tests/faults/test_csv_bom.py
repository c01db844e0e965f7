"""Round 3: a CSV saved with a byte-order mark (as spreadsheets write it) reads like one without (the first column
was reported missing)."""

import numpy as np

from tests.faults.helpers import cli, flat


def _cases_csv(path, bom: bool):
    rng = np.random.default_rng(0)
    rows = ["case,method,value"]
    for i in range(8):
        base = rng.uniform(0.6, 0.8)
        rows += [f"c{i},ref,{base:.4f}", f"c{i},new,{base + rng.uniform(0.0, 0.1):.4f}"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


def test_case_table_with_byte_order_mark(tmp_path):
    plain, marked = _cases_csv(tmp_path / "plain.csv", False), _cases_csv(tmp_path / "marked.csv", True)
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    a, b = cli("stats", "--cases", plain, "--reference", "ref"), cli("stats", "--cases", marked, "--reference", "ref")
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    assert flat(b).replace("marked.csv", "plain.csv") == flat(a)
