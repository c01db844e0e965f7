"""The protocol check of a grid: the arms of one network must have been trained by one recipe.

Each finished arm's ``config.json`` carries ``protocol`` (everything that defines the training recipe except the
module) and ``protocol_hash`` (salseg.protocol). Arms of one network whose hashes differ are refused with the
differing fields named (:func:`salseg.protocol.describe_diff`), unless ``allow_mixed`` -- then the comparison is
made and carries a warning. Arms trained before salseg recorded protocols are compared with a warning that their
fairness cannot be checked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from salseg import results as R
from salseg.bench.collect import is_finished
from salseg.errors import ConfigError, DataError
from salseg.fileio import read_json
from salseg.protocol import describe_diff, protocol_hash

log = logging.getLogger(__name__)


def read_protocol(fold_dir: Path) -> tuple[str | None, dict | None]:
    """(protocol_hash, protocol) from a fold's config.json; (None, None) when it records none."""
    path = fold_dir / R.CONFIG_JSON
    if not path.is_file():
        return None, None
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: expected a JSON object")
    protocol, digest = cfg.get("protocol"), cfg.get("protocol_hash")
    if not protocol and not digest:  # absent, or the empty defaults an old config.json is read with
        return None, None
    if not isinstance(protocol, dict):
        raise DataError(f"{path}: field 'protocol' must be a JSON object, got {type(protocol).__name__}")
    if digest is None:
        digest = protocol_hash(protocol)
    if not isinstance(digest, str):
        raise DataError(f"{path}: field 'protocol_hash' must be a string, got {type(digest).__name__}")
    return digest, protocol


def _names(labels: list[str], limit: int = 3) -> str:
    more = len(labels) - limit
    return ", ".join(labels[:limit]) + (f" and {more} more" if more > 0 else "")


def check_protocols(root: Path, dataset: str, combos: Sequence, *, allow_mixed: bool = False) -> dict:
    """Check the finished arms among ``combos``, network by network.

    Returns ``{"hashes": {label: hash or None}, "warnings": [...], "mixed": [network, ...]}``; raises ConfigError
    (exit 2) naming the differing fields when one network's arms differ and ``allow_mixed`` is false."""
    arms: dict[str, dict[str, tuple]] = {}
    for c in combos:
        d = c.fold_dir(root, dataset)
        if is_finished(d):
            arms.setdefault(c.network, {})[c.label] = read_protocol(d)
    hashes, warnings, mixed = {}, [], []
    for net, by_label in arms.items():
        hashes.update({label: digest for label, (digest, _) in by_label.items()})
        unknown = [label for label, (digest, _) in by_label.items() if digest is None]
        if unknown:
            warnings.append(f"{net}: fairness cannot be checked for {len(unknown)} arm(s) trained without a protocol "
                            f"fingerprint in config.json ({_names(unknown)}); re-train them to check their recipe")
        groups: dict[str, list[str]] = {}
        for label, (digest, _) in by_label.items():
            if digest is not None:
                groups.setdefault(digest, []).append(label)
        if len(groups) <= 1:
            continue
        shown = {(labels[0] if len(labels) == 1 else f"{labels[0]} (+{len(labels) - 1} like it)"):
                 by_label[labels[0]][1] for labels in groups.values()}
        message = f"{net}: its arms were trained with {len(groups)} different protocols: {describe_diff(shown)}"
        if not allow_mixed:
            raise ConfigError(f"{message}; comparing them would confound the module with the recipe -- re-train the "
                              f"differing arms with one recipe, or pass --allow-mixed-protocol to compare anyway")
        mixed.append(net)
        warnings.append(f"MIXED PROTOCOL (--allow-mixed-protocol): {message}; differences between these arms mix "
                        f"the module with the recipe")
    for w in warnings:
        log.warning("%s", w)
    return {"hashes": hashes, "warnings": warnings, "mixed": mixed}


def protocol_lines(check: dict) -> list[str]:
    """Intro lines for table.md / report.html: the warnings, or the one fingerprint per network when all agree."""
    if check["warnings"]:
        return [f"**Warning:** {w}." for w in check["warnings"]]
    known = sorted({h for h in check["hashes"].values() if h})
    if not known:
        return []
    digests = ", ".join(h[:12] for h in known)
    return [f"Protocol: every arm of a network trained by one recipe (protocol_hash {digests})."]
