"""The embedded default dataset: cardiac-cine-MRI-like short-axis volumes with ACDC labels.

Labels: 0 background, 1 RV (cavity), 2 myocardium (LV wall), 3 LV (cavity). Each synthetic patient has two frames,
ED (``frame01``) and ES (``frameNN``, NN in 8..14) sharing a group; at ES the LV cavity is smaller and the
myocardium thicker. Anatomy varies between patients (heart position, size, orientation, LV ellipticity, RV
size/shape) and along the long axis (slices run base -> apex: the heart narrows toward the apex and the RV
disappears before it). Distractors: body ellipse with a bright fat rim, dark lungs, tissue blobs whose
intensities overlap the classes, a smooth multiplicative bias field, a per-patient gain, partial-volume blur and
Rician noise -- so that no global threshold separates the classes, while boundaries stay visible.

Everything is vectorised numpy; a patient's random numbers come from ``default_rng([seed, patient])`` so a case
does not depend on how many cases are generated.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from salseg.dataset.naming import DATASET_RE, list_datasets, next_free_id
from salseg.errors import SalsegError

log = logging.getLogger(__name__)

DEFAULT_NAME = "SynthACDC"
DEFAULT_ID = 901
LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}


def _patient_params(rng: np.random.Generator) -> dict:
    """Geometry and appearance of one synthetic patient (ED frame; ES derived from it)."""
    return {
        "inplane": float(rng.uniform(1.3, 1.7)),
        "dz": float(rng.uniform(5.0, 10.0)),
        "nz": int(rng.integers(8, 15)),
        "ny": int(rng.integers(128, 225)),
        "nx": int(rng.integers(128, 225)),
        "es_frame": int(rng.integers(8, 15)),
        "center_off": rng.uniform(-15.0, 15.0, size=2),       # heart centre offset from FOV centre (mm)
        "drift": rng.uniform(-1.2, 1.2, size=2),              # centre drift per slice (mm)
        "theta": float(rng.uniform(-0.6, 0.6) + math.pi),     # RV direction (around "left" of the image)
        "r_lv": float(rng.uniform(20.0, 28.0)),               # ED LV cavity radius at the base (mm)
        "wall": float(rng.uniform(6.5, 9.5)),                 # ED myocardium thickness (mm)
        "ecc": float(rng.uniform(1.0, 1.18)),                 # LV ellipticity
        "rv_a": float(rng.uniform(11.0, 18.0)),                # RV half-thickness (radial, mm)
        "rv_b": float(rng.uniform(30.0, 45.0)),               # RV half-width (tangential, mm)
        "rv_extent": float(rng.uniform(0.6, 0.85)),           # fraction of the slices (from base) with RV
        "apex_len": float(rng.uniform(1.0, 1.12)),            # > 1: apex lies a bit beyond the last slice
        "body": rng.uniform(0.38, 0.46, size=2),              # body ellipse half-axes, fraction of FOV
        "gain": float(rng.uniform(300.0, 900.0)),             # arbitrary MRI units
        "noise": float(rng.uniform(0.035, 0.07)),             # Rician sigma relative to blood intensity
        "bias": rng.normal(0.0, 0.3, size=7),                # bias-field polynomial coefficients
        "blood": float(rng.uniform(0.85, 1.0)),
        "myo": float(rng.uniform(0.25, 0.35)),
        "tissue": float(rng.uniform(0.42, 0.55)),
        "n_blobs": int(rng.integers(3, 7)),
        "blob_seed": int(rng.integers(0, 2**31 - 1)),
    }


def _ellipse(u: np.ndarray, v: np.ndarray, a, b) -> np.ndarray:
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _render(p: dict, es: bool, frame_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 (Z, Y, X), label uint8 (Z, Y, X)) for one frame."""
    nz, ny, nx, s = p["nz"], p["ny"], p["nx"], p["inplane"]
    y = (np.arange(ny, dtype=np.float32) - ny / 2) * s
    x = (np.arange(nx, dtype=np.float32) - nx / 2) * s
    Y, X = np.meshgrid(y, x, indexing="ij")
    Y, X = Y[None], X[None]                                           # (1, Y, X) in mm
    k = np.arange(nz, dtype=np.float32)[:, None, None]                # slice index, base = 0
    t = k / max(nz - 1, 1)                                            # 0 base .. 1 apex

    # ---------- background anatomy (extends through all slices) ----------
    img = np.full((nz, ny, nx), 0.02, np.float32)                     # air
    by, bx = p["body"][0] * ny * s, p["body"][1] * nx * s
    body = _ellipse(Y, X, by, bx)
    body = np.broadcast_to(body, img.shape)
    fat = body & ~_ellipse(Y, X, by - 7.0, bx - 7.0)
    img[body] = p["tissue"]
    img[fat] = 0.95                                                   # bright subcutaneous fat, as bright as blood
    cy, cx = p["center_off"]
    for side in (-1, 1):                                              # lungs: dark, either side of the heart
        ly, lx = cy - 10.0, cx + side * (p["r_lv"] + 45.0)
        lung = _ellipse(Y - ly, X - lx, 0.30 * ny * s, 0.17 * nx * s) & body
        img[np.broadcast_to(lung, img.shape)] = 0.08
    brng = np.random.default_rng(p["blob_seed"])
    for _ in range(p["n_blobs"]):                                     # tissue blobs overlapping the class range
        ang = brng.uniform(0, 2 * math.pi)
        dist = brng.uniform(p["r_lv"] + p["wall"] + 18.0, 0.33 * min(ny, nx) * s)
        oy, ox = cy + dist * math.sin(ang), cx + dist * math.cos(ang)
        ry, rx = brng.uniform(6.0, 16.0, size=2)
        dy, dx = brng.uniform(-1.0, 1.0, size=2)
        val = brng.choice([brng.uniform(0.75, 1.05), brng.uniform(0.18, 0.38), brng.uniform(0.5, 0.7)])
        blob = _ellipse(Y - (oy + dy * k), X - (ox + dx * k), ry * (1 - 0.3 * t), rx * (1 - 0.3 * t)) & body
        img[blob] = val

    # ---------- heart ----------
    hy = cy + p["drift"][0] * k
    hx = cx + p["drift"][1] * k
    th = p["theta"] + frame_rng.normal(0, 0.03)
    cos, sin = math.cos(th), math.sin(th)
    u = (X - hx) * cos + (Y - hy) * sin                               # along the LV -> RV axis
    v = -(X - hx) * sin + (Y - hy) * cos
    taper = np.sqrt(np.clip(1.0 - (t / p["apex_len"]) ** 2, 0.0, 1.0)) * 0.8 + 0.2 * (1 - t)
    r_lv, wall = p["r_lv"], p["wall"]
    if es:                                                             # systole: small cavity, thick wall
        r_lv, wall = r_lv * frame_rng.uniform(0.62, 0.74), wall * frame_rng.uniform(1.3, 1.5)
    r_cav = r_lv * taper
    r_epi = r_cav + wall * (0.75 + 0.25 * taper)
    rr = np.sqrt((u * p["ecc"]) ** 2 + (v / p["ecc"]) ** 2)
    lv = rr <= r_cav
    myo = (rr <= r_epi) & ~lv

    rv_scale = np.clip(1.0 - t / p["rv_extent"], 0.0, 1.0) ** 0.6      # RV shrinks and vanishes toward the apex
    rv_a = p["rv_a"] * (0.75 if es else 1.0) * rv_scale + 1e-3
    rv_b = p["rv_b"] * rv_scale + 1e-3
    rv_c = r_epi + 0.2 * rv_a                                          # RV cavity wraps the septum
    rv = _ellipse(u + rv_c, v, 1.2 * rv_a, rv_b) & (rr > r_epi + 2.0) & (rv_scale > 0.05)
    rv_wall = _ellipse(u + rv_c, v, 1.2 * rv_a + 2.5, rv_b + 2.5) & ~rv & (rr > r_epi)

    label = np.zeros((nz, ny, nx), np.uint8)
    pericardium = (rr <= r_epi + 3.0) | rv_wall
    img[pericardium] = p["tissue"] * 0.9
    img[rv_wall] = p["myo"] * 1.1
    img[myo] = p["myo"]
    img[lv] = p["blood"]
    img[rv] = p["blood"] * 0.93
    label[rv] = 1
    label[myo] = 2
    label[lv] = 3

    # papillary muscles: dark spots inside the LV cavity, labelled LV (as in ACDC)
    for ang in (0.9, 2.2):
        pu, pv = 0.55 * r_cav * math.cos(ang + th), 0.55 * r_cav * math.sin(ang + th)
        pap = ((u - pu) ** 2 + (v - pv) ** 2 <= (0.18 * r_cav) ** 2) & lv
        img[pap] = p["myo"] * 1.2

    # ---------- acquisition: partial volume, bias field, gain, Rician noise ----------
    img = gaussian_filter(img, sigma=(0, 0.8, 0.8))
    zn = (k / max(nz - 1, 1)) * 2 - 1
    yn, xn = Y / (ny * s / 2), X / (nx * s / 2)
    c = p["bias"]
    bias = np.exp(c[0] * xn + c[1] * yn + c[2] * zn * 0.5 + c[3] * xn * xn + c[4] * yn * yn
                  + c[5] * xn * yn + c[6] * xn * zn * 0.5).astype(np.float32)
    img = img * bias
    sigma = p["noise"]
    n1 = frame_rng.normal(0.0, sigma, img.shape).astype(np.float32)
    n2 = frame_rng.normal(0.0, sigma, img.shape).astype(np.float32)
    img = np.sqrt((img + n1) ** 2 + n2 ** 2) * p["gain"]
    return img.astype(np.float32), label


