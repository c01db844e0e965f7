"""Provenance of a statistics call: how the numbers were made, per call and per arm, and the warnings a reviewer
needs (protocol hashes that differ between arms, a checkpoint chosen on the cases being tested).

Per arm (when it comes from salseg fold folders) it reads each fold's ``config.json`` and ``log.jsonl``:
checkpoint used for the validation predictions (``validation_checkpoint`` in config.json; salseg's trainer exports
the validation cases with the final weights, so ``final`` when absent), params, FLOPs, peak GPU memory (CUDA) or
peak RSS when config.json records them (``params``, ``flops``, ``peak_gpu_memory_bytes``, ``peak_rss_bytes``;
params otherwise counted from ``checkpoint_final.pt``'s weights, BatchNorm statistics excluded), training wall time
(sum of ``epoch_time`` in log.jsonl) and ``protocol_hash``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from salseg import __version__
from salseg.evaluate.definitions import CATALOGUE, SURFACE
from salseg.protocol import describe_diff, protocol_hash
from salseg.results import CHECKPOINT_FINAL, CONFIG_JSON, LOG_JSONL



def metric_implementation() -> str:
    """How each metric is computed, from the catalogue of salseg.evaluate.definitions (the text summary.json's
    ``metric_definitions`` records, parameters left as recorded there); signed metrics compared as |value|."""
    fill = {"tol": "(as recorded)", "width": "W (as recorded)", "match": "T (as recorded)",
            "inst": "as recorded"}
    parts = [f"{m.key}: {m.definition.replace('; ' + SURFACE, '').format(**fill)}"
             + (" (stats compares |value|, lower is better)" if m.signed else "") for m in CATALOGUE]
    return (f"salseg.evaluate.metrics, definitions of salseg.evaluate.definitions (recorded per summary.json under "
            f"metric_definitions); surface metrics: {SURFACE}. " + "; ".join(parts))


METRIC_IMPLEMENTATION = metric_implementation()
AGGREGATION = ("per case (label 'all' = mean over the foreground labels, NaN labels ignored), cases of one patient "
               "averaged per seed (dataset.json groups / group column), then the mean over the paired units; one seed "
               "per arm: paired test on the units; 2+ seeds: mixed model value ~ method + (1|case) + (1|case:method) "
               "+ (1|run), Satterthwaite df")
OPTIONAL_FIELDS = ("params", "flops", "peak_gpu_memory_bytes", "peak_rss_bytes")


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wall_time(fold_dir: Path) -> float | None:
    path = fold_dir / LOG_JSONL
    if not path.is_file():
        return None
    total, seen = 0.0, False
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("epoch_time"), (int, float)):
            total += float(rec["epoch_time"])
            seen = True
    return total if seen else None


def _checkpoint_params(fold_dir: Path) -> int | None:
    """Number of weights in ``checkpoint_final.pt`` (BatchNorm running statistics excluded), None without one."""
    path = fold_dir / CHECKPOINT_FINAL
    if not path.is_file():
        return None
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("model") or {}
    except Exception:  # an unreadable checkpoint only loses this figure
        return None
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(t.numel() for k, t in state.items() if hasattr(t, "numel") and not k.endswith(skip)))


def _protocol_of(cfg: dict) -> tuple[dict | None, str | None]:
    proto = cfg.get("protocol") if isinstance(cfg.get("protocol"), dict) and cfg.get("protocol") else None
    h = cfg.get("protocol_hash") or (protocol_hash(proto) if proto is not None else None)  # {} / "": none recorded
    return proto, h


def arm_provenance(fold_dirs: Sequence[Path]) -> dict | None:
    """Provenance of one arm from its fold folders, or None when it has none (a summary.json, a CSV)."""
    if not fold_dirs:
        return None
    folds = []
    for d in fold_dirs:
        cfg = _read(Path(d) / CONFIG_JSON)
        cfg = cfg if isinstance(cfg, dict) else {}
        proto, h = _protocol_of(cfg)
        entry = {"fold_dir": str(d), "fold": cfg.get("fold"), "seed": cfg.get("seed"),
                 "checkpoint": cfg.get("validation_checkpoint", "final" if cfg else None),
                 "training_wall_time_s": _wall_time(Path(d)), "protocol_hash": h, "protocol": proto,
                 "config_found": bool(cfg)}
        for k in OPTIONAL_FIELDS:
            entry[k] = cfg.get(k)
        if entry["params"] is None:
            entry["params"] = _checkpoint_params(Path(d))
        folds.append(entry)
    hashes = sorted({f["protocol_hash"] for f in folds if f["protocol_hash"]})
    walls = [f["training_wall_time_s"] for f in folds if f["training_wall_time_s"] is not None]
    out = {"folds": [{k: v for k, v in f.items() if k != "protocol"} for f in folds],
           "checkpoint": sorted({str(f["checkpoint"]) for f in folds if f["checkpoint"]}) or None,
           "protocol_hash": hashes[0] if len(hashes) == 1 else (hashes or None),
           "training_wall_time_s": sum(walls) if walls else None}
    for k in OPTIONAL_FIELDS:
        vals = [f[k] for f in folds if f[k] is not None]
        out[k] = max(vals) if vals else None
    out["_protocols"] = [f["protocol"] for f in folds if f["protocol"] is not None]
    return out


def protocol_warnings(arms: dict[str, dict | None]) -> list[str]:
    """A warning naming the differing fields when the arms' protocol hashes differ (or one arm mixes several)."""
    warnings = []
    by_arm = {}
    for name, prov in arms.items():
        if not prov:
            continue
        h = prov["protocol_hash"]
        if isinstance(h, list):
            warnings.append(f"{name}: its folds/seeds were trained with {len(h)} different protocols")
        if prov["_protocols"]:
            by_arm[name] = prov["_protocols"][0]
    unknown = [name for name, prov in arms.items() if prov and not prov["_protocols"]]
    if by_arm and unknown:
        warnings.append(f"{', '.join(unknown)}: config.json records no protocol, so its training recipe cannot be "
                        f"checked against the other arms'")
    hashes = {name: protocol_hash(p) for name, p in by_arm.items()}
    if len(set(hashes.values())) > 1:
        warnings.append("the arms were not trained by the same protocol (protocol_hash differs): "
                        + describe_diff(by_arm))
    return warnings


