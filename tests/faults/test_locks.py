"""Fault 6: two trainings of one fold (or two preprocess runs of one configuration) never run at once."""

import json
import os
import socket
import subprocess
import sys
import time

from salseg import results as R
from salseg.lock import LOCK_NAME
from tests.faults.helpers import DS, NAME, TRAIN, cli, one_line_error

TRAIN_LONG = [a if a != "1" else "4" for a in TRAIN[:4]] + TRAIN[4:]   # --epochs 4


def _epochs(fold):
    return [json.loads(line)["epoch"] for line in (fold / R.LOG_JSONL).read_text().splitlines()]


def test_two_concurrent_trainings_of_one_fold(planned_root):
    fold = R.fold_dir(planned_root, DS, "unet", "none", "2d", 0)
    args = [sys.executable, "-m", "salseg_cli", "--root", str(planned_root), "train", NAME, "unet", "-c", "2d",
            "--iters-per-epoch", "1", "--val-every", "100", *TRAIN_LONG]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (fold / LOCK_NAME).exists():
            assert first.poll() is None, first.stdout.read()
            assert time.time() < deadline
            time.sleep(0.05)
        second = cli("train", NAME, "unet", "-c", "2d", *TRAIN, root=planned_root)
        assert first.poll() is None, "the first run ended before the second was tried; the test proves nothing"
        assert second.exit_code == 2, second.output
        line = one_line_error(second)
        assert f"pid {first.pid} on {socket.gethostname()}" in line and str(fold / LOCK_NAME) in line, line
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert _epochs(fold) == list(range(1, 5))                     # one run's log, not interleaved
    assert not (fold / LOCK_NAME).exists()                          # released on exit


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_of_a_dead_process_is_taken_over(planned_root):
    fold = R.fold_dir(planned_root, DS, "unet", "none", "2d", 0)
    fold.mkdir(parents=True)
    (fold / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": 0}))
    r = cli("train", NAME, "unet", "-c", "2d", *TRAIN, root=planned_root)
    assert r.exit_code == 0, r.output
    assert _epochs(fold) == [1] and not (fold / LOCK_NAME).exists()


def test_lock_from_another_host_or_live_process_refused(planned_root):
    folder = R.config_dir(planned_root, DS, "2d")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for holder in ({"pid": 1, "host": "elsewhere", "time": 0},
                       {"pid": sleeper.pid, "host": socket.gethostname(), "time": 0}):
            (folder / LOCK_NAME).write_text(json.dumps(holder))
            r = cli("preprocess", NAME, "-c", "2d", "--force", root=planned_root)
            assert r.exit_code == 2, r.output
            line = one_line_error(r)
            assert f"pid {holder['pid']} on {holder['host']}" in line and "in use by another salseg run" in line
    finally:
        sleeper.kill()
        sleeper.wait()
    r = cli("preprocess", NAME, "-c", "2d", "--force", root=planned_root)   # its process is gone now
    assert r.exit_code == 0, r.output
    assert not (folder / LOCK_NAME).exists()


def test_refused_run_leaves_no_folder(planned_root):
    path = R.plans_file(planned_root, DS)
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["spacing"] = [0.5, 0.5]           # stale data: train refuses
    path.write_text(json.dumps(plans))
    r = cli("train", NAME, "unet", "-c", "2d", *TRAIN, root=planned_root)
    assert r.exit_code == 2
    assert not R.fold_dir(planned_root, DS, "unet", "none", "2d", 0).exists()
