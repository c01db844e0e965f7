"""plans.json as dataclasses, validated once on load: every problem names the file and the field.

The one way to read plans: ``read_plans(path, plans_name)`` (or ``load_plans(root, dataset, plans_name)``, which
finds the file) returns a typed :class:`Plans`; ``plans.configuration(name)`` one typed :class:`Configuration`.
Names: ``plans_name`` is a plans' *name* (``plans``, ``plans_resencm``), ``plans`` the whole typed plans,
``configuration`` one of its configurations (``2d``, ``2.5d``, ``3d_fullres``). Several plans live in one plans.json
(docs/formats.md): the top level is the plans called ``plans``, and ``named_plans`` holds the others with their own
configurations; ``select_plans`` returns one of them as a whole plans dict (the raw form ``Plans.from_dict`` reads).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from salseg.checks import check_multiple
from salseg.errors import ConfigError, SalsegError
from salseg.fileio import read_json
from salseg.safepath import check_file_ending, check_name

SCHEMES = ("ct", "zscore", "rgb")


def _need(d: dict, key: str, where: str, source: str):
    if key not in d:
        raise ConfigError(f"{source}: missing field '{where}{key}'")
    return d[key]


def _ints(v: Any, n: int | None, name: str, source: str, positive: bool = True) -> list[int]:
    if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):  # 96.0 or true is not an integer size
        raise ConfigError(f"{source}: field '{name}' must be a list of {n or 'some'} integers, got {v!r}")
    out = [int(x) for x in v]
    if positive and any(x < 1 for x in out):
        raise ConfigError(f"{source}: field '{name}' must hold positive integers, got {v!r}")
    return out


def _floats(v: Any, n: int, name: str, source: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != n or not all(isinstance(x, (int, float)) for x in v):
        raise ConfigError(f"{source}: field '{name}' must be a list of {n} numbers, got {v!r}")
    out = [float(x) for x in v]
    if any(x <= 0 for x in out):
        raise ConfigError(f"{source}: field '{name}' must be positive, got {v!r}")
    return out


@dataclass
class Configuration:
    dim: int
    data_identifier: str
    spacing: list[float]
    patch_size: list[int]
    median_shape: list[float]
    batch_size: int
    normalization: list[str]
    intensity_properties: dict
    pool_op_kernel_sizes: list[list[int]]
    conv_kernel_sizes: list[list[int]]
    features_per_stage: list[int]
    use_mask_for_norm: list[bool] = field(default_factory=list)
    neighbours: int | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, name: str, num_channels: int, source: str) -> "Configuration":
        w = f"configurations.{name}."
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: field 'configurations.{name}' must be an object")
        dim = _need(d, "dim", w, source)
        if dim not in (2, 3):
            raise ConfigError(f"{source}: field '{w}dim' must be 2 or 3, got {dim!r}")
        ident = _need(d, "data_identifier", w, source)
        check_name(ident, source, w + "data_identifier")
        spacing = _floats(_need(d, "spacing", w, source), dim, w + "spacing", source)
        patch = _ints(_need(d, "patch_size", w, source), dim, w + "patch_size", source)
        median = _floats(_need(d, "median_shape", w, source), dim, w + "median_shape", source)
        bs = _need(d, "batch_size", w, source)
        if not isinstance(bs, int) or bs < 1:
            raise ConfigError(f"{source}: field '{w}batch_size' must be a positive integer, got {bs!r}")
        norm = _need(d, "normalization", w, source)
        if not isinstance(norm, list) or len(norm) != num_channels or any(s not in SCHEMES for s in norm):
            raise ConfigError(f"{source}: field '{w}normalization' must list one of {', '.join(SCHEMES)} per "
                              f"channel ({num_channels}), got {norm!r}")
        inten = d.get("intensity_properties", {}) or {}
        if not isinstance(inten, dict):
            raise ConfigError(f"{source}: field '{w}intensity_properties' must be an object")
        for c, s in enumerate(norm):
            if s == "ct":
                p = inten.get(str(c), {})
                for k in ("mean", "std", "percentile_00_5", "percentile_99_5"):
                    if not isinstance(p.get(k), (int, float)):
                        raise ConfigError(f"{source}: field '{w}intensity_properties.{c}.{k}' is needed by ct "
                                          f"normalisation")
        pools = _need(d, "pool_op_kernel_sizes", w, source)
        convs = _need(d, "conv_kernel_sizes", w, source)
        if not isinstance(pools, list) or not isinstance(convs, list) or len(pools) != len(convs) or not pools:
            raise ConfigError(f"{source}: fields '{w}pool_op_kernel_sizes' and '{w}conv_kernel_sizes' must be "
                              f"non-empty lists of equal length")
        pools = [_ints(p, dim, f"{w}pool_op_kernel_sizes[{i}]", source) for i, p in enumerate(pools)]
        convs = [_ints(k, dim, f"{w}conv_kernel_sizes[{i}]", source) for i, k in enumerate(convs)]
        feats = _ints(_need(d, "features_per_stage", w, source), len(pools), w + "features_per_stage", source)
        stride = [1] * dim
        for p in pools:
            stride = [a * b for a, b in zip(stride, p)]
        check_multiple(patch, stride, f"{source}: field '{w}patch_size'", f"'{w}pool_op_kernel_sizes'")
        mask = d.get("use_mask_for_norm", [False] * num_channels)
        if not isinstance(mask, list) or len(mask) != num_channels or not all(isinstance(m, bool) for m in mask):
            raise ConfigError(f"{source}: field '{w}use_mask_for_norm' must be one true/false per channel")
        neighbours = d.get("neighbours")
        if neighbours is not None and (not isinstance(neighbours, int) or neighbours < 1 or neighbours % 2 == 0):
            raise ConfigError(f"{source}: field '{w}neighbours' must be an odd positive integer, got {neighbours!r}")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(dim, ident, spacing, patch, median, bs, list(norm), inten, pools, convs, feats, list(mask),
                   neighbours, {k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        if d["neighbours"] is None:
            d.pop("neighbours")
        d.update(extra)
        return d


@dataclass
class Plans:
    dataset_name: str
    num_channels: int
    num_classes: int
    labels: dict[str, int]
    label_values: list[int]
    channel_names: dict[str, str]
    configurations: dict[str, Configuration]
    seed: int = 0
    gpu_memory_gb: float = 8.0
    salseg_version: str = ""
    original_median_spacing: list[float] = field(default_factory=list)
    original_median_shape: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    source: str = field(default="plans.json", compare=False, repr=False)  # the file read; not written

    @property
    def plans_name(self) -> str:
        return str(self.extra.get("plans_name", DEFAULT_PLANS))

    @property
    def network(self) -> str | None:
        """The network the plans were sized for (``unet``, ``resenc``); None in plans older than presets."""
        return self.extra.get("network")

    @property
    def label_spec(self):
        """The plans' :class:`salseg.dataset.labels.LabelSpec` (plain classes for plans written before regions)."""
        from salseg.dataset.labels import label_spec_of

        return label_spec_of({"label_spec": self.extra.get("label_spec"), "label_values": self.label_values,
                              "labels": self.labels}, self.source)

    def configuration(self, name: str) -> Configuration:
        """The configuration ``name``, or an error naming the file and the configurations it has."""
        if name not in self.configurations:
            raise ConfigError(f"{self.source}: no configuration {name!r} in plans {self.plans_name!r}; it has "
                              f"{', '.join(sorted(self.configurations)) or 'none'}")
        return self.configurations[name]

    @classmethod
    def from_dict(cls, d: dict, source: str = "plans.json") -> "Plans":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        name = check_name(_need(d, "dataset_name", "", source), source, "dataset_name")
        if "file_ending" in d:
            check_file_ending(d["file_ending"], source)
        C = _need(d, "num_channels", "", source)
        if not isinstance(C, int) or C < 1:
            raise ConfigError(f"{source}: field 'num_channels' must be a positive integer, got {C!r}")
        labels = _need(d, "labels", "", source)
        if not isinstance(labels, dict) or not labels:
            raise ConfigError(f"{source}: field 'labels' must be a non-empty object name -> value")
        values = _ints(_need(d, "label_values", "", source), None, "label_values", source, positive=False)
        if values != sorted(set(values)) or 0 not in values:
            raise ConfigError(f"{source}: field 'label_values' must be sorted, unique and include 0, got {values}")
        if sorted(set(int(v) for v in labels.values())) != values:
            raise ConfigError(f"{source}: field 'label_values' {values} does not match the values of 'labels'")
        K = _need(d, "num_classes", "", source)
        if K != len(values):
            raise ConfigError(f"{source}: field 'num_classes' is {K!r} but 'label_values' has {len(values)} values")
        confs = _need(d, "configurations", "", source)
        if not isinstance(confs, dict) or not confs:
            raise ConfigError(f"{source}: field 'configurations' must be a non-empty object")
        parsed = {k: Configuration.from_dict(v, k, C, source) for k, v in confs.items()}
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "source")}
        return cls(str(name), C, int(K), {str(k): int(v) for k, v in labels.items()}, values,
                   dict(d.get("channel_names", {})), parsed, int(d.get("seed", 0)),
                   float(d.get("gpu_memory_gb", 8.0)), str(d.get("salseg_version", "")),
                   list(d.get("original_median_spacing", [])), list(d.get("original_median_shape", [])),
                   {k: v for k, v in d.items() if k not in known}, source)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "configurations", "source")}
        d["configurations"] = {k: c.to_dict() for k, c in self.configurations.items()}
        d.update(self.extra)
        return d


