"""Config helpers shared by the stages: defaults merged with user values, strictly.

Every default lives in one file, ``config/config.yaml`` (the GPU preset), which
the package reads as ``attnlab/presets/config.yaml`` (a link to it) and the
Snakefile reads as its ``configfile``; ``config/cpu.yaml`` holds only the CPU
overrides. A stage resolves the user's section with
``resolve(defaults("vit"), user, "vit")``: a key that is not in the defaults
stops with a message naming it (``vit.train.lrr``), so a typo never silently
falls back to a default. The Snakemake schema checks the same keys earlier,
before any job runs; this check covers the stand-alone CLIs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    pass


def resolve(defaults: Mapping[str, Any], user: Mapping[str, Any] | None, where: str) -> dict:
    """Deep-merge ``user`` over ``defaults``; unknown keys raise ConfigError."""
    out = copy.deepcopy(dict(defaults))
    for key, value in (user or {}).items():
        path = f"{where}.{key}"
        if key not in out:
            known = ", ".join(sorted(out))
            raise ConfigError(f"unknown config key '{path}' (known keys here: {known})")
        if isinstance(out[key], Mapping) and out[key] and not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        if isinstance(out[key], Mapping) and out[key] and isinstance(value, Mapping):
            out[key] = resolve(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _preset_file(name: str) -> Path:
    path = Path(__file__).resolve().parent / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset {name!r} not found at {path} (attnlab/presets/ links to the checkout's config/)")
    return path


def defaults(section: str | None = None) -> dict:
    """config/config.yaml (every key, GPU sizes), or its ``section``; sweeps (``runs``) left out."""
    import yaml

    with open(_preset_file("config"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    for family in ("vit", "gpt"):
        cfg[family].pop("runs", None)
    return cfg if section is None else cfg[section]


def preset(name: str, section: str | None = None) -> dict:
    """The defaults with config/<name>.yaml's overrides merged in (e.g. ``preset("cpu", "gpt")``)."""
    cfg = defaults()
    if name != "config":
        cfg = resolve(cfg, load_config_file(_preset_file(name)), "config")
    return cfg if section is None else cfg[section]


def plain(obj: Any) -> Any:
    """Nested mappings/sequences as plain dicts/lists: Snakemake's config values are its own
    subclasses, which YAML and JSON writers do not accept."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def load_config_file(path: str | Path | None) -> dict:
    """Read a YAML or JSON file (JSON is YAML, so one loader serves both)."""
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def digest(cfg: Mapping[str, Any]) -> str:
    """Short stable digest of a config, for run records and resume checks."""
    import hashlib

    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
