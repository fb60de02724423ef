"""The pipeline config: config/config.yaml (the one home of every default) and the presets
pass the schema, the stages read the same file, and a bad config stops `snakemake -n`
before any job, naming the key."""

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
def test_config_yaml_sets_every_key_the_schema_allows(section):
    assert _dict_keys(CONFIG[section]) == _schema_keys(SCHEMA["properties"][section])


def test_stages_read_their_defaults_from_config_yaml():
    """The package's presets/ are links to config/, not copies: a changed default reaches the CLIs."""
    from attnlab.config import defaults, preset

    assert defaults("vit") == {k: v for k, v in CONFIG["vit"].items() if k != "runs"}
    cpu = yaml.safe_load((ROOT / "config" / "cpu.yaml").read_text())
    assert preset("cpu", "gpt")["model"] == {**CONFIG["gpt"]["model"], **cpu["gpt"]["model"]}
    for name in ("config.yaml", "cpu.yaml"):
        link = ROOT / "src" / "attnlab" / "presets" / name
        assert link.resolve() == (ROOT / "config" / name).resolve()


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
    ({"gpt": {"train": {"word_dropout": 1.0}}}, "gpt.train.word_dropout", "maximum"),
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


def test_snakemake_lint_is_clean(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                           "--lint"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout, proc.stdout[-3000:]
