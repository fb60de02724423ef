"""Short, key-naming messages for a config that fails the pipeline's JSON schema.

Snakemake's ``validate`` reports the first schema violation with the whole
sub-schema attached; this lists every violation on one line each, as
``config key 'gpt.train.lrr' is not a known key (known: ...)``, which is what a
user needs to fix the file. The Snakefile raises it in front of Snakemake's own
report.

``check_semantics`` adds what JSON schema cannot say: a patch size or head
count that must divide another key, finite numbers (YAML's ``.nan``/``.inf``
pass the schema's ranges). New cross-field checks belong there.
"""

from __future__ import annotations

import math
from typing import Any, Mapping


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def describe(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """One message per violation of ``schema`` by ``config`` (empty when valid)."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = _dotted(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            known = set(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - known):
                dotted = f"{where}.{key}" if err.absolute_path else key
                out.append(f"config key '{dotted}' is not a known key (known here: {', '.join(sorted(known))})")
        elif "propertyNames" in err.absolute_schema_path:
            out.append(f"config key '{where}' has the run name {err.instance!r}, which is not allowed: run names "
                       f"become folders under results/, so use letters, digits, '_', '-' and '.', with no path "
                       f"separator and no leading '.' (never '.' or '..'); {err.message}")
        elif err.validator == "required":
            out.append(f"config section '{where}': {err.message}")
        else:
            out.append(f"config key '{where}' = {err.instance!r}: {err.message}")
    return out


def _merged(base: Mapping, over: Mapping | None) -> dict:
    out = dict(base)
    for key, value in (over or {}).items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def _non_finite(node: Any, path: tuple) -> list[str]:
    if isinstance(node, float) and not math.isfinite(node):
        return [f"config key '{_dotted(path)}' = {node}: must be a finite number"]
    if isinstance(node, Mapping):
        return [m for k, v in node.items() for m in _non_finite(v, (*path, k))]
    if isinstance(node, (list, tuple)):
        return [m for i, v in enumerate(node) for m in _non_finite(v, (*path, i))]
    return []


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)


# (family, section, divisor key, dividend key, why): each divisor must divide its dividend
_DIVIDES = (
    ("vit", "model", "patch_size", "img_size", "the image is cut into whole patches"),
    ("vit", "model", "heads", "dim", "each head gets dim/heads channels"),
    ("gpt", "model", "n_heads", "d_model", "each head gets d_model/n_heads channels"),
)


def describe_semantics(config: Mapping[str, Any]) -> list[str]:
    """One message per cross-field mistake the schema cannot express (empty when there is none).

    Checked for the base sections and for every run of the vit/gpt sweeps with
    its overrides merged in; a message names the key where the offending value
    was set (``vit.runs.wide.model.heads`` when a run set it).
    """
    out = _non_finite(config, ())
    for family, section, small, big, why in _DIVIDES:
        runs = {name: over for name, over in config[family].get("runs", {}).items() if over is not None}
        seen = set()
        for run, over in [(None, {}), *runs.items()]:
            over_section = (over or {}).get(section) or {}
            eff = _merged(config[family][section], over_section)
            a, b = eff.get(small), eff.get(big)
            if not isinstance(a, int) or not isinstance(b, int) or a < 1 or b % a == 0:
                continue
            where = {k: f"{family}.runs.{run}.{section}.{k}" if run is not None and k in over_section
                     else f"{family}.{section}.{k}" for k in (small, big)}
            if (a, b, tuple(where.values())) in seen:
                continue  # a run that overrides neither key repeats the base's problem
            seen.add((a, b, tuple(where.values())))
            for_run = f" (in run '{run}')" if run is not None else ""
            out.append(f"config key '{where[small]}' = {a} must divide {where[big]} = {b}{for_run}: {why}; "
                       f"divisors of {b}: {_divisors(b)}")
    return out


def check_semantics(config: Mapping[str, Any]) -> None:
    """Raise ValueError listing every cross-field mistake (no-op for a sound config).

    The Snakefile calls it after the schema, so these mistakes stop the run
    before any job, as schema violations do.
    """
    problems = describe_semantics(config)
    if problems:
        raise ValueError(
            "invalid pipeline config (config/config.yaml + --configfile/--config overrides; "
            "keys are documented in config/README.md):\n  " + "\n  ".join(problems)
        )


def check(config: Mapping[str, Any], schema_path: str) -> None:
    """Raise ValueError listing every violation (no-op for a valid config)."""
    import yaml

    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    problems = describe(config, schema)
    if problems:
        raise ValueError(
            "invalid pipeline config (config/config.yaml + --configfile/--config overrides; "
            "keys are documented in config/README.md):\n  " + "\n  ".join(problems)
        )
