"""dataset.json (nnU-Net v2 schema, read as is) plus salseg's optional ``groups`` map."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salseg.errors import ConfigError
from salseg.fileio import read_json, write_json
from salseg.safepath import check_file_ending, check_name


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


MAX_LABEL_VALUE = 2**31 - 1
KNOWN_FIELDS = {"name", "description", "channel_names", "labels", "numTraining", "file_ending", "groups"}
_TEXT_FIELDS = ("name", "description", "reference", "licence", "license", "release", "tensorImageSize",
                "overwrite_image_reader_writer")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _channel_names(ch, source: str) -> dict[str, str]:
    if not isinstance(ch, dict) or not ch:
        raise ConfigError(f"{source}: field 'channel_names' must be a non-empty object like {{\"0\": \"MRI\"}}")
    out = {}
    for k, v in ch.items():
        if not (k.isascii() and k.isdigit()) or (len(k) > 1 and k[0] == "0"):
            raise ConfigError(f"{source}: field 'channel_names' key {k!r} must be a channel number 0, 1, 2 ...")
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{source}: field 'channel_names.{k}' must be a non-empty name like \"MRI\" or \"CT\", "
                              f"got {v!r}")
        out[k] = v
    keys = sorted(int(k) for k in out)
    if keys != list(range(len(out))):
        raise ConfigError(f"{source}: field 'channel_names' keys must be 0..{len(out) - 1} without gaps, got "
                          f"{', '.join(str(k) for k in keys)}")
    return {str(k): out[str(k)] for k in keys}


def _labels(labels, source: str) -> dict[str, int]:
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"{source}: field 'labels' must be a non-empty object like {{\"background\": 0}}")
    clean: dict[str, int] = {}
    by_value: dict[int, str] = {}
    for k, v in labels.items():
        if not k.strip():
            raise ConfigError(f"{source}: field 'labels' has an empty label name")
        if isinstance(v, (list, tuple)):
            raise ConfigError(f"{source}: field 'labels.{k}': region-based labels (lists) are not supported")
        if not _is_int(v):
            raise ConfigError(f"{source}: field 'labels.{k}' must be an integer label value, got {v!r}")
        if not 0 <= v <= MAX_LABEL_VALUE:
            raise ConfigError(f"{source}: field 'labels.{k}' must be between 0 and {MAX_LABEL_VALUE}, got {v}")
        if v in by_value:
            raise ConfigError(f"{source}: field 'labels': labels {by_value[v]!r} and {k!r} share the value {v}; "
                              f"each label needs its own value")
        by_value[v] = k
        clean[k] = v
    if 0 not in by_value:
        raise ConfigError(f"{source}: field 'labels' must declare background = 0")
    return clean


def _groups(groups, source: str) -> dict[str, str]:
    if groups is None:
        return {}
    if not isinstance(groups, dict):
        raise ConfigError(f"{source}: field 'groups' must map case id -> group id")
    out = {}
    for k, v in groups.items():
        check_name(k, source, f"groups.{k}")
        if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v) == "":
            raise ConfigError(f"{source}: field 'groups.{k}' must be a group id (text), got {v!r}")
        out[k] = str(v)
    return out


def parse_dataset_json(d: dict, source: str) -> DatasetInfo:
    """Validate a dataset.json dict (every nnU-Net v2 field salseg reads); errors name ``source`` and the field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in d:
            raise ConfigError(f"{source}: missing field '{key}'")
    for key in _TEXT_FIELDS:
        if key in d and not isinstance(d[key], str):
            raise ConfigError(f"{source}: field '{key}' must be text, got {d[key]!r}")
    if "regions_class_order" in d:
        raise ConfigError(f"{source}: field 'regions_class_order': region-based training is not supported")
    n = d.get("numTraining", 0)
    if not _is_int(n):
        raise ConfigError(f"{source}: field 'numTraining' must be a whole number of cases, got {n!r}")
    if n < 0:
        raise ConfigError(f"{source}: field 'numTraining' must be >= 0, got {n}")
    return DatasetInfo(
        name=d.get("name", ""),
        channel_names=_channel_names(d["channel_names"], source),
        labels=_labels(d["labels"], source),
        num_training=n,
        file_ending=check_file_ending(d["file_ending"], source),
        groups=_groups(d.get("groups"), source),
        description=d.get("description", ""),
        extra={k: v for k, v in d.items() if k not in KNOWN_FIELDS},
    )


def load_dataset_json(raw_dataset_dir: str | Path) -> DatasetInfo:
    path = Path(raw_dataset_dir) / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (a raw dataset needs a dataset.json)")
    return parse_dataset_json(read_json(path), str(path))


def write_dataset_json(raw_dataset_dir: str | Path, info: DatasetInfo) -> None:
    write_json(Path(raw_dataset_dir) / "dataset.json", info.to_json())
