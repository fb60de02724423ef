"""The pipeline config: schema, defaults and presets agree with the stages' own DEFAULT_CONFIG,
and a bad config stops `snakemake -n` before any job, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _stage_defaults() -> dict[str, dict]:
    """Config section -> the DEFAULT_CONFIG of the stage module that reads it."""
    from attnlab.data import DEFAULT_CONFIG as data
    from attnlab.gpt.train import DEFAULT_CONFIG as gpt
    from attnlab.theory import DEFAULT_CONFIG as theory
    from attnlab.vit.train import DEFAULT_CONFIG as vit

    return {"data": data, "vit": vit, "gpt": gpt, "theory": theory}


def _deref(node: dict) -> dict:
    """Follow $ref / allOf so the properties of a section's schema can be listed."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _deref(SCHEMA["$defs"][name])
    if "allOf" in node:
        merged: dict = {}
        for part in node["allOf"]:
            part = _deref(part)
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged.setdefault("required", []).extend(part.get("required", []))
        return merged
    return node


def _schema_keys(node: dict, prefix: str = "") -> set[str]:
    """Dotted leaf keys the schema allows below ``node`` (``runs`` excluded: it has free names)."""
    node = _deref(node)
    keys = set()
    for key, sub in node.get("properties", {}).items():
        if key == "runs":
            continue
        sub = _deref(sub)
        if "properties" in sub:
            keys |= _schema_keys(sub, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def _dict_keys(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in d.items():
        if isinstance(value, dict) and value and key != "runs":
            keys |= _dict_keys(value, f"{prefix}{key}.")
        elif key != "runs":
            keys.add(prefix + key)
    return keys


@pytest.mark.parametrize("section", ["data", "vit", "gpt", "theory"])
def test_schema_keys_equal_the_stage_defaults(section):
    defaults = _stage_defaults()[section]
    schema_keys = _schema_keys(SCHEMA["properties"][section])
    assert schema_keys == _dict_keys(defaults), (
        f"schema-only: {sorted(schema_keys - _dict_keys(defaults))}, "
        f"code-only: {sorted(_dict_keys(defaults) - schema_keys)}")
    # every allowed key is also required in the merged config, and config.yaml sets it
    assert _dict_keys(CONFIG[section]) == schema_keys


@pytest.mark.parametrize("section", ["data", "vit", "gpt", "theory"])
def test_config_yaml_defaults_are_the_stage_defaults(section):
    """config/config.yaml is the GPU preset, which is what each stage's DEFAULT_CONFIG holds."""
    cfg = {k: v for k, v in CONFIG[section].items() if k != "runs"}
    assert cfg == _stage_defaults()[section]


def test_stage_defaults_and_presets_pass_the_schema():
    jsonschema.validate(CONFIG, SCHEMA)
    for preset in ("cpu.yaml", "tiny.yaml"):
        merged = _merge(CONFIG, yaml.safe_load((ROOT / "config" / preset).read_text()))
        jsonschema.validate(merged, SCHEMA)


def test_presets_only_override_known_keys():
    known = _dict_keys(CONFIG)
    for preset in ("cpu.yaml", "tiny.yaml"):
        keys = _dict_keys(yaml.safe_load((ROOT / "config" / preset).read_text()))
        assert keys <= known, f"{preset}: {sorted(keys - known)}"


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("override, key, why", [
    ({"gpt": {"train": {"lrr": 0.1}}}, "gpt.train.lrr", "not a known key"),
    ({"vit": {"model": {"depth": "seven"}}}, "vit.model.depth", "is not of type 'integer'"),
    ({"data": {"shakespeare": {"val_fraction": 1.5}}}, "data.shakespeare.val_fraction", "maximum"),
    ({"vit": {"runs": {"wide": {"model": {"dimm": 512}}}}}, "vit.runs.wide.model.dimm", "not a known key"),
])
def test_bad_config_stops_before_any_job(tmp_path, override, key, why):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "work"),
         "-n", "--cores", "1", "--configfile", str(bad)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"config key '{key}'" in proc.stdout and why in proc.stdout, proc.stdout[-3000:]
    assert "Building DAG" not in proc.stdout  # stopped at start-up, nothing planned
    assert not (tmp_path / "work" / "results").exists()


def test_cpu_preset_matches_the_stages_cpu_presets():
    """Where a stage records its CPU preset in code (for its benchmark), config/cpu.yaml carries it."""
    import importlib

    cpu = yaml.safe_load((ROOT / "config" / "cpu.yaml").read_text())
    checked = 0
    for section, module in (("vit", "attnlab.vit.train"), ("gpt", "attnlab.gpt.train")):
        preset = getattr(importlib.import_module(module), "CPU_PRESET", None)
        if preset is None:
            continue
        checked += 1
        assert _merge(CONFIG[section], preset) == _merge(CONFIG[section], cpu[section]), section
    assert checked >= 1
