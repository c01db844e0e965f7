"""What the labels of a dataset mean: plain classes, nnU-Net v2 regions, an ignore label (docs/datasets.md).

nnU-Net v2's ``dataset.json`` is read as is:

- **classes**: ``labels`` maps a name to one value (``{"background": 0, "RV": 1, ...}``); the network predicts one
  softmax channel per value.
- **regions**: some label maps a name to a list of values (``{"background": 0, "whole tumor": [1, 2, 3],
  "tumor core": [2, 3], "enhancing tumor": [3]}``) and ``regions_class_order`` names, per region, the value written
  for it in a predicted label map (later regions overwrite earlier ones). The network predicts one sigmoid channel
  per region (every label but background and ignore, in ``labels`` order).
- **ignore**: ``"ignore": N`` marks unannotated voxels; N must be the largest value. Those voxels carry no target.

:class:`LabelSpec` is the one typed description every later stage reads (plans, training targets, prediction,
evaluation); :func:`parse_labels` builds it from the dataset.json fields and refuses what would train wrongly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from salseg.errors import ConfigError

log = logging.getLogger(__name__)

MAX_LABEL_VALUE = 2**31 - 1
IGNORE_NAME = "ignore"


@dataclass(frozen=True)
class LabelSpec:
    """Classes or regions of a dataset, and its ignore value.

    ``label_values``: the values a label map holds besides ``ignore`` (sorted, 0 first); in class mode output
    channel i is value ``label_values[i]``. ``regions``: one tuple of label values per output channel (region mode
    only), named ``region_names``; ``regions_class_order[i]`` is the value painted for region i.
    """

    label_values: tuple[int, ...]
    label_names: tuple[str, ...] = ()
    regions: tuple[tuple[int, ...], ...] = ()
    region_names: tuple[str, ...] = ()
    regions_class_order: tuple[int, ...] = ()
    ignore: int | None = None

    @property
    def has_regions(self) -> bool:
        return bool(self.regions)

    @property
    def num_outputs(self) -> int:
        """Network output channels: one per region, else one per class (background included)."""
        return len(self.regions) if self.regions else len(self.label_values)

    @property
    def foreground_values(self) -> list[int]:
        return [v for v in self.label_values if v != 0]

    @property
    def allowed_values(self) -> list[int]:
        """Every value a reference label map may hold (the ignore value included)."""
        return list(self.label_values) + ([self.ignore] if self.ignore is not None else [])

    def region_masks(self, seg: np.ndarray) -> np.ndarray:
        """(R, *seg.shape) bool: region r = voxels whose label VALUE is one of ``regions[r]``."""
        return np.stack([np.isin(seg, r) for r in self.regions]) if self.regions else np.zeros((0,) + seg.shape, bool)

    def regions_to_labels(self, masks: np.ndarray) -> np.ndarray:
        """(R, *spatial) bool region masks -> a label map painted in ``regions_class_order`` (never ``ignore``)."""
        if masks.shape[0] != len(self.regions):
            raise ValueError(f"{masks.shape[0]} region masks for {len(self.regions)} regions")
        hi = max(self.label_values)
        out = np.zeros(masks.shape[1:], np.uint8 if hi < 256 else np.int32)
        for value, m in zip(self.regions_class_order, masks):
            out[m] = value
        return out

    def to_json(self) -> dict:
        d: dict = {"label_values": list(self.label_values), "label_names": list(self.label_names)}
        if self.regions:
            d.update(regions=[list(r) for r in self.regions], region_names=list(self.region_names),
                     regions_class_order=list(self.regions_class_order))
        if self.ignore is not None:
            d["ignore"] = int(self.ignore)
        return d

    @classmethod
    def from_json(cls, d: dict, source: str) -> "LabelSpec":
        """The form :meth:`to_json` writes (plans.json, config.json); validated like dataset.json."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: field 'label_spec' must be an object, got {d!r}")
        labels: dict = dict(zip(d.get("label_names") or [], d.get("label_values") or []))
        extra: dict = {}
        if d.get("regions"):
            labels = {n: v for n, v in zip(d.get("label_names") or [], d.get("label_values") or []) if v == 0}
            labels.update(zip(d.get("region_names") or [], d["regions"]))
            extra["regions_class_order"] = d.get("regions_class_order")
        if d.get("ignore") is not None:
            labels[IGNORE_NAME] = d["ignore"]
        spec = parse_labels(labels, extra.get("regions_class_order"), source, field="label_spec")
        if spec.label_values != tuple(d.get("label_values") or ()):
            raise ConfigError(f"{source}: field 'label_spec.label_values' {d.get('label_values')} does not match its "
                              f"regions/labels")
        return spec

    @classmethod
    def plain(cls, label_values, label_names=()) -> "LabelSpec":
        """Class mode from a list of values (older plans/config without a label_spec)."""
        values = tuple(int(v) for v in label_values)
        return cls(values, tuple(label_names) or tuple(str(v) for v in values))


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _value(v, where: str, source: str) -> int:
    if not is_int(v):
        raise ConfigError(f"{source}: field '{where}' must be an integer label value, got {v!r}")
    if not 0 <= v <= MAX_LABEL_VALUE:
        raise ConfigError(f"{source}: field '{where}' must be between 0 and {MAX_LABEL_VALUE}, got {v}")
    return int(v)


