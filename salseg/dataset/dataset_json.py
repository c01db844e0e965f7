"""dataset.json (nnU-Net v2 schema, read as is) plus salseg's optional ``groups`` map."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salseg.errors import ConfigError
from salseg.fileio import read_json, write_json


@dataclass
class DatasetInfo:
    """The parts of dataset.json salseg uses. ``labels`` maps name -> value (nnU-Net form)."""

    name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    num_training: int
    file_ending: str
    groups: dict[str, str] = field(default_factory=dict)
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        return sorted(set(int(v) for v in self.labels.values()))

    @property
    def num_classes(self) -> int:
        """Number of output classes (background included) = number of declared label values."""
        return len(self.label_values)

    @property
    def foreground_labels(self) -> list[int]:
        return [v for v in self.label_values if v != 0]

    def label_names(self) -> dict[int, str]:
        return {int(v): k for k, v in self.labels.items()}

    def is_ct(self) -> bool:
        return any(str(v).strip().upper() == "CT" for v in self.channel_names.values())

    def group_of(self, case_id: str) -> str:
        return self.groups.get(case_id, case_id)

    def to_json(self) -> dict:
        d = dict(self.extra)
        d.update({
            "name": self.name,
            "description": self.description,
            "channel_names": self.channel_names,
            "labels": self.labels,
            "numTraining": self.num_training,
            "file_ending": self.file_ending,
        })
        if self.groups:
            d["groups"] = self.groups
        return d


def parse_dataset_json(d: dict, source: str) -> DatasetInfo:
    """Validate a dataset.json dict; errors name ``source`` and the field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in d:
            raise ConfigError(f"{source}: missing field '{key}'")
    ch = d["channel_names"]
    if not isinstance(ch, dict) or not ch:
        raise ConfigError(f"{source}: field 'channel_names' must be a non-empty object like {{\"0\": \"MRI\"}}")
    if sorted(int(k) for k in ch) != list(range(len(ch))):
        raise ConfigError(f"{source}: field 'channel_names' keys must be 0..{len(ch) - 1}")
    labels = d["labels"]
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"{source}: field 'labels' must be a non-empty object like {{\"background\": 0}}")
    clean = {}
    for k, v in labels.items():
        if isinstance(v, (list, tuple)):
            raise ConfigError(f"{source}: field 'labels.{k}': region-based labels (lists) are not supported")
        try:
            clean[str(k)] = int(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: field 'labels.{k}' must be an integer, got {v!r}") from None
    if 0 not in clean.values():
        raise ConfigError(f"{source}: field 'labels' must declare background = 0")
    ending = d["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        raise ConfigError(f"{source}: field 'file_ending' must look like '.nii.gz', got {ending!r}")
    groups = d.get("groups", {}) or {}
    if not isinstance(groups, dict):
        raise ConfigError(f"{source}: field 'groups' must map case id -> group id")
    known = {"name", "description", "channel_names", "labels", "numTraining", "file_ending", "groups"}
    return DatasetInfo(
        name=str(d.get("name", "")),
        channel_names={str(k): str(v) for k, v in ch.items()},
        labels=clean,
        num_training=int(d.get("numTraining", 0)),
        file_ending=ending,
        groups={str(k): str(v) for k, v in groups.items()},
        description=str(d.get("description", "")),
        extra={k: v for k, v in d.items() if k not in known},
    )


def load_dataset_json(raw_dataset_dir: str | Path) -> DatasetInfo:
    path = Path(raw_dataset_dir) / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (a raw dataset needs a dataset.json)")
    return parse_dataset_json(read_json(path), str(path))


def write_dataset_json(raw_dataset_dir: str | Path, info: DatasetInfo) -> None:
    write_json(Path(raw_dataset_dir) / "dataset.json", info.to_json())
