"""dataset.json (nnU-Net v2 schema, read as is: classes, regions + ``regions_class_order``, an ``ignore`` label)
plus salseg's optional ``groups`` map. What the labels mean is :class:`~salseg.dataset.labels.LabelSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salseg.dataset.labels import LabelSpec, is_int, parse_labels
from salseg.errors import ConfigError
from salseg.fileio import read_json, write_json
from salseg.safepath import check_file_ending, check_name


@dataclass
class DatasetInfo:
    """The parts of dataset.json salseg uses. ``labels`` maps name -> value or list of values (nnU-Net form);
    ``label_spec`` is what they mean (built from ``labels`` and ``extra["regions_class_order"]`` when not given)."""

    name: str
    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]
    num_training: int
    file_ending: str
    groups: dict[str, str] = field(default_factory=dict)
    description: str = ""
    extra: dict = field(default_factory=dict)
    label_spec: LabelSpec | None = None

    def __post_init__(self) -> None:
        if self.label_spec is None:
            self.label_spec = parse_labels(self.labels, self.extra.get("regions_class_order"), "dataset.json")

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        """Values a label map holds besides the ignore value (background 0 first)."""
        return list(self.label_spec.label_values)

    @property
    def num_classes(self) -> int:
        """Network output channels: classes (background included), or one per region."""
        return self.label_spec.num_outputs

    @property
    def foreground_labels(self) -> list[int]:
        return self.label_spec.foreground_values

    def label_names(self) -> dict[int, str]:
        return dict(zip(self.label_spec.label_values, self.label_spec.label_names))

    def label_names_by_name(self) -> dict[str, int]:
        """name -> value of every value a label map holds (ignore excluded; region datasets: the painted values)."""
        return dict(zip(self.label_spec.label_names, self.label_spec.label_values))

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


KNOWN_FIELDS = {"name", "description", "channel_names", "labels", "numTraining", "file_ending", "groups"}
_TEXT_FIELDS = ("name", "description", "reference", "licence", "license", "release", "tensorImageSize",
                "overwrite_image_reader_writer")


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
    n = d.get("numTraining", 0)
    if not is_int(n):
        raise ConfigError(f"{source}: field 'numTraining' must be a whole number of cases, got {n!r}")
    if n < 0:
        raise ConfigError(f"{source}: field 'numTraining' must be >= 0, got {n}")
    spec = parse_labels(d["labels"], d.get("regions_class_order"), source)
    return DatasetInfo(
        name=d.get("name", ""),
        channel_names=_channel_names(d["channel_names"], source),
        labels={k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d["labels"].items()},
        num_training=n,
        file_ending=check_file_ending(d["file_ending"], source),
        groups=_groups(d.get("groups"), source),
        description=d.get("description", ""),
        extra={k: v for k, v in d.items() if k not in KNOWN_FIELDS},
        label_spec=spec,
    )


def load_dataset_json(raw_dataset_dir: str | Path) -> DatasetInfo:
    path = Path(raw_dataset_dir) / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (a raw dataset needs a dataset.json)")
    return parse_dataset_json(read_json(path), str(path))


def write_dataset_json(raw_dataset_dir: str | Path, info: DatasetInfo) -> None:
    write_json(Path(raw_dataset_dir) / "dataset.json", info.to_json())
