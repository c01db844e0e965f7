"""Large cohorts (salseg.infer.distributed): ``--continue`` after a kill mid-cohort finishes with the same outputs;
``--num-parts N --part-id I`` parts cover every case exactly once; the Ray executor on a local Ray (failures
recorded, the other cases finished)."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg import results
from salseg.infer.distributed import part_of
from salseg.infer.predictor import Predictor
from tests.infer.test_model_package import assert_same, outputs

DATASET = "Dataset901_InferToy"  # as in conftest.py
ARGS = ["predict", DATASET, "unet", "-c", "3d_fullres", "--device", "cpu", "-q", "--no-mirroring",
        "--save-probabilities"]


def cli(root, *args):
    from salseg_cli.main import app

    r = CliRunner().invoke(app, ["--root", str(root), *args])
    return r.exit_code, " ".join(r.output.split())


@pytest.fixture
def cohort(toy_root, tmp_path):
    """(root, a folder of 5 cases, the reference prediction of all of them in one run)."""
    src = results.raw_dir(toy_root, DATASET) / "imagesTs"
    folder = tmp_path / "cohort"
    folder.mkdir()
    for i in range(5):
        shutil.copy(src / f"case{i % 2}_0000.nii.gz", folder / f"p{i}_0000.nii.gz")
    ref = tmp_path / "ref"
    code, text = cli(toy_root, *ARGS, "-i", str(folder), "-o", str(ref))
    assert code == 0, text
    return toy_root, folder, outputs(ref)


class Killed(BaseException):
    pass


def test_continue_after_a_kill_finishes_with_the_same_outputs(cohort, tmp_path):
    root, folder, ref = cohort
    out = tmp_path / "out"
    pred = Predictor.from_results(root, DATASET, "unet", "none", "3d_fullres", None, device="cpu")

    def kill_after_two(what, done, total):
        if what == "predicting cases" and done == 2:
            raise Killed()

    with pytest.raises(Killed):
        pred.predict_files(folder, out, mirroring=False, save_probabilities=True, progress=kill_after_two)
    assert len(list(out.glob("*.nii.gz"))) == 2
    (out / "p2.nii.gz").write_bytes((out / "p0.nii.gz").read_bytes())  # a case with its label map only
    (out / ".p3.nii.gz.x.part.nii.gz").write_bytes(b"half")          # a temporary file the kill left
    code, text = cli(root, *ARGS, "-i", str(folder), "-o", str(out))
    assert code == 2 and "--overwrite" in text  # without --continue the finished outputs are not replaced
    code, text = cli(root, *ARGS, "-i", str(folder), "-o", str(out), "--continue")
    assert code == 0, text
    assert "wrote 3 label map(s)" in text and "skipped 2 case(s) already complete" in text
    assert_same(outputs(out), ref)
    code, text = cli(root, *ARGS, "-i", str(folder), "-o", str(out), "--continue")
    assert code == 0 and "wrote 0 label map(s)" in text and "skipped 5" in text


def test_parts_cover_every_case_exactly_once(cohort, tmp_path):
    root, folder, ref = cohort
    cases = [(f"c{i:03d}", []) for i in range(23)]
    for n in (1, 2, 3, 7, 30):
        shuffled = random.Random(n).sample(cases, len(cases))
        parts = [part_of(shuffled, n, i) for i in range(n)]
        assert sorted(c for p in parts for c in p) == sorted(cases)          # every case exactly once
        assert parts == [part_of(cases, n, i) for i in range(n)]             # whatever the listing order
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    out = tmp_path / "out"
    written = []
    for i in range(3):
        code, text = cli(root, *ARGS, "-i", str(folder), "-o", str(out), "--num-parts", "3", "--part-id", str(i))
        assert code == 0, text
        written.append(int(text.split("wrote ")[1].split()[0]))
    assert written == [2, 2, 1]
    assert_same(outputs(out), ref)
    code, text = cli(root, *ARGS, "-i", str(folder), "-o", str(tmp_path / "o2"), "--num-parts", "3", "--part-id", "3")
    assert code == 2 and "--part-id must be in 0..2" in text


def flaky(source):
    """A predictor (rebuilt on the Ray worker) that fails for case p3."""
    pred = Predictor.from_source(source)
    real = pred._predict_into

    def predict_into(cases, *args, **kwargs):
        if cases[0][0] == "p3":
            raise RuntimeError("boom on p3")
        return real(cases, *args, **kwargs)

    pred._predict_into = predict_into
    return pred


def test_ray_executor_predicts_and_records_failures(cohort, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed: the Ray executor is not tested")
    from salseg.infer.distributed import predict_on_ray
    from salseg.infer.inputs import collect_cases

    root, folder, ref = cohort
    pred = Predictor.from_results(root, DATASET, "unet", "none", "3d_fullres", None, device="cpu")
    out = tmp_path / "ray"
    written = pred.predict_files(folder, out, mirroring=False, save_probabilities=True, executor="ray",
                                 ray_num_cpus=1)
    assert len(written) == 5 and written.failed == []
    assert_same(outputs(out), ref)
    assert not ray.is_initialized()  # the Ray it started is shut down

    out2 = tmp_path / "ray2"
    out2.mkdir()
    cases = collect_cases(folder, ".nii.gz", 1)
    kwargs = dict(step=0.5, mirroring=False, save_probabilities=False, diffusion=None, progress=None)
    files, failed = predict_on_ray(flaky, pred.source, cases, out2, kwargs, num_cpus=1)
    assert [c for c, _ in failed] == ["p3"] and "boom on p3" in failed[0][1]
    assert sorted(p.name for p in files) == [f"p{i}.nii.gz" for i in (0, 1, 2, 4)]
    for name in ("p0.nii.gz", "p4.nii.gz"):
        np.testing.assert_array_equal(outputs(out2)[name], ref[name])


def test_a_model_predictor_rebuilds_from_its_source(cohort, tmp_path):
    # what a Ray worker does with the driver's predictor: --model's source must rebuild the same predictor
    # (it once failed on every case: from_model got the keyword 'model' instead of its path)
    root, folder, ref = cohort
    pred = Predictor.from_model(results.experiment_dir(root, DATASET, "unet", "none", "3d_fullres"), device="cpu")
    again = Predictor.from_source(pred.source)
    assert again.source == pred.source and again.fold_names == pred.fold_names
    out = tmp_path / "again"
    again.predict_files(folder, out, mirroring=False, save_probabilities=True)
    assert_same(outputs(out), ref)