NAMED_PLANS = "named_plans"
DEFAULT_PLANS = "plans"


def plans_names(d: dict) -> list[str]:
    """The plans names a plans.json holds: ``plans`` (its top level) and every entry of ``named_plans``."""
    named = d.get(NAMED_PLANS) or {}
    return [DEFAULT_PLANS] + sorted(named) if isinstance(named, dict) else [DEFAULT_PLANS]


def select_plans(d: dict, name: str = DEFAULT_PLANS, source: str = "plans.json") -> dict:
    """The plans called ``name`` as a whole plans dict (docs/formats.md): ``plans`` is the top level as it always
    was; a named plans shares the dataset-level fields and brings its own configurations, preset and network."""
    base = {k: v for k, v in d.items() if k != NAMED_PLANS}
    if name == DEFAULT_PLANS:
        return {**base, "plans_name": DEFAULT_PLANS}
    named = d.get(NAMED_PLANS) or {}
    if not isinstance(named, dict) or name not in named:
        raise ConfigError(f"{source}: no plans named {name!r}; planned: {', '.join(plans_names(d))} "
                          f"(plan it with `salseg plan DATASET --preset ...`)")
    entry = named[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("configurations"), dict):
        raise ConfigError(f"{source}: field '{NAMED_PLANS}.{name}.configurations' must be an object")
    return {**base, **entry, "plans_name": name}