def checkpoint_warnings(arms: dict[str, dict | None]) -> list[str]:
    """Reporting the best epoch on the cases that chose it inflates the result: warn for every such arm."""
    out = []
    for name, prov in arms.items():
        if prov and prov["checkpoint"] and "best" in prov["checkpoint"]:
            out.append(f"{name}: its values come from checkpoint 'best', chosen on the same validation cases that are "
                       f"tested here (an optimistic estimate; use the final checkpoint or held-out cases)")
    return out


def call_provenance(*, empty: str, tie, n_boot: int, n_boot_rank: int, seed: int, test: str, correction: str,
                    alpha: float, spacing_sources: Sequence[str] = (), arms: dict | None = None) -> dict:
    clean = {name: ({k: v for k, v in p.items() if not k.startswith("_")} if p else None)
             for name, p in (arms or {}).items()}
    return {"salseg_version": __version__, "metric_implementation": METRIC_IMPLEMENTATION,
            "spacing_source": sorted(set(spacing_sources)) or None, "aggregation": AGGREGATION,
            "empty_policy": empty, "tie": tie, "n_boot": int(n_boot), "n_boot_rank": int(n_boot_rank),
            "seed": int(seed), "test": test, "correction": correction, "alpha": float(alpha),
            "confidence": 0.95, "bootstrap": "one seed per arm: scipy.stats.bootstrap, BCa, on the paired "
                                             "differences; 2+ seeds: percentile, resampling cases and runs within "
                                             "arms; none below 6 units",
            "arms": clean}
