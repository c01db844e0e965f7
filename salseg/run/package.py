"""A trained model in one file: the model package (``salseg export-model`` / ``install-model`` / ``predict --model``).

A package is a zip (or a folder with the same layout) holding the trained-model contract of one experiment::

    salseg-model.json            the manifest: format, format_version, salseg_version, what the model is, and a
                                 SHA-256 per file
    plans.json                   the dataset's plans (when the training root had one)
    dataset.json                 the part of dataset.json prediction needs (channel_names, labels, file_ending)
    fold_<f>/config.json         the run config of each fold (salseg.run.config)
    fold_<f>/weights.npz         the fold's weights: plain arrays, read with ``allow_pickle=False``
    fold_<f>/model.onnx          with ``--onnx``: the fold's network as an ONNX graph (salseg.run.onnx)
    postprocessing.json          the experiment's postprocessing rules (salseg.run.rules) when find-best decided
                                 them for this experiment alone (or ``--rules FILE``); ``predict --model`` applies
                                 them, ``install-model`` puts them back where find-best writes them

Reading a stranger's package never runs pickle and never writes outside its target: every entry is checked before
anything is loaded or written (no absolute paths, no ``..``, no links, no names outside the manifest, no file kinds
but JSON / npz / ONNX, the SHA-256 of each file, postprocessing rules well-formed and for the model's label
values); a package from a newer salseg with an unknown format version is
refused naming the version. Any problem is one :class:`~salseg.errors.DataError` naming the package and the entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from salseg import __version__, results
from salseg.errors import ConfigError, DataError
from salseg.fileio import atomic_path, parse_json, read_json, write_json
from salseg.run.config import RunConfig
from salseg.run.folds import CHECKPOINTS, fold_label_of, resolve_result_dataset, trained_folds
from salseg.run.model import TrainedModel, assemble_ensemble, load_experiment, load_trained, merge_run_plans
from salseg.run.rules import Rules, check_rules_labels

MANIFEST = "salseg-model.json"
FORMAT = "salseg-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.npz"
ONNX_FILE = "model.onnx"
RULES_FILE = results.POSTPROCESSING_JSON
ALLOWED_SUFFIXES = (".json", ".npz", ".onnx")
STORED = (".npz", ".onnx")  # written to the zip without compression
DATASET_KEYS = ("channel_names", "labels", "file_ending", "regions_class_order")
MAX_BYTES = 16 << 30  # a package never unpacks to more than this (zip bombs)
_FOLD_DIR = re.compile(r"fold_(\d+|all)(_seed\d+)?")


@dataclass
class ModelPackage:
    """A verified package: its manifest and the bytes of the files it lists that were read (all hashes checked;
    :func:`read_package` with ``parts`` reads what one backend needs)."""

    source: str
    manifest: dict
    files: dict[str, bytes] = field(repr=False)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)  # parsed weights by entry

    @property
    def folds(self) -> list[str]:
        return list(self.manifest["folds"])

    def json(self, name: str):
        return parse_json(self.files[name], f"{self.source}:{name}")

    @property
    def rules(self) -> Rules | None:
        """The package's postprocessing rules (verified by :func:`read_package`), None when it carries none."""
        return _rules_of(self.manifest, self.files, self.source)

    def weights(self, fold: str) -> dict[str, torch.Tensor]:
        name = f"fold_{fold}/{WEIGHTS}"
        if name not in self.arrays:
            self.arrays[name] = read_weights(self.files[name], f"{self.source}:{name}")
        return {k: torch.from_numpy(v) for k, v in self.arrays[name].items()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# writing

def state_to_npz(state: dict) -> bytes:
    """A state dict -> npz bytes (plain arrays only; loadable with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().contiguous().numpy() for k, v in state.items()})
    return buf.getvalue()


def read_weights(data: bytes, source: str) -> dict[str, np.ndarray]:
    """npz bytes -> arrays, never unpickling: an object array or a pickle in disguise is refused naming ``source``."""
    if data[:1] == b"\x80":  # pickle protocol 2+
        raise DataError(f"{source}: is a pickle, not plain arrays; salseg packages never load pickles")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return {k: np.array(f[k]) for k in f.files}
    except Exception as e:  # ValueError (object arrays, pickles), BadZipFile, OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{source}: not a pickle-free weights file ({first})") from None


def export_model(root, dataset: str, network: str, module: str, config: str, folds, out: str | os.PathLike, *,
                 checkpoint: str = "final", position: str | None = None, onnx: bool = False,
                 opset: int | None = None, rules: str | os.PathLike | None = None,
                 postprocessing: bool = True) -> dict:
    """Write the package of an experiment's folds (``folds`` None: every trained fold) to ``out`` (atomically) and
    return its manifest. With ``onnx`` every fold also gets an ONNX graph; a model that cannot be exported is
    refused here, naming why (salseg.run.onnx), before anything is written.

    Postprocessing: the rules find-best decided for this experiment alone
    (:func:`salseg.results.postprocessing_file`; an ensemble's rules are for the averaged ensemble, never one
    model's) when that file exists, or ``rules`` (a postprocessing.json); ``postprocessing=False`` leaves them out.
    Rules that do not parse or were decided for other label values are refused before anything is written."""
    root = results.resolve_root(root)
    ds = resolve_result_dataset(root, dataset)
    trained = load_trained(root, ds, network, module, config, folds, checkpoint, position)
    exp = results.experiment_dir(root, ds, network, module, config, position)
    files: dict[str, bytes] = {}
    found = _export_rules(results.postprocessing_file(root, ds, network, module, config, position), rules,
                          postprocessing, trained.cfg.label_values, exp.name)
    if found is not None:
        files[RULES_FILE] = found[0]
    plans_path = results.plans_file(root, ds)
    if plans_path.is_file():
        files["plans.json"] = plans_path.read_bytes()
    files["dataset.json"] = _json_bytes(_dataset_subset(root, ds, trained.cfg))
    onnx_info = None
    if onnx:
        from salseg.run.onnx import export_onnx

        onnx_info = {}
    for fold, state in zip(trained.fold_names, trained.state_dicts):
        cfg = RunConfig.load(exp / f"fold_{fold}" / results.CONFIG_JSON)
        files[f"fold_{fold}/config.json"] = _json_bytes(cfg.to_dict())
        files[f"fold_{fold}/{WEIGHTS}"] = state_to_npz(state)
        if onnx:
            trained.model.load_state_dict(state)
            data, onnx_info = export_onnx(trained.model, trained.cfg, trained.plans, opset=opset)
            files[f"fold_{fold}/{ONNX_FILE}"] = data
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "salseg_version": __version__,
                "dataset": ds, "network": network, "module": module, "config": config,
                "position": position, "checkpoint": checkpoint, "folds": list(trained.fold_names),
                "file_ending": trained.cfg.file_ending, "in_channels": trained.cfg.in_channels,
                "label_values": list(trained.cfg.label_values), "onnx": onnx_info,
                "postprocessing": found[1].describe() if found is not None else None,
                "files": {name: sha256(data) for name, data in sorted(files.items())}}
    with atomic_path(out, ".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, _json_bytes(manifest))
            for name, data in sorted(files.items()):
                # float weights and graphs deflate by ~7 %, and inflating them cost every prediction ~0.25 s per
                # 80 MB: stored as they are (the JSON files are deflated)
                z.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(STORED) else None)
    return manifest


def _export_rules(default: Path, explicit, include: bool, label_values, model: str) -> tuple[bytes, Rules] | None:
    """(bytes, rules) of the postprocessing.json to package: ``explicit``, else ``default`` when it exists."""
    if not include:
        if explicit is not None:
            raise ConfigError("--rules and --no-postprocessing contradict each other; give one")
        return None
    path = Path(explicit) if explicit is not None else default
    if not path.is_file():
        if explicit is not None:
            raise DataError(f"{path}: postprocessing rules file not found")
        return None
    data = path.read_bytes()
    parsed = Rules.from_json(parse_json(data, str(path)), str(path))
    check_rules_labels(parsed, label_values, str(path), model)
    return data, parsed


def _json_bytes(obj) -> bytes:
    import json

    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _dataset_subset(root: Path, ds: str, cfg: RunConfig) -> dict:
    """What prediction needs of dataset.json: the raw dataset's channels, labels and file ending (else the run's)."""
    raw = results.raw_dir(root, ds) / "dataset.json"
    data = read_json(raw) if raw.is_file() else {}
    out = {k: data[k] for k in DATASET_KEYS if isinstance(data, dict) and k in data}
    out.setdefault("file_ending", cfg.file_ending)
    out.setdefault("labels", {str(v): v for v in cfg.label_values})
    return out


# ---------------------------------------------------------------------------------------------------------------
# reading (every check before anything is loaded or written)

def entry_problem(name: str) -> str | None:
    """Why a package entry name is unsafe (absolute, drive, backslash, ``..``, empty parts), else None."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if "\\" in name or "\x00" in name:
        return "a path with a backslash or NUL"
    parts = name.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        return "a path with '..'"
    if any(p in ("", ".") for p in parts):
        return "a path with empty or '.' parts"
    return None


def _check_manifest(manifest, source: str) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{source}: {MANIFEST} is not a salseg model manifest (format {FORMAT!r} expected)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{source}: {MANIFEST} field 'format_version' must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise DataError(f"{source}: package format version {version} (written by salseg "
                        f"{manifest.get('salseg_version', '?')}) is newer than this salseg {__version__} reads "
                        f"(up to {FORMAT_VERSION}); update salseg")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for k, v in files.items()):
        raise DataError(f"{source}: {MANIFEST} field 'files' must map file names to SHA-256 hex digests")
    folds = manifest.get("folds")
    if not isinstance(folds, list) or not folds:
        raise DataError(f"{source}: {MANIFEST} field 'folds' must be a non-empty list")
    for name in files:
        why = entry_problem(name)
        if why is None and not name.endswith(ALLOWED_SUFFIXES):
            why = f"not a file kind a package holds ({', '.join(ALLOWED_SUFFIXES)}; never pickles)"
        if why:
            raise DataError(f"{source}: entry {name!r} in {MANIFEST} is {why}; refused")
    for f in folds:
        for part in (f"fold_{f}/config.json", f"fold_{f}/{WEIGHTS}"):
            if not isinstance(f, str) or not _FOLD_DIR.fullmatch(f"fold_{f}") or part not in files:
                raise DataError(f"{source}: fold {f!r} in {MANIFEST} has no {part} listed")
    return manifest


