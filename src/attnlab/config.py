"""The pipeline config in one place: defaults, the deep merge, the runs of a sweep, and the schema checks.

Every default lives in one file, ``config/config.yaml`` (the GPU preset), which
the package reads as ``attnlab/presets/config.yaml`` (a link to it) and the
Snakefile reads as its ``configfile``; ``config/cpu.yaml`` holds only the CPU
overrides. Allowed values and ranges live in one file too,
``workflow/schemas/config.schema.yaml`` (``attnlab/presets/config.schema.yaml``
links to it, so a wheel carries both).

A stage resolves the user's section with ``resolve(defaults("vit"), user,
"vit")``: a key that is not in the defaults stops with a message naming it
(``vit.train.lrr``), so a typo never silently falls back to a default, and the
merged section is checked against that section's part of the schema, with
the same one-line messages the Snakefile gives before any job runs
(``describe``). Cross-field rules the schema cannot express stay with the code
that needs them.

The Snakefile side (workflow/rules/common.smk), the planning-time config check
(workflow/lib/configcheck.py) and the report use ``merge``, ``run_names`` and
``run_section`` from here, so a sweep's runs mean the same everywhere.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Mapping

from attnlab.errors import AttnlabError

# A config holds a few hundred values; YAML aliases can make a small file expand to billions
# (the "billion laughs" file), which every later walk of the tree would then spend hours on.
MAX_CONFIG_VALUES = 100_000


class ConfigError(AttnlabError, ValueError):
    """A config mistake; the message names the key and says what is allowed."""


# ------------------------------------------------------------------ merging --
def merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict:
    """``over`` deep-merged into a copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_names(config: Mapping[str, Any], family: str) -> list[str]:
    """Run names of ``family`` (vit/gpt) in config order; a run set to null is dropped; no ``runs``: ["main"]."""
    runs = (config.get(family) or {}).get("runs")
    if runs is None:
        runs = {"main": {}}
    return [name for name, over in runs.items() if over is not None]


def run_section(config: Mapping[str, Any], family: str, run: str, keys: list[str] | None = None) -> dict:
    """The ``family`` section as run ``run``'s stages receive it: its ``keys`` (default: all but ``runs``)
    with that run's overrides of those keys merged in."""
    section = config.get(family) or {}
    keys = [k for k in section if k != "runs"] if keys is None else list(keys)
    over = (section.get("runs") or {}).get(run) or {}
    return merge({k: section[k] for k in keys}, {k: v for k, v in over.items() if k in keys})


def resolve(defaults: Mapping[str, Any], user: Mapping[str, Any] | None, where: str) -> dict:
    """Deep-merge ``user`` over ``defaults`` strictly, then check the result against the schema.

    An unknown key or a value where a mapping belongs raises ConfigError naming
    the key (``where.key``); so does a value the schema section ``where``
    refuses (type, range, allowed values).
    """
    out = _merge_known(defaults, user, where)
    check(out, where)
    return out


