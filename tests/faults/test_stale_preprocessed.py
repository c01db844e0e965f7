"""Fault 2: preprocessed data made with other plans is redone by `preprocess` and refused by `train`.
Fault 8 (SIGKILL): temp files and the lock of a killed preprocess are cleaned up by the next run."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from salseg import results as R
from salseg.fileio import read_json, read_npz
from salseg.lock import LOCK_NAME
from tests.faults.helpers import DS, NAME, TRAIN, cli, flat, one_line_error


def _respace(root, spacing):
    path = R.plans_file(root, DS)
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["spacing"] = spacing
    path.write_text(json.dumps(plans))


def test_replanned_spacing_is_redone_and_train_refuses_stale(planned_root):
    root = planned_root
    folder = R.config_dir(root, DS, "2d")
    old_shape = read_npz(folder / "case0.npz")["data"].shape
    _respace(root, [0.5, 0.5])
    r = cli("train", NAME, "unet", "-c", "2d", *TRAIN, root=root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "other plans" in line and "'2d'" in line and f"salseg preprocess {DS} -c 2d" in line, line
    assert not R.fold_dir(root, DS, "unet", "none", "2d", 0).joinpath(R.CHECKPOINT_LATEST).exists()

    r = cli("preprocess", NAME, "-c", "2d", root=root)
    assert r.exit_code == 0, r.output
    assert "4 case file(s) written, 4 redone (made with other plans), 0 already done" in flat(r), r.output
    new = read_npz(folder / "case0.npz")["data"]
    assert new.shape[2:] == tuple(2 * s for s in old_shape[2:])         # 1 mm -> 0.5 mm in-plane
    assert read_json(folder / "case0.json")["spacing"][1:] == [0.5, 0.5]
    r = cli("preprocess", NAME, "-c", "2d", root=root)
    assert "0 case file(s) written, 4 already done" in flat(r), r.output


def test_case_without_hash_is_redone(planned_root):
    folder = R.config_dir(planned_root, DS, "2d")
    props = read_json(folder / "case1.json")
    props.pop("plans_hash")
    (folder / "case1.json").write_text(json.dumps(props))
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert r.exit_code == 0 and "1 redone (no plans hash recorded" in flat(r), r.output


def test_patch_size_change_keeps_data(planned_root):
    path = R.plans_file(planned_root, DS)
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["batch_size"] += 1                    # not a preprocessing field
    path.write_text(json.dumps(plans))
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert "0 case file(s) written, 4 already done" in flat(r), r.output


KILL = textwrap.dedent("""
    import contextlib, os, signal, sys
    import salseg.fileio as F
    real = F.atomic_path

    @contextlib.contextmanager
    def dying(path, suffix=None):
        with real(path, suffix) as tmp:
            yield tmp
            if str(path).endswith("case2.json"):
                os.kill(os.getpid(), signal.SIGKILL)   # killed between writing the temp file and renaming it

    F.atomic_path = dying
    from salseg.preprocess import preprocess_dataset
    preprocess_dataset(sys.argv[1], "Fault", configs=["2d"], force=True)
""")


def test_sigkill_leftovers_cleaned(planned_root):
    folder = R.config_dir(planned_root, DS, "2d")
    p = subprocess.run([sys.executable, "-c", KILL, str(planned_root)], capture_output=True, text=True)
    assert p.returncode == -9, p.stderr
    left = sorted(q.name for q in folder.glob(".*"))
    assert LOCK_NAME in left and any(n.startswith(".case2.json.") and ".part" in n for n in left), left
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)          # takes over the dead run's lock
    assert r.exit_code == 0, r.output
    assert "removed 1 temporary file(s) left by an interrupted run" in flat(r), r.output
    assert sorted(q.name for q in folder.glob(".*")) == []
    assert np.isfinite(read_npz(folder / "case2.npz")["data"]).all()