def _zip_entries(path: Path, wanted) -> tuple[dict, dict[str, bytes]]:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip file ({e})") from None
    with z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        for info in infos:
            why = entry_problem(info.filename)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = "a symbolic link"
            if why is None and names.count(info.filename) > 1:
                why = "present twice"
            if why:
                raise DataError(f"{path}: entry {info.filename!r} is {why}; refused (nothing written)")
        if sum(i.file_size for i in infos) > MAX_BYTES:
            raise DataError(f"{path}: unpacks to more than {MAX_BYTES >> 30} GiB; refused")
        if MANIFEST not in names:
            raise DataError(f"{path}: no {MANIFEST}; not a salseg model package")
        manifest = _check_manifest(parse_json(z.read(MANIFEST), f"{path}:{MANIFEST}"), str(path))
        listed = set(manifest["files"])
        for info in infos:
            n = info.filename
            if n != MANIFEST and n not in listed and not (info.is_dir() and any(f.startswith(n) for f in listed)):
                raise DataError(f"{path}: entry {n!r} is not in {MANIFEST}; refused (nothing written)")
        try:
            out = {n: z.read(n) for n in listed if n in names and wanted(n)}
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            raise DataError(f"{path}: cannot read an entry ({e})") from None
    return manifest, out


def _folder_entries(path: Path, wanted) -> tuple[dict, dict[str, bytes]]:
    man = path / MANIFEST
    if not man.is_file() or man.is_symlink():
        raise DataError(f"{path}: no {MANIFEST}; not a salseg model package folder")
    manifest = _check_manifest(read_json(man), str(path))
    listed = set(manifest["files"])
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(path).as_posix()
            if p.is_symlink():
                raise DataError(f"{path}: entry {rel!r} is a symbolic link; refused")
            if p.is_file() and rel != MANIFEST:
                if rel not in listed:
                    raise DataError(f"{path}: entry {rel!r} is not in {MANIFEST}; refused")
                if wanted(rel):
                    out[rel] = p.read_bytes()
    return manifest, out