def synth_patient(seed: int, index: int) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """The two frames of synthetic patient ``index``: [(frame name, image, label, geometry), ...]."""
    rng = np.random.default_rng([seed, index])
    p = _patient_params(rng)
    geom = {"spacing_zyx": (p["dz"], p["inplane"], p["inplane"]),
            "origin": tuple(float(o) for o in rng.uniform(-150, -50, size=3))}
    out = []
    for frame, es in (("frame01", False), (f"frame{p['es_frame']:02d}", True)):
        img, lab = _render(p, es, np.random.default_rng([seed, index, int(es)]))
        out.append((frame, img, lab, geom))
    return out


def preferred_dataset_id(root: Path, name: str, dataset_id: int | None, preferred: int | None) -> int:
    """``dataset_id`` if given, else ``preferred`` unless another dataset uses it, else the next free id."""
    if dataset_id is not None:
        return dataset_id
    if preferred is None:
        return next_free_id(root)
    for d in list_datasets(root):
        m = DATASET_RE.match(d)
        if int(m["id"]) == preferred and m["name"] != name:
            return next_free_id(root)
    return preferred


def generate_synthetic(root: str | Path, name: str = DEFAULT_NAME, cases: int = 20, seed: int = 0,
                       dataset_id: int | None = None, progress: Callable[[str, int, int], None] | None = None,
                       overwrite: bool = True) -> Path:
    """Write ``cases`` synthetic frames (``ceil(cases / 2)`` patients) as a raw dataset; returns its folder.

    An existing dataset of the same name and id is replaced (the output depends only on ``seed`` and ``cases``)
    unless ``overwrite`` is False.
    """
    from salseg.convert.common import DatasetWriter, array_image

    if cases < 1:
        raise SalsegError(f"--cases must be at least 1, got {cases}")
    root = Path(root)
    did = preferred_dataset_id(root, name, dataset_id, DEFAULT_ID if name == DEFAULT_NAME else None)
    n_patients = math.ceil(cases / 2)
    done = 0
    with DatasetWriter(root, name, did, overwrite=overwrite, explicit_id=dataset_id is not None) as w:
        for i in range(n_patients):
            pid = f"patient{i + 1:03d}"
            for frame, img, lab, geom in synth_patient(seed, i):
                if done >= cases:
                    break
                im = array_image(np.round(img).astype(np.int16), geom["spacing_zyx"], geom["origin"])
                lb = array_image(lab, geom["spacing_zyx"], geom["origin"])
                w.add_case(f"{pid}_{frame}", [im], lb, group=pid)
                done += 1
                if progress:
                    progress("synthesising cases", done, cases)
        return w.finish({"0": "cineMRI"}, LABELS,
                        description=f"salseg synthetic cardiac cine MRI (seed {seed}, {cases} cases)",
                        extra={"synthetic": {"seed": seed, "cases": cases, "generator": "salseg.synthetic"}})
