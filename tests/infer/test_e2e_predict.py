"""End to end through the CLI: synth -> plan -> preprocess -> train 1 epoch (width 4) -> predict -> check outputs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner


def cli(root, *args):
    from salseg_cli.main import app

    r = CliRunner().invoke(app, ["--root", str(root), *args])
    assert r.exit_code == 0, f"salseg {' '.join(args)} failed:\n{r.output}"
    return r.output


@pytest.mark.parametrize("network,module,config", [
    ("unet", "none", "2d"),
    pytest.param("unet", "lstmsa", "2.5d", marks=pytest.mark.slow),  # minutes on 2 shared CPU cores
])
def test_train_then_predict(tmp_path, network, module, config):
    root = tmp_path / "root"
    cli(root, "synth", "E2E", "--cases", "5", "--id", "951")
    cli(root, "plan", "E2E", "--configs", config)
    cli(root, "preprocess", "E2E", "-c", config)
    cli(root, "train", "E2E", "-n", network, "--module", module, "--config", config, "--fold", "0", "--epochs", "1",
        "--iters-per-epoch", "1", "--batch-size", "2", "--width", "4", "--device", "cpu", "--workers", "0",
        "-q")
    raw = next((root / "raw").iterdir())
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = sorted((raw / "imagesTr").glob("*_0000.nii.gz"))[0]
    (inputs / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "out"
    text = cli(root, "predict", "E2E", "-i", str(inputs), "-o", str(out), "-n", network, "-m", module,
               "-c", config, "-f", "0", "--checkpoint", "final", "--device", "cpu", "--save-probabilities", "-q")
    assert "wrote 1 label map" in " ".join(text.split())
    case = src.name[: -len("_0000.nii.gz")]
    assert sorted(p.name for p in out.iterdir()) == [f"{case}.json", f"{case}.nii.gz", f"{case}.npz"]
    ref, got = sitk.ReadImage(str(src)), sitk.ReadImage(str(out / f"{case}.nii.gz"))
    assert (got.GetSize(), got.GetSpacing(), got.GetOrigin(), got.GetDirection()) == \
        (ref.GetSize(), ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    labels = sitk.GetArrayFromImage(got)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    probs = np.load(out / f"{case}.npz")["probabilities"]
    assert probs.shape == (4,) + labels.shape
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-4)
    np.testing.assert_array_equal(labels, probs.argmax(0))  # label values 0..3 = class indices here
