"""``salseg list``'s records: what this installation knows (salseg.nets.catalogue), what the data root holds
(datasets, planned or not) and the planner presets. One function per kind; :func:`records` picks by name."""

from __future__ import annotations

from pathlib import Path

from salseg.dataset.dataset_json import load_dataset_json
from salseg.dataset.naming import list_datasets
from salseg.errors import ConfigError, SalsegError
from salseg.nets.catalogue import module_records, network_preset_records, network_records, position_records
from salseg.plan.presets import PRESETS
from salseg.results import plans_file, raw_dir

KINDS = ("networks", "modules", "positions", "datasets", "presets")


def dataset_records(root: Path) -> list[dict]:
    """The datasets under ``root``: cases, labels, planned or not; a broken dataset.json is listed with its
    problem, not raised (``salseg check`` says what is wrong)."""
    out = []
    for name in list_datasets(root):
        rec = {"name": name, "planned": plans_file(root, name).is_file(), "cases": None, "labels": None}
        try:
            info = load_dataset_json(raw_dir(root, name))
            rec.update(cases=info.num_training, labels=info.labels)
        except (SalsegError, OSError, ValueError) as e:
            rec["problem"] = str(e).splitlines()[0]
        out.append(rec)
    return out


def preset_records() -> list[dict]:
    """Planner presets (``plan --preset``), then the network presets."""
    out = [{"name": p.name, "network": None, "option": f"plan --preset {p.name}", "plans_name": p.plans_name,
            "description": f"plans {p.plans_name!r} for {p.network}, {p.gpu_memory_gb:g} GB GPU "
                           f"(nnU-Net's {p.nnunet_planner})"} for p in PRESETS.values()]
    return out + network_preset_records()


def records(kind: str, root: Path) -> list[dict]:
    """The records of one kind (:data:`KINDS`)."""
    makers = {"networks": network_records, "modules": module_records, "positions": position_records,
              "datasets": lambda: dataset_records(root), "presets": preset_records}
    if kind not in makers:
        raise ConfigError(f"salseg list takes one of {', '.join(KINDS)}, got {kind!r}")
    return makers[kind]()
