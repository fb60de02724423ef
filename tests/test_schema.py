"""The pipeline config: config/config.yaml (the one home of every default) and the presets
pass the schema, the stages read the same file, and a bad config stops `snakemake -n`
before any job, naming the key."""

from __future__ import annotations

import re
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


def test_the_package_reads_the_schema_through_a_link_that_a_wheel_carries():
    """attnlab/presets/config.schema.yaml is workflow/schemas/config.schema.yaml (a link, not a copy), and
    pyproject's package-data takes it into a wheel, as it does the config presets."""
    import tomllib

    from attnlab.config import schema

    link = ROOT / "src" / "attnlab" / "presets" / "config.schema.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "workflow" / "schemas" / "config.schema.yaml").resolve()
    assert schema() == SCHEMA
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["attnlab"]
    assert any(Path("presets/config.schema.yaml").match(pattern) for pattern in data)


@pytest.mark.parametrize("section, where, user, line", [
    ("vit", "vit", {"train": {"lr": -1}}, "config key 'vit.train.lr' = -1: -1 is less than or equal to the minimum of 0"),
    ("vit", "vit", {"train": {"augment": "rotate"}},
     "config key 'vit.train.augment' = 'rotate': 'rotate' is not one of ['crop_flip', 'flip', 'none']"),
    ("gpt", "gpt", {"train": {"keep": "first"}}, "config key 'gpt.train.keep' = 'first': 'first' is not one of"),
    ("gpt", "gpt", {"train": {"word_dropout": 1.0}},
     "config key 'gpt.train.word_dropout' = 1.0: 1.0 is greater than or equal to the maximum of 1"),
    ("theory", "theory", {"gpu": "on"}, "config key 'theory.gpu' = 'on': 'on' is not one of ['auto', 'off', False]"),
    ("theory", "theory", {"seq_lens": [8]}, "config key 'theory.seq_lens' = [8]: [8] is too short"),
    ("theory", "theory", {"contribution_lens": [5]},
     "config key 'theory.contribution_lens' = [5]: [5] is too short"),  # a rate needs two lengths
    ("theory", "theory", {"seq_lens": [8, 8]}, "config key 'theory.seq_lens' = [8, 8]: [8, 8] has non-unique"),
])
def test_stage_clis_check_their_section_against_the_schema_as_planning_does(section, where, user, line):
    """resolve() (what every stage CLI calls) refuses what the schema refuses, with the line planning prints."""
    from attnlab.config import ConfigError, defaults, describe, merge, resolve, schema

    with pytest.raises(ConfigError) as err:
        resolve(defaults(section), user, where)
    assert line in str(err.value) and "\n" not in str(err.value)
    planned = describe(merge(CONFIG, {section: user}), schema())  # what `snakemake -n` lists
    assert any(p.startswith(line) for p in planned) and any(p in str(err.value) for p in planned)


def test_the_baseline_and_vocabulary_sections_are_checked_by_the_schema_too():
    from attnlab.config import ConfigError
    from attnlab.data.vocab import resolve_vocab_config
    from attnlab.gpt.ngram import resolve_config

    with pytest.raises(ConfigError, match=r"'gpt.baseline.orders.0' = 0: 0 is less than the minimum of 1"):
        resolve_config({"orders": [0, 2]})
    with pytest.raises(ConfigError, match=r"'gpt.baseline.discount' = 'kneser'"):
        resolve_config({"discount": "kneser"})
    with pytest.raises(ConfigError, match=r"'data.shakespeare.val_fraction' = 0: 0 is less than or equal"):
        resolve_vocab_config({"val_fraction": 0})  # the flat shape the pipeline passes is named as data.*


# ------------------------------------------------------------- config/README.md holds config.yaml's defaults --
def _readme_rows() -> list[tuple[str, str, str]]:
    """(section, key cell, default cell) of every table row under a ``## `section` `` heading."""
    rows, section = [], None
    for line in (ROOT / "config" / "README.md").read_text().splitlines():
        if line.startswith("## "):
            m = re.match(r"## `(\w+)`", line)
            section = m.group(1) if m else None
        elif section and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append((section, cells[0], cells[1]))
    return rows