PARTS = {"torch": f"/{ONNX_FILE}", "onnxruntime": f"/{WEIGHTS}"}  # what a backend leaves unread


def read_package(path: str | os.PathLike, parts: str | None = None) -> ModelPackage:
    """Open and verify a package (zip or folder): names, links, manifest, format version, the SHA-256 of every
    file read, pickle-free weights. Raises DataError naming the package and the entry; loads nothing before all
    pass. ``parts``: None reads every file; "torch" all but the ONNX graphs, "onnxruntime" all but the weights
    (prediction reads, hashes and parses only what its backend runs)."""
    path = Path(path)
    if parts is not None and parts not in PARTS:
        raise ConfigError(f"unknown package part {parts!r}; choose {' or '.join(PARTS)}")
    manifest, entries = _verified_entries(path, _everything if parts is None else
                                          lambda name: not name.endswith(PARTS[parts]))
    pkg = ModelPackage(str(path), manifest, entries)
    for f in pkg.folds:
        if f"fold_{f}/{WEIGHTS}" in entries:
            pkg.weights(f)  # parsed once here: pickle-free or refused before anything loads
        cfg = RunConfig.from_dict(pkg.json(f"fold_{f}/config.json"), f"{path}:fold_{f}/config.json")
        if RULES_FILE in entries:
            _rules_of(manifest, entries, str(path), cfg.label_values, f"fold {f}")
    if "plans.json" in entries:
        pkg.json("plans.json")
    return pkg