def _entries(labels, source: str, field: str) -> tuple[dict[str, int | tuple[int, ...]], int | None]:
    """name -> value or tuple of values (background and ignore checked), and the ignore value."""
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"{source}: field '{field}' must be a non-empty object like {{\"background\": 0}}")
    out: dict[str, int | tuple[int, ...]] = {}
    ignore = None
    for k, v in labels.items():
        where = f"{field}.{k}"
        if not isinstance(k, str) or not k.strip():
            raise ConfigError(f"{source}: field '{field}' has an empty label name")
        if isinstance(v, (list, tuple)):
            if not v:
                raise ConfigError(f"{source}: field '{where}': a region needs at least one label value")
            vals = tuple(_value(x, where, source) for x in v)
            if len(set(vals)) != len(vals):
                raise ConfigError(f"{source}: field '{where}': region {list(vals)} repeats a value")
            out[k] = vals   # a 1-element list is a plain value unless the dataset has regions (as nnU-Net)
        else:
            out[k] = _value(v, where, source)
        if k == IGNORE_NAME:
            if not isinstance(out[k], int):
                raise ConfigError(f"{source}: field '{where}' must be one integer value (the ignore label), got {v!r}")
            ignore = out.pop(k)
    return out, ignore


def parse_labels(labels, regions_class_order, source: str, field: str = "labels") -> LabelSpec:
    """``labels`` (+ ``regions_class_order``) of a dataset.json -> :class:`LabelSpec`; bad input -> ConfigError."""
    entries, ignore = _entries(labels, source, field)
    has_regions = any(isinstance(v, tuple) and len(v) > 1 for v in entries.values())
    if not has_regions:
        entries = {k: (v[0] if isinstance(v, tuple) else v) for k, v in entries.items()}
        if regions_class_order is not None:
            raise ConfigError(f"{source}: field 'regions_class_order' is given but no label is a region (a list of "
                              f"values like \"whole tumor\": [1, 2, 3])")
        by_value: dict[int, str] = {}
        for k, v in entries.items():
            if v in by_value:
                raise ConfigError(f"{source}: field '{field}': labels {by_value[v]!r} and {k!r} share the value {v}; "
                                  f"each label needs its own value")
            by_value[v] = k
        if 0 not in by_value:
            raise ConfigError(f"{source}: field '{field}' must declare background = 0")
        values = tuple(sorted(by_value))
        spec = LabelSpec(values, tuple(by_value[v] for v in values))
    else:
        spec = _region_spec(entries, regions_class_order, source, field)
    if ignore is not None and ignore <= max(spec.label_values):
        raise ConfigError(f"{source}: field '{field}.{IGNORE_NAME}' is {ignore} but must be the largest label value "
                          f"(another label uses {max(spec.label_values)})")
    return LabelSpec(spec.label_values, spec.label_names, spec.regions, spec.region_names, spec.regions_class_order,
                     ignore)


def _region_spec(entries: dict, order, source: str, field: str) -> LabelSpec:
    background = [k for k, v in entries.items() if v == 0 or v == (0,)]
    if not background:
        raise ConfigError(f"{source}: field '{field}' must declare background = 0")
    regions = {k: (v if isinstance(v, tuple) else (v,)) for k, v in entries.items() if k not in background}
    if order is None:
        raise ConfigError(f"{source}: field '{field}' defines regions (lists of values) but 'regions_class_order' is "
                          f"missing (one label value per region, e.g. [1, 2, 3])")
    if not isinstance(order, (list, tuple)) or len(order) != len(regions):
        raise ConfigError(f"{source}: field 'regions_class_order' must list one label value per region "
                          f"({len(regions)}: {', '.join(regions)}), got {order!r}")
    order_t = tuple(_value(v, "regions_class_order", source) for v in order)
    dup = sorted({v for v in order_t if order_t.count(v) > 1})
    if dup:
        raise ConfigError(f"{source}: field 'regions_class_order' {list(order_t)} has overlapping entries "
                          f"(value {dup[0]} twice): a predicted label map could not tell those regions apart")
    seen: dict[tuple, str] = {}
    for name, r in regions.items():
        if 0 in r:
            raise ConfigError(f"{source}: field '{field}.{name}': a region may not contain background (0)")
        key = tuple(sorted(r))
        if key in seen:
            raise ConfigError(f"{source}: field '{field}': regions {seen[key]!r} and {name!r} are the same values "
                              f"{list(key)}")
        seen[key] = name
    for (name, r), v in zip(regions.items(), order_t):
        if v not in r:
            log.warning("%s: regions_class_order paints %d for region %r, which is not one of its values %s", source,
                        v, name, list(r))
    values = tuple(sorted({0} | {v for r in regions.values() for v in r} | set(order_t)))
    names = {v: f"label_{v}" for v in values}
    names[0] = background[0]
    for name, r in regions.items():   # a region of one value names that value
        if len(r) == 1:
            names[r[0]] = name
    return LabelSpec(values, tuple(names[v] for v in values), tuple(regions.values()), tuple(regions),
                     order_t)


def missing_region_values(spec: LabelSpec, class_counts: dict) -> list[tuple[str, int]]:
    """(region name, value) for every region value that no label map contains (``class_counts``: value -> voxels)."""
    seen = {int(v) for v, n in class_counts.items() if int(n) > 0}
    return [(name, v) for name, r in zip(spec.region_names, spec.regions) for v in r if v not in seen]


def label_spec_of(plans: dict, source: str = "plans.json") -> LabelSpec:
    """The label spec a plans (or run config) dict records; plain classes for files written before it existed."""
    if plans.get("label_spec") is not None:
        return LabelSpec.from_json(plans["label_spec"], source)
    values = [int(v) for v in plans["label_values"]]
    names = {int(v): k for k, v in (plans.get("labels") or {}).items() if is_int(v)}
    return LabelSpec.plain(values, tuple(names.get(v, str(v)) for v in values))
