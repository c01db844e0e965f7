"""A tiny real pipeline for the fault suite: raw dataset (4 cases of 6 x 16 x 16) -> plan -> preprocess -> a trained
fold (1 epoch of 2 iterations, width 4), made once per session and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.plan.rawdata_helpers import blob_case, write_raw_dataset

DS = "Dataset001_Fault"
NAME = "Fault"
SHAPE = (6, 16, 16)
TRAIN = ["--device", "cpu", "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--width", "4",
         "--patch-size", "16", "16", "--workers", "0", "-q"]


def cli(*args: str, root: Path | None = None):
    """Run the salseg CLI in-process; returns the click Result (exit_code, output with stderr mixed in)."""
    from salseg_cli.main import app

    full = (["--root", str(root)] if root is not None else []) + [str(a) for a in args]
    return CliRunner().invoke(app, full, catch_exceptions=True)


def raw_dataset(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    cases = [blob_case(f"case{i}", SHAPE, (3.0, 1.0, 1.0), rng) for i in range(n)]
    return write_raw_dataset(root, NAME, cases)


def planned(root: Path) -> Path:
    raw_dataset(root)
    for args in (("plan", NAME), ("preprocess", NAME, "-c", "2d")):
        r = cli(*args, root=root)
        assert r.exit_code == 0, r.output
    return root


def trained(root: Path, *extra: str) -> Path:
    planned(root)
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", "--keep-latest", *TRAIN, *extra, root=root)
    assert r.exit_code == 0, r.output
    return root


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def one_line_error(result) -> str:
    """The CLI's error line; asserts there is no traceback."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert lines, result.output
    return lines[0]


def flat(result) -> str:
    """The CLI output with rich's line wrapping undone (whitespace runs -> one space)."""
    return " ".join(result.output.split())
