"""The protocol fingerprint of a training run: everything that defines its recipe except the module.

``config.json`` carries ``protocol`` (a flat JSON object: optimizer, lr, epochs, batch, patch, augmentation,
deep supervision, loss, CPU defaults applied, salseg version, ...) and ``protocol_hash`` (:func:`protocol_hash`).
Two arms of one comparison were trained the same way exactly when their hashes agree; :func:`protocol_diff` names
the fields that differ. This module only hashes and compares; the trainer decides what goes into a protocol.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats as JSON writes them: the bytes that are hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def protocol_hash(protocol: Mapping[str, Any]) -> str:
    """sha256 (hex) of the protocol's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(protocol)).encode("ascii")).hexdigest()


def protocol_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Sorted names of the fields whose values differ between two protocols (a field missing on one side counts)."""
    return sorted(k for k in set(a) | set(b)
                  if (k in a) != (k in b) or canonical_json(a[k]) != canonical_json(b[k]))


def describe_diff(protocols: Mapping[str, Mapping[str, Any]]) -> str:
    """One line naming, for arms (label -> protocol) whose protocols differ, each differing field and its values."""
    labels = list(protocols)
    fields = sorted({f for x in labels for y in labels for f in protocol_diff(protocols[x], protocols[y])})
    parts = []
    for f in fields:
        values = ", ".join(f"{lab}={canonical_json(protocols[lab].get(f))}" for lab in labels)
        parts.append(f"{f} ({values})")
    return "; ".join(parts)
