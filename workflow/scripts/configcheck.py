"""Short, key-naming messages for a config that fails the pipeline's JSON schema.

Snakemake's ``validate`` reports the first schema violation with the whole
sub-schema attached; this lists every violation on one line each, as
``config key 'gpt.train.lrr' is not a known key (known: ...)``, which is what a
user needs to fix the file. The Snakefile raises it in front of Snakemake's own
report.
"""

from __future__ import annotations

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
        elif err.validator == "required":
            out.append(f"config section '{where}': {err.message}")
        else:
            out.append(f"config key '{where}' = {err.instance!r}: {err.message}")
    return out


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
