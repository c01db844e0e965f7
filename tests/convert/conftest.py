"""Fixture helpers for the converter tests: tiny images written in the exact public layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

OBLIQUE = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # a permutation: non-identity, exactly representable


def _write(path: Path, arr: np.ndarray, spacing=None, origin=None, direction=None, vector=False) -> sitk.Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr, isVector=vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    if origin is not None:
        img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return img


@pytest.fixture
def write_img():
    """write_img(path, array, spacing=(x,y,z), origin=..., direction=..., vector=False) -> sitk.Image"""
    return _write


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def geometry(path: Path) -> tuple:
    img = sitk.ReadImage(str(path))
    return img.GetSpacing(), img.GetOrigin(), img.GetDirection(), img.GetSize()


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