def _merge_known(defaults: Mapping[str, Any], user: Mapping[str, Any] | None, where: str) -> dict:
    out = copy.deepcopy(dict(defaults))
    for key, value in (user or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if key not in out:
            known = ", ".join(sorted(out))
            raise ConfigError(f"unknown config key '{path}' (known keys here: {known})")
        if isinstance(out[key], Mapping) and out[key] and not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        if isinstance(out[key], Mapping) and out[key] and isinstance(value, Mapping):
            out[key] = _merge_known(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ------------------------------------------------------------------- schema --
def _preset_file(name: str) -> Path:
    path = Path(__file__).resolve().parent / "presets" / name
    if not path.is_file():
        raise ConfigError(f"{name} not found at {path} (attnlab/presets/ links to the checkout's config/ and "
                          f"workflow/schemas/)")
    return path


@functools.lru_cache(maxsize=None)
def _schema_text() -> str:
    return _preset_file("config.schema.yaml").read_text(encoding="utf-8")


def schema() -> dict:
    """workflow/schemas/config.schema.yaml as a dict (a fresh copy)."""
    import yaml

    return yaml.safe_load(_schema_text())


def _deref(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow ``$ref`` and ``allOf`` far enough to see a node's ``properties``."""
    if "$ref" in node:
        return _deref(root["$defs"][node["$ref"].rsplit("/", 1)[-1]], root)
    if "allOf" in node:
        props: dict = {}
        for part in node["allOf"]:
            props.update(_deref(part, root).get("properties", {}))
        return {**node, "properties": props}
    return node


def subschema(where: str, root: Mapping[str, Any] | None = None) -> dict:
    """The part of the schema that describes the dotted section ``where`` ("" = the whole config),
    with the root's ``$defs`` attached so its references resolve."""
    root = dict(root or schema())
    node: Mapping[str, Any] = root
    for part in [p for p in where.split(".") if p]:
        props = _deref(node, root).get("properties", {})
        if part not in props:
            raise KeyError(f"the config schema has no section {where!r}")
        node = props[part]
    return {**node, "$defs": root.get("$defs", {})}


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def describe(config: Any, schema_: Mapping[str, Any], where: str = "", skip_required: bool = False) -> list[str]:
    """One message per violation of ``schema_`` by ``config`` (empty when valid), keys named from ``where``.

    ``skip_required``: leave out missing keys (a partial section, to be merged with defaults).
    """
    import jsonschema

    cls = jsonschema.validators.validator_for(schema_)
    validator = cls(schema_)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if skip_required and err.validator == "required":
            continue
        here = _dotted([p for p in (where,) if p] + list(err.absolute_path)) or "<top level>"
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            known = set(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - known, key=str):
                dotted = f"{here}.{key}" if here != "<top level>" else str(key)
                out.append(f"config key '{dotted}' is not a known key (known here: {', '.join(sorted(known))})")
        elif "propertyNames" in err.absolute_schema_path:
            out.append(f"config key '{here}' has the run name {err.instance!r}, which is not allowed: run names "
                       f"become folders under results/, so use letters, digits, '_', '-' and '.', with no path "
                       f"separator and no leading '.' (never '.' or '..'); {err.message}")
        elif err.validator == "required":
            out.append(f"config section '{here}': {err.message}")
        else:
            out.append(f"config key '{here}' = {err.instance!r}: {err.message}")
    return out


def check(section: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError (one line, every problem) if ``section`` breaks the schema of ``where``.

    Missing keys are not reported (``resolve`` fills them from the defaults);
    a section the schema does not describe is not checked.
    """
    try:
        sub = subschema(where)
    except KeyError:
        return
    problems = describe(section, sub, where, skip_required=True)
    if problems:
        raise ConfigError("; ".join(problems) + " (keys are documented in config/README.md)")


# ------------------------------------------------------------------ presets --
def defaults(section: str | None = None) -> dict:
    """config/config.yaml (every key, GPU sizes), or its ``section``; sweeps (``runs``) left out."""
    import yaml

    with open(_preset_file("config.yaml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    for family in ("vit", "gpt"):
        cfg[family].pop("runs", None)
    return cfg if section is None else cfg[section]


def preset(name: str, section: str | None = None) -> dict:
    """The defaults with config/<name>.yaml's overrides merged in (e.g. ``preset("cpu", "gpt")``)."""
    cfg = defaults()
    if name != "config":
        cfg = resolve(cfg, load_config_file(_preset_file(f"{name}.yaml")), "")
    return cfg if section is None else cfg[section]


def plain(obj: Any) -> Any:
    """Nested mappings/sequences as plain dicts/lists: Snakemake's config values are its own
    subclasses, which YAML and JSON writers do not accept."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


# -------------------------------------------------------------- config files --
def expanded_size(obj: Any, limit: int = MAX_CONFIG_VALUES, where: str = "") -> int:
    """How many values ``obj`` holds once YAML aliases are expanded; ConfigError past ``limit``.

    Shared sub-trees (aliases) are counted as often as they are used, but each
    is walked once, so a file that expands to billions costs microseconds. The
    message names the deepest key that alone holds more than ``limit``.
    """
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any, path: tuple) -> int:
        if not isinstance(node, (Mapping, list, tuple)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise ConfigError(f"config key '{_dotted(path) or '<top level>'}' contains itself (a YAML alias "
                              f"to its own anchor); write the values out")
        busy.add(key)
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        total = 1 + sum(size(v, (*path, k) if isinstance(node, Mapping) else path) for k, v in items)
        busy.discard(key)
        sizes[key] = total
        return total

    total = size(obj, ())
    if total > limit:
        path, node = [where] if where else [], obj
        while isinstance(node, Mapping):
            big = [(k, v) for k, v in node.items() if size(v, ()) > limit]
            if not big:
                break
            path.append(str(big[0][0]))
            node = big[0][1]
        raise ConfigError(f"config key '{'.'.join(path) or '<top level>'}' expands to {size(node, ()):,} values "
                          f"through YAML aliases (at most {limit:,} are allowed in a whole config); "
                          f"write the values out instead of nesting aliases")
    return total


def _strict_loader():
    """A yaml SafeLoader that refuses explicit tags (``!!python/object``, ``!!binary``, ``!custom``, ...)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            tag = getattr(event, "tag", None)
            if tag not in (None, "!") and not isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise ConfigError(f"the YAML tag {tag!r} (line {mark.line + 1}, column {mark.column + 1}) is not "
                                  f"allowed in a config: write plain values (strings, numbers, lists, mappings)")
            return super().compose_node(parent, index)

    return StrictLoader


def load_config_file(path: str | Path | None) -> dict:
    """Read a YAML or JSON config file (JSON is YAML, so one loader serves both) as plain data.

    Refused, with one line naming the file: explicit YAML tags, aliases that
    expand past ``MAX_CONFIG_VALUES``, nesting too deep to read, and anything
    but a mapping at the top.
    """
    if path is None:
        return {}
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists()
                          else f"config file {path} is not a file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_strict_loader())
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deep to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    try:
        expanded_size(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return data


def digest(cfg: Mapping[str, Any]) -> str:
    """Short stable digest of a config, for run records and resume checks."""
    import hashlib

    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