def _everything(name: str) -> bool:
    return True


def _verified_entries(path: Path, wanted=_everything) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the bytes of its files that ``wanted(name)`` (every name checked, every hash of a file read
    matched)."""
    if not path.exists():
        raise DataError(f"{path}: model package not found")
    manifest, entries = _folder_entries(path, wanted) if path.is_dir() else _zip_entries(path, wanted)
    for name, digest in sorted(manifest["files"].items()):
        if not wanted(name):
            continue
        if name not in entries:
            raise DataError(f"{path}: {name} is listed in {MANIFEST} but missing from the package")
        if sha256(entries[name]) != digest:
            raise DataError(f"{path}: {name} does not match its SHA-256 in {MANIFEST} (changed or corrupt); refused")
    return manifest, entries


def _rules_of(manifest: dict, entries: dict[str, bytes], source: str, label_values=None,
              model: str = "the model") -> Rules | None:
    """The package's postprocessing rules, parsed and checked against ``label_values`` (default: the manifest's)."""
    if RULES_FILE not in entries:
        return None
    name = f"{source}:{RULES_FILE}"
    rules = Rules.from_json(parse_json(entries[RULES_FILE], name), name)
    labels = manifest.get("label_values") if label_values is None else label_values
    if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
        raise DataError(f"{source}: {MANIFEST} field 'label_values' must be a list of integers")
    check_rules_labels(rules, labels, name, f"{model} of {source}")
    return rules


def is_package(path: str | os.PathLike) -> bool:
    """A package zip or an unpacked package folder (it holds the manifest), not a result folder."""
    path = Path(path)
    return path.is_file() or (path / MANIFEST).is_file()


def package_rules(path: str | os.PathLike) -> Rules | None:
    """The postprocessing rules a package carries, verified (entry names, manifest, SHA-256, format, label values)
    without reading the weights; None when it carries none or ``path`` is a result folder, not a package."""
    path = Path(path)
    if not is_package(path):
        return None
    manifest, entries = _verified_entries(path, lambda name: name == RULES_FILE)
    return _rules_of(manifest, entries, str(path))


def _package_plans(pkg: ModelPackage, cfg: RunConfig, source: str):
    from salseg.plans import DEFAULT_PLANS, Plans, select_plans

    planned = None
    if "plans.json" in pkg.files:
        src = f"{pkg.source}:plans.json"
        planned = Plans.from_dict(select_plans(pkg.json("plans.json"), DEFAULT_PLANS, src), src)
    return merge_run_plans(planned, cfg, source)


def load_package(pkg: ModelPackage, folds=None) -> TrainedModel:
    """The ensemble of a verified package's folds (``folds`` None: all of them); read without its weights
    (``read_package(..., "onnxruntime")``) the network is built but holds no fold's weights (state dicts None)."""
    wanted = pkg.folds if not folds else [fold_label_of(f) for f in folds]
    cfgs, states = [], []
    for f in wanted:
        if f not in pkg.folds:
            raise ConfigError(f"{pkg.source}: fold {f} not in the package (folds: {', '.join(pkg.folds)})")
        name = f"fold_{f}/config.json"
        cfgs.append((RunConfig.from_dict(pkg.json(name), f"{pkg.source}:{name}"), f"{pkg.source}:fold_{f}/{WEIGHTS}"))
        states.append(pkg.weights(f) if f"fold_{f}/{WEIGHTS}" in pkg.files else None)
    source = f"{pkg.source}:fold_{wanted[0]}/config.json"
    return assemble_ensemble(cfgs, states, wanted, lambda first: _package_plans(pkg, first, source))