def _named_plans(d: dict, source: str) -> dict[str, Plans]:
    """Every named plans of a plans.json dict, each validated as a whole plans."""
    named = d.get(NAMED_PLANS)
    if named is not None and not isinstance(named, dict):
        raise ConfigError(f"{source}: field '{NAMED_PLANS}' must be an object plans name -> plans")
    out = {}
    for name in named or {}:
        try:
            out[name] = Plans.from_dict(select_plans(d, name, source), source)
        except ConfigError as e:
            raise ConfigError(f"{e} (in '{NAMED_PLANS}.{name}')") from None
    return out


def validate_plans(d: dict, source: str = "plans.json") -> dict:
    """Validate a plans dict about to be written (raises ConfigError naming ``source`` and the field) and return it
    normalised, as plans.json holds it; every named plans in it is validated as a whole plans too."""
    out = Plans.from_dict(d, source).to_dict()
    _named_plans(d, source)
    return out


def plans_path(root: str | Path, dataset: str) -> Path:
    from salseg.results import plans_file, preprocessed_dir

    root = Path(root)
    if not preprocessed_dir(root, dataset).is_dir():
        from salseg.dataset.naming import resolve_dataset
        try:
            dataset = resolve_dataset(root, dataset)
        except SalsegError:  # no raw dataset either: report the plans file we looked for
            pass
    return plans_file(root, dataset)


def read_plans(path: str | Path, plans_name: str = DEFAULT_PLANS) -> Plans:
    """The plans ``plans_name`` (default: the top level) of the plans.json at ``path``, typed and validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no plans found; run `salseg plan` for this dataset first")
    source = str(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    every = {DEFAULT_PLANS: Plans.from_dict(select_plans(data, DEFAULT_PLANS, source), source),
             **_named_plans(data, source)}  # the file as a whole is valid, or nothing is read from it
    if plans_name not in every:
        select_plans(data, plans_name, source)  # the error naming the plans the file has
    return every[plans_name]


# what train and predict say and do when no network is named
DEFAULT_NETWORK_HELP = "default: the one the plans were sized for (unet, or resenc for ResEnc plans)"


def default_network(root: str | Path, dataset: str, plans_name: str = DEFAULT_PLANS) -> str:
    """The network a run or a prediction takes when none is named: the plans' own (unet for ``plans``)."""
    return str(load_plans(root, dataset, plans_name).network or "unet")


def load_plans(root: str | Path, dataset: str, plans_name: str = DEFAULT_PLANS) -> Plans:
    """The plans ``plans_name`` of ``dataset`` (name, full name or id), typed and validated."""
    return read_plans(plans_path(root, dataset), plans_name)
