"""Which plans made a preprocessed case: its properties JSON starts with ``plans_hash``, the hash of the parts of
the plans configuration that shape the data. ``preprocess`` redoes cases whose hash differs; ``train`` refuses them.

Hashed: the configuration's ``spacing``, ``normalization``, ``intensity_properties``, ``use_mask_for_norm`` and
``data_identifier``, the plans' ``label_values`` and ``num_channels``, and :data:`PREPROCESS_VERSION` (raised when
preprocessing itself changes). Patch size, batch size and topology do not change the data and are not hashed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from salseg.errors import DataError
from salseg.fileio import TEMP_GLOB, clean_temp_files  # noqa: F401 (moved to fileio; kept importable here)
from salseg.plans import Plans
from salseg.protocol import protocol_hash

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 1
HASHED_FIELDS = ("spacing", "normalization", "intensity_properties", "use_mask_for_norm", "data_identifier")
_HEAD_RE = re.compile(rb'^\{"plans_hash": ?"([0-9a-f]+)"')


def plans_hash(configuration: dict, label_values: Sequence[int], num_channels: int) -> str:
    """16 hex digits identifying what a plans configuration makes of the raw data."""
    d = {k: configuration.get(k) for k in HASHED_FIELDS}
    # the forms a validated plans file has (salseg.plans), so raw and validated plans hash alike
    d["spacing"] = [float(x) for x in configuration.get("spacing") or []]
    d["use_mask_for_norm"] = [bool(m) for m in configuration.get("use_mask_for_norm") or [False] * int(num_channels)]
    d["intensity_properties"] = configuration.get("intensity_properties") or {}
    d.update(label_values=[int(v) for v in label_values], num_channels=int(num_channels),
             version=PREPROCESS_VERSION)
    return protocol_hash(d)[:16]


def plans_hash_of(plans: Plans, config_name: str) -> str:
    """The hash of configuration ``config_name`` of the typed ``plans`` (the run config's JSON form hashes alike)."""
    configuration = plans.configuration(config_name)
    return plans_hash({k: getattr(configuration, k) for k in HASHED_FIELDS}, plans.label_values, plans.num_channels)


def recorded_hash(json_path: Path) -> str | None:
    """The ``plans_hash`` a case's properties JSON records (read from its first bytes), None if none."""
    try:
        with open(json_path, "rb") as f:
            head = f.read(128)
    except OSError:
        return None
    m = _HEAD_RE.match(head)
    return m.group(1).decode() if m else None


def stale_reason(json_path: Path, want: str) -> str | None:
    """Why the case of ``json_path`` must be redone for plans hash ``want`` (None: it is fresh)."""
    have = recorded_hash(json_path)
    if have is None:
        return "no plans hash recorded (made by an older salseg)"
    if have != want:
        return "made with other plans"
    return None


def assert_fresh(folder: Path, case_ids: Sequence[str], want: str, config: str, dataset: str) -> None:
    """Refuse preprocessed cases made with other plans than hash ``want``; cases without a hash only warn."""
    other, unknown = [], []
    for cid in case_ids:
        have = recorded_hash(folder / f"{cid}.json")
        if have is None:
            unknown.append(cid)
        elif have != want:
            other.append(cid)
    if other:
        more = f" (+{len(other) - 3} more)" if len(other) > 3 else ""
        raise DataError(f"{folder}: {len(other)} of {len(case_ids)} preprocessed case(s) ({', '.join(other[:3])}"
                        f"{more}) were made with other plans than configuration '{config}' of this run; run "
                        f"`salseg preprocess {dataset} -c {config}` to redo them")
    if unknown:
        log.warning("%s: %d preprocessed case(s) record no plans hash (made by an older salseg); they cannot be "
                    "checked against the plans: run `salseg preprocess %s -c %s` to redo them", folder,
                    len(unknown), dataset, config)


def check_preprocessed(folder: Path, cases: Sequence[str]) -> None:
    if not folder.is_dir():
        raise DataError(f"{folder}: no preprocessed data; run `salseg preprocess` for this dataset first")
    missing = [c for c in cases if not (folder / f"{c}.npz").is_file()]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(f"{folder}: preprocessed cases missing: {', '.join(missing[:5])}{more}; "
                        f"run `salseg preprocess` again")