def load_model(path: str | os.PathLike, folds=None, checkpoint: str = "final",
               parts: str | None = None) -> TrainedModel:
    """A trained model from anywhere: a package (zip or unpacked folder), an experiment folder
    (``<network>__<module>__<config>`` with ``fold_<f>/``) or one fold folder; no data root needed. ``parts``: what
    of a package to read (:func:`read_package`)."""
    path = Path(path)
    if is_package(path):
        return load_package(read_package(path, parts), folds)
    if not path.is_dir():
        raise DataError(f"{path}: no model package or result folder there")
    if (path / results.CONFIG_JSON).is_file() and results.parse_fold_name(path.name):
        exp, folds = path.parent, [path.name[len("fold_"):]]
    else:
        exp = path
    if not trained_folds(exp):
        raise DataError(f"{path}: neither a model package ({MANIFEST}) nor a result folder with fold_<f>/config.json")
    planned = exp.parents[2] / "preprocessed" / exp.parent.name / "plans.json" if len(exp.parents) > 2 else None

    def plans_of(first, source):
        from salseg.plans import read_plans

        return merge_run_plans(read_plans(planned) if planned and planned.is_file() else None, first, source)

    return load_experiment(exp, folds, checkpoint, None, plans_of)


# ---------------------------------------------------------------------------------------------------------------
# installing

class Installed(NamedTuple):
    experiment: Path             # results/<ds>/<network>__<module>__<config>
    rules: Path | None           # where the package's postprocessing.json went (None: it carries none)
    rules_description: str = ""  # Rules.describe()


def install_model(path: str | os.PathLike, root) -> Installed:
    """Unpack a verified package into ``root``'s results (``results/<ds>/<network>__<module>__<config>/fold_<f>``
    with config.json and ``checkpoint_<checkpoint>.pt``; the package's plans.json where the root has none; its
    postprocessing.json where find-best writes it, :func:`salseg.results.postprocessing_file`) so the dataset-based
    commands see it. Refuses folds or other rules already there, before anything is written."""
    from salseg.run.checkpoint import save_checkpoint
    from salseg.safepath import check_name, inside

    pkg = read_package(path)
    m = pkg.manifest
    for key in ("dataset", "network", "module", "config"):
        check_name(m.get(key), f"{pkg.source}:{MANIFEST}", key)
    checkpoint = m.get("checkpoint", "final")
    if checkpoint not in CHECKPOINTS:
        raise DataError(f"{pkg.source}: {MANIFEST} field 'checkpoint' must be final or best, got {checkpoint!r}")
    trained = load_package(pkg)  # every fold builds and its weights fit, before anything is written
    root = results.resolve_root(root)
    exp = results.experiment_dir(root, m["dataset"], m["network"], m["module"], m["config"], m.get("position"))
    there = [f for f in pkg.folds if (exp / f"fold_{f}").exists()]
    if there:
        raise DataError(f"{exp}: fold(s) {', '.join(there)} already there; remove them to install {pkg.source}")
    rules = pkg.rules
    rules_path = results.postprocessing_file(root, m["dataset"], m["network"], m["module"], m["config"],
                                             m.get("position")) if rules is not None else None
    if rules_path is not None and rules_path.exists() and rules_path.read_bytes() != pkg.files[RULES_FILE]:
        raise DataError(f"{rules_path}: other postprocessing rules already there; remove them to install "
                        f"{pkg.source}")
    for fold, state in zip(trained.fold_names, trained.state_dicts):
        final = inside(exp, exp / f"fold_{fold}", "fold folder")
        tmp = exp / f".fold_{fold}.installing"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / results.CONFIG_JSON).write_bytes(pkg.files[f"fold_{fold}/config.json"])
        save_checkpoint(tmp / CHECKPOINTS[checkpoint], model=state, salseg_version=m.get("salseg_version", ""),
                        config=pkg.json(f"fold_{fold}/config.json"))
        os.replace(tmp, final)
    write_json(exp / "dataset.json", pkg.json("dataset.json"))
    plans = results.plans_file(root, m["dataset"])
    if "plans.json" in pkg.files and not plans.exists():
        with atomic_path(plans) as tmp:
            tmp.write_bytes(pkg.files["plans.json"])
    if rules_path is not None:
        with atomic_path(rules_path) as tmp:
            tmp.write_bytes(pkg.files[RULES_FILE])
    return Installed(exp, rules_path, rules.describe() if rules is not None else "")


__all__ = ["FORMAT_VERSION", "Installed", "MANIFEST", "ModelPackage", "RULES_FILE", "export_model", "install_model",
           "is_package", "load_model", "load_package", "package_rules", "read_package"]
