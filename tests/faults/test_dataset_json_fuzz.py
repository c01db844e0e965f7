"""Fault 5: every malformed dataset.json ends in exit 2 with a message naming dataset.json and the field; byte flips
of a valid file never give a traceback (exit 0 or 2)."""

import json
import random

import pytest

from salseg import results as R
from salseg.dataset.dataset_json import load_dataset_json
from salseg.errors import ConfigError
from tests.faults.helpers import DS, NAME, cli, raw_dataset

VALID = {"name": "Fault", "channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
         "numTraining": 4, "file_ending": ".nii.gz"}


def _variant(**changes):
    d = json.loads(json.dumps(VALID))
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


VARIANTS = {
    "non-utf8": json.dumps(VALID).replace("Fault", "F\udcffault", 1).encode("utf-8", "surrogateescape"),
    "latin1": json.dumps({**VALID, "description": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
    "numTraining string": _variant(numTraining="four"),
    "numTraining float": _variant(numTraining=4.0),
    "numTraining inf": json.dumps(VALID).replace('"numTraining": 4', '"numTraining": 1e999').encode(),
    "numTraining NaN": json.dumps(VALID).replace('"numTraining": 4', '"numTraining": NaN').encode(),
    "numTraining negative": _variant(numTraining=-1),
    "numTraining bool": _variant(numTraining=True),
    "channel key a": _variant(channel_names={"a": "MRI"}),
    "channel key gap": _variant(channel_names={"0": "MRI", "2": "T2"}),
    "channel key 00": _variant(channel_names={"00": "MRI"}),
    "channel name empty": _variant(channel_names={"0": ""}),
    "channel name number": _variant(channel_names={"0": 5}),
    "channel_names list": _variant(channel_names=["MRI"]),
    "channel_names missing": _variant(channel_names=...),
    "duplicate label values": _variant(labels={"background": 0, "RV": 1, "MLV": 1}),
    "label 1.5": _variant(labels={"background": 0, "a": 1.5}),
    "label 1.0": _variant(labels={"background": 0, "a": 1.0}),
    "label string": _variant(labels={"background": 0, "a": "1"}),
    "label negative": _variant(labels={"background": 0, "a": -1}),
    "label huge": _variant(labels={"background": 0, "a": 2**40}),
    "label inf": json.dumps(VALID).replace('"a": 1', '"a": Infinity').encode(),
    "label bool": _variant(labels={"background": 0, "a": True}),
    "region labels": _variant(labels={"background": 0, "whole": [1, 2]}),
    "regions_class_order": _variant(regions_class_order=[1, 2]),
    "no background": _variant(labels={"a": 1}),
    "labels empty": _variant(labels={}),
    "duplicate key": json.dumps(VALID).replace('"a": 1', '"a": 1, "a": 2').encode(),
    "file_ending missing dot": _variant(file_ending="nii.gz"),
    "file_ending number": _variant(file_ending=3),
    "name number": _variant(name=7),
    "groups list": _variant(groups=["p0"]),
    "top-level list": b"[1, 2]",
    "empty": b"",
    "truncated": json.dumps(VALID).encode()[:40],
    "deeply nested": b"[" * 100000 + b"]" * 100000,
}


def _run_both(root):
    out = []
    for cmd in ("check", "plan"):
        r = cli(cmd, NAME, root=root)
        assert "Traceback" not in r.output, (cmd, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (cmd, repr(r.exception))
        assert r.exit_code in (0, 2), (cmd, r.exit_code, r.output)
        if r.exit_code == 2:
            assert "dataset.json" in r.output or "imagesTr" in r.output or "labelsTr" in r.output, (cmd, r.output)
        out.append(r)
    return out


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "root"
    raw_dataset(root)
    return root


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_refused_naming_field(raw, name):
    path = R.raw_dir(raw, DS) / "dataset.json"
    path.write_bytes(VARIANTS[name])
    with pytest.raises(ConfigError, match="dataset.json"):
        load_dataset_json(path.parent)
    for r in _run_both(raw):
        assert r.exit_code == 2
        lines = [ln for ln in r.output.splitlines() if "dataset.json" in ln]
        assert lines, r.output


def test_message_names_field(raw):
    path = R.raw_dir(raw, DS) / "dataset.json"
    for body, field in ((_variant(numTraining="four"), "numTraining"), (_variant(channel_names={"a": "x"}),
                        "channel_names"), (_variant(labels={"background": 0, "RV": 1, "MLV": 1}), "labels"),
                        (_variant(labels={"background": 0, "a": 1.5}), "labels.a")):
        path.write_bytes(body)
        r = cli("check", NAME, root=raw)
        assert r.exit_code == 2 and field in r.output, r.output


def test_valid_file_is_ok(raw):
    assert [r.exit_code for r in _run_both(raw)] == [0, 0]


def test_random_byte_flips(raw):
    path = R.raw_dir(raw, DS) / "dataset.json"
    good = json.dumps(VALID, indent=1).encode()
    rng = random.Random(15)
    codes = []
    for _ in range(60):
        b = bytearray(good)
        for _ in range(rng.choice((1, 1, 2, 3))):
            b[rng.randrange(len(b))] = rng.randrange(256)
        path.write_bytes(bytes(b))
        codes += [r.exit_code for r in _run_both(raw)]
    assert set(codes) <= {0, 2} and 2 in codes