def _leaf(section: str, dotted: str):
    node = CONFIG[section]
    for part in dotted.split("."):
        node = node[part]
    return node


def _scalar(text: str):
    """A README cell's value: YAML (`null`, 0.1, `auto`), or the literal text where YAML would read more
    into it (`ROMEO:` is a string, not a mapping)."""
    text = text.strip().strip("`")
    value = yaml.safe_load(text) if text else text
    return text if isinstance(value, (dict, list)) else value


def _matches(cell: str, value, section: str, key: str) -> bool:
    """Whether a README default cell states ``value``: YAML scalars or comma lists, "…" for an elided
    part (a prefix, a suffix, or the middle of a list), "as `other.key`" for a shared default."""
    cell = cell.strip()
    if m := re.fullmatch(r"as `([\w.]+)`", cell):
        return value == _leaf(section, m.group(1))
    if isinstance(value, list):
        parts = [p.strip() for p in cell.split(",")]
        if "…" in cell:  # "1, 10, 20, … 200": the written items start the list, the one after "…" ends it
            head = [_scalar(p) for p in parts if "…" not in p]
            tail = [p.split("…")[-1] for p in parts if "…" in p]
            return value[: len(head)] == head and all(_scalar(t) == value[-1] for t in tail)
        return [_scalar(p) for p in parts] == value
    if isinstance(value, str) and "…" in cell:  # `c58f3010…`, "Transformers from scratch: …", `…/input.txt`
        text = cell.strip("`\"")
        before, _, after = text.partition("…")
        return value.startswith(before.strip("`\" ")) and value.endswith(after.strip("`\" "))
    return _scalar(cell) == value


def test_config_readme_states_every_default_of_config_yaml():
    documented = set()
    for section, keys_cell, default_cell in _readme_rows():
        keys = re.findall(r"`([\w.]+)`", keys_cell)
        prefix = keys[0].rsplit(".", 1)[0] + "." if "." in keys[0] else ""
        keys = [k if "." in k or not prefix else prefix + k for k in keys]
        defaults = [default_cell] if len(keys) == 1 else [d.strip() for d in default_cell.split(",")]
        assert len(defaults) == len(keys), f"{keys_cell}: {len(keys)} keys but defaults {default_cell!r}"
        for key, cell in zip(keys, defaults):
            value = _leaf(section, key)
            assert _matches(cell, value, section, key), f"config/README.md: {section}.{key} is {cell!r} there " \
                                                        f"but {value!r} in config.yaml"
            documented.add(f"{section}.{key}")
    every = {f"{s}.{k}" for s in CONFIG for k in _dict_keys(CONFIG[s])}
    assert every == documented, f"undocumented: {sorted(every - documented)}; not in config.yaml: " \
                                f"{sorted(documented - every)}"


@pytest.mark.slow
def test_a_wheel_carries_the_schema_and_its_stages_check_against_it(tmp_path):
    """Built with pip (no network, the installed setuptools), unpacked, imported from there, far from the checkout."""
    import shutil
    import zipfile

    src = tmp_path / "src-tree"
    for part in ("pyproject.toml", "README.md", "src", "config", "workflow/schemas"):
        dest = src / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / part, dest)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("attnlab-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    schema_file = site / "attnlab" / "presets" / "config.schema.yaml"
    assert not schema_file.is_symlink() and yaml.safe_load(schema_file.read_text()) == SCHEMA
    check = ("import attnlab\nprint(attnlab.__file__)\nfrom attnlab.config import ConfigError, defaults, resolve\n"
             "try:\n    resolve(defaults('gpt'), {'train': {'keep': 'first'}}, 'gpt')\n"
             "except ConfigError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
    assert out.stdout.startswith(str(site / "attnlab" / "__init__.py")), out.stdout + out.stderr  # the wheel's
    assert "config key 'gpt.train.keep' = 'first'" in out.stdout, out.stdout + out.stderr
