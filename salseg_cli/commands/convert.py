"""``salseg convert <acdc|synapse|isic2018|cvc-clinicdb|glas|flare21|msd|folder> SRC [options]``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg.convert import (convert_acdc, convert_cvc, convert_flare21, convert_folder, convert_glas,
                            convert_isic2018, convert_msd, convert_synapse)
from salseg.convert.folder import generic_label_names, source_folders
from salseg.dataset.dataset_json import load_dataset_json
from salseg_cli.app import SalsegTyper, app, console, fail, root_dir
from salseg_cli.progress import rich_progress
from salseg_cli.tables import print_hint

convert_app = SalsegTyper(help="Convert a public dataset layout (or any image/label folder) to a raw dataset.")
app.add_typer(convert_app, name="convert")

SRC = typer.Argument(..., exists=True, file_okay=False, help="Source folder (the dataset as downloaded).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing dataset folder.")
DID = typer.Option(None, "--id", help="Dataset id (default: the dataset's standard id).")


def _spacing(text: Optional[str]) -> Optional[tuple]:
    if not text:
        return None
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        fail(f"--spacing needs three positive numbers 'z,y,x', got {text!r}")
    return tuple(values)


def _run(fn, *args, **kwargs) -> Path:
    with rich_progress() as progress:
        out = fn(*args, root=root_dir(), progress=progress, **kwargs)
    console.print(f"[green]wrote[/green] {out}", highlight=False, soft_wrap=True)
    print_hint(console, "check it with:", f"salseg check {out.name}")
    return out


@convert_app.command("acdc")
def acdc(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID,
         spacing: Optional[str] = typer.Option(None, "--spacing", help="z,y,x spacing for the MT-UNet npz form "
                                               "(default 10,1.5625,1.5625).")) -> None:
    """ACDC: official layout (training/patientNNN/) or MT-UNet npz form (train/, valid/, test/, lists_ACDC/)."""
    _run(convert_acdc, src, overwrite=overwrite, dataset_id=dataset_id, spacing=_spacing(spacing))


@convert_app.command("synapse")
def synapse(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID,
            protocol: str = typer.Option("13", "--protocol", help="13 (official labels) or 8organ (TransUNet)."),
            spacing: Optional[str] = typer.Option(None, "--spacing", help="z,y,x spacing for the TransUNet "
                                                  "npz/h5 form (default 3,0.76,0.76).")) -> None:
    """Synapse multi-organ CT: RawData/Training/{img,label} or TransUNet train_npz + test_vol_h5."""
    _run(convert_synapse, src, protocol=protocol, overwrite=overwrite, dataset_id=dataset_id,
         spacing=_spacing(spacing))


@convert_app.command("isic2018")
def isic2018(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID,
             validation_to_train: bool = typer.Option(False, "--validation-to-train",
                                                      help="Put the Validation split into imagesTr.")) -> None:
    """ISIC 2018 Task 1: ISIC2018_Task1-2_<Split>_Input + ISIC2018_Task1_<Split>_GroundTruth."""
    _run(convert_isic2018, src, validation_to_train=validation_to_train, overwrite=overwrite, dataset_id=dataset_id)


@convert_app.command("cvc-clinicdb")
def cvc_clinicdb(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID,
                 sequences: Optional[Path] = typer.Option(None, "--sequences", dir_okay=False,
                                                          help="CSV of [sequence,]first,last frame per video.")
                 ) -> None:
    """CVC-ClinicDB: Original/ + Ground Truth/ (TIF) or PNG/Original + PNG/Ground Truth."""
    _run(convert_cvc, src, sequences_csv=sequences, overwrite=overwrite, dataset_id=dataset_id)


@convert_app.command("glas")
def glas(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID) -> None:
    """GlaS: train_N.bmp + train_N_anno.bmp (+ testA/testB, Grade.csv) or Image/CaseN.bmp + Label/CaseN_label.bmp."""
    _run(convert_glas, src, overwrite=overwrite, dataset_id=dataset_id)


@convert_app.command("flare21")
def flare21(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID) -> None:
    """FLARE 2021: TrainingImg/train_NNN_0000.nii.gz + TrainingMask/train_NNN.nii.gz."""
    _run(convert_flare21, src, overwrite=overwrite, dataset_id=dataset_id)


@convert_app.command("msd")
def msd(src: Path = SRC, overwrite: bool = OVERWRITE, dataset_id: Optional[int] = DID,
        regions: bool = typer.Option(False, "--regions", help="Task01_BrainTumour: write BraTS regions (whole "
                                     "tumour, tumour core, enhancing tumour) instead of the three labels.")) -> None:
    """Medical Segmentation Decathlon: TaskNN_Name/{dataset.json, imagesTr, labelsTr, imagesTs} (4D split)."""
    _run(convert_msd, src, regions=regions, overwrite=overwrite, dataset_id=dataset_id)


@convert_app.command("folder", aliases={"--label-name": "--label-names"})
def folder(
    src: Optional[Path] = typer.Argument(None, file_okay=False,
                                         help="Folder holding Image/ and Label/ (optional with --images/--labels)."),
    images: Optional[Path] = typer.Option(None, "--images", file_okay=False, help="Image folder."),
    labels: Optional[Path] = typer.Option(None, "--labels", file_okay=False, help="Label folder."),
    label_suffix: str = typer.Option("_label", "--label-suffix", help="Label name = image name + suffix."),
    image_glob: Optional[str] = typer.Option(None, "--image-glob", help="Only image files matching this pattern."),
    label_glob: Optional[str] = typer.Option(None, "--label-glob", help="Only label files matching this pattern."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: from the folder name)."),
    binary: bool = typer.Option(False, "--binary", help="Foreground = every label value > 0."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Channel name: CT, MRI, ... (CT: CT norm)."),
    label_name: Optional[List[str]] = typer.Option(None, "--label-names", help="VALUE=NAME pairs, space-separated, "
                                                   "e.g. 1=femur 2=tibia (default: label_1, label_2, ...)."),
    overwrite: bool = OVERWRITE,
    dataset_id: Optional[int] = typer.Option(None, "--id", help="Dataset id (default: next free id >= 500)."),
) -> None:
    """Any image folder + label folder whose file names pair up (knee, GlaS subset, spine CT ...)."""
    images, labels = source_folders(src, images, labels)
    names = {}
    for item in label_name or []:
        value, _, text = item.partition("=")
        if not value.strip().lstrip("-").isdigit() or not text.strip():
            fail(f"--label-names must look like 1=femur, got {item!r}")
        names[int(value)] = text.strip()
    out = _run(convert_folder, images, labels, name=name, label_suffix=label_suffix, image_glob=image_glob,
               label_glob=label_glob, binary=binary, modality=modality, label_names=names, overwrite=overwrite,
               dataset_id=dataset_id)
    generic = generic_label_names(load_dataset_json(out).labels)
    if generic:
        which = ", ".join(f"label_{v}" for v in generic)
        print_hint(console, f"{which}: no name{'s' if len(generic) > 1 else ''} given, so tables and plots show "
                            f"{'these' if len(generic) > 1 else 'this'}; to name them, run the same command again with",
                   "--label-names " + " ".join(f"{v}=NAME" for v in generic) + " --overwrite")
