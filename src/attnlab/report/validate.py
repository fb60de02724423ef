"""Check that every result the writeup reads exists and has the fields it uses.

A missing or malformed file stops the report with one message that names the
file and the rule that makes it, instead of a Typst error deep inside the
document ("dictionary does not contain key ...").
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from attnlab.errors import AttnlabError
from attnlab.report.inputs import FIXED_GROUPS, RUN_GROUPS, rule_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Dotted keys the writeup reads from each JSON file (by INPUTS key).
JSON_KEYS = {
    "cifar10_manifest": ["source", "checksum.algorithm", "checksum.value", "checksum.verified", "n_train", "n_test"],
    "vocab_report": ["vocab_size", "source", "example.text", "example.tokens", "example.ids", "example.decoded",
                     "val_unk_rate", "n_train_dialogues", "n_val_dialogues"],
    "module_checks": ["checks", "all_passed", "W_O_shape"],
    "rnn_vs_attention": ["scaling.seq_lens", "scaling.methods", "scaling.comparisons", "contribution.lens",
                         "contribution.norms"],
    "train_summary": ["device", "hardware", "n_params", "epochs", "train_seconds"],
    "vit.eval": ["test_accuracy", "n_test", "source", "per_class", "classes"],
    "heatmap_stats": ["images", "summary.mean_center_mass", "summary.uniform_center_mass",
                      "summary.mean_entropy", "summary.max_entropy", "tests.attention"],
    "gpt.eval": ["val_loss", "val_perplexity", "val_bits_per_char", "unk_rate", "n_tokens", "n_chars", "source"],
    "generation": ["num_tokens", "samples", "speed.plain_tokens_per_s", "speed.cached_tokens_per_s",
                   "speed.speedup", "speed.identical", "like_for_like.seconds", "like_for_like.batch_step_ratio"],
}
CSV_COLUMNS = {
    "vit": ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"],
    "gpt": ["epoch", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char", "seconds", "tokens_per_s"],
}
JSONL_KEYS = {"samples": ["epoch", "prompt", "text"]}


class ReportInputError(AttnlabError, ValueError):
    """A result the writeup needs is missing or malformed."""


def _problem(path: str, group: str, key: str, what: str) -> ReportInputError:
    rule = rule_for(group, key)
    return ReportInputError(
        f"{path} {what}: it is made by rule {rule}; rerun it "
        f"(snakemake --forcerun {rule} results/report/writeup.pdf) or fix the input"
    )


def _where(*parts: str) -> str:
    return "results." + ".".join(parts)


def _check_paths(node: Any, table: Mapping[str, tuple[str, str]], *where: str) -> None:
    if not isinstance(node, Mapping):
        raise ReportInputError(f"INPUTS.json has no mapping {_where(*where)}")
    if unknown := sorted(set(map(str, node)) - set(table)):
        raise ReportInputError(f"INPUTS.json {_where(*where)} has unknown key(s) {', '.join(unknown)} "
                               f"(known: {', '.join(table)})")
    if missing := [k for k in table if k not in node]:
        raise ReportInputError(f"INPUTS.json {_where(*where)} lacks {', '.join(missing)} "
                               f"(made by rule {table[missing[0]][1]})")
    for key, path in node.items():
        if not isinstance(path, str) or not path or "\0" in path:
            raise ReportInputError(f"INPUTS.json {_where(*where, key)} must be a file path, got {path!r}")


def _check_run_name(run: Any, *where: str) -> None:
    from attnlab.config import schema

    pattern = schema()["$defs"]["run_name"]["pattern"]  # run names become folders, as in the pipeline
    if not isinstance(run, str) or not re.fullmatch(pattern, run):
        raise ReportInputError(f"INPUTS.json {_where(*where)} has the run name {run!r}: use letters, digits, "
                               f"'_', '-' and '.', not starting with '.'")


def check_inputs(inputs: Any) -> None:
    """Check the shape of an INPUTS dict (see attnlab.report.build); ReportInputError names what is wrong.

    Only the listed keys, files given as path strings, run names that are safe
    folder names, and mappings where mappings belong, so that nothing later
    trips over a crafted inputs file.
    """
    if not isinstance(inputs, Mapping):
        raise ReportInputError("INPUTS.json must hold a JSON object (see attnlab.report.build)")
    if unknown := sorted(set(map(str, inputs)) - {"config", "provenance", "writeup", "results", "repo"}):
        raise ReportInputError(f"INPUTS.json has unknown key(s) {', '.join(unknown)} "
                               f"(known: config, provenance, writeup, results)")
    config = inputs.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise ReportInputError("INPUTS.json \"config\" must be the pipeline config (a mapping)")
    for section in ("report", "data", "vit", "gpt"):
        if (config or {}).get(section) is not None and not isinstance(config[section], Mapping):
            raise ReportInputError(f"INPUTS.json config.{section} must be a mapping")
    for family in RUN_GROUPS:
        runs = ((config or {}).get(family) or {}).get("runs")
        if runs is not None and (not isinstance(runs, Mapping)
                                 or not all(v is None or isinstance(v, Mapping) for v in runs.values())):
            raise ReportInputError(f"INPUTS.json config.{family}.runs must map run names to overrides (or null)")
    title = ((config or {}).get("report") or {}).get("title")
    if title is not None and not isinstance(title, str):
        raise ReportInputError("INPUTS.json config.report.title must be a string")
    writeup = inputs.get("writeup")
    if writeup is not None and (not isinstance(writeup, str) or not writeup or "\0" in writeup):
        raise ReportInputError(f"INPUTS.json \"writeup\" must be the path of a .typ file, got {writeup!r}")
    from attnlab.report.provenance import provenance_of

    try:
        provenance_of(inputs)
    except ValueError as exc:
        raise ReportInputError(f"INPUTS.json {exc}") from None
    results = inputs.get("results")
    if not isinstance(results, Mapping):
        raise ReportInputError("INPUTS.json has no mapping 'results'")
    if unknown := sorted(set(map(str, results)) - {*FIXED_GROUPS, *RUN_GROUPS, "benchmarks"}):
        raise ReportInputError(f"INPUTS.json results has unknown key(s) {', '.join(unknown)}")
    for group, (table, _) in FIXED_GROUPS.items():
        _check_paths(results.get(group), table, group)
    for family, table in RUN_GROUPS.items():
        runs = results.get(family)
        if not isinstance(runs, Mapping):
            raise ReportInputError(f"INPUTS.json has no mapping results.{family}")
        if not runs:
            raise ReportInputError(f"INPUTS.json lists no {family} run under results.{family}")
        for run, files in runs.items():
            _check_run_name(run, family)
            _check_paths(files, table, family, run)
    benchmarks = results.get("benchmarks") or {}
    if not isinstance(benchmarks, Mapping) or not all(isinstance(v, Mapping) for v in benchmarks.values()):
        raise ReportInputError("INPUTS.json results.benchmarks must map rules to {run: path of a .tsv}")
    for rule, runs in benchmarks.items():
        for run, path in runs.items():
            if not isinstance(path, str) or "\0" in path:
                raise ReportInputError(f"INPUTS.json {_where('benchmarks', rule, run)} must be a file path, "
                                       f"got {path!r}")


def iter_files(results: Mapping[str, Any]) -> Iterator[tuple[str, str | None, str, str]]:
    """(group, run or None, key, path) for every required result file (``check_inputs`` checked the shape)."""
    for group in FIXED_GROUPS:
        for key, path in results[group].items():
            yield group, None, key, path
    for family in RUN_GROUPS:
        for run, files in results[family].items():
            for key, path in files.items():
                yield family, run, key, path


def _missing_keys(obj: Any, dotted: list[str]) -> list[str]:
    missing = []
    for name in dotted:
        node = obj
        for part in name.split("."):
            if not isinstance(node, Mapping) or part not in node:
                missing.append(name)
                break
            node = node[part]
    return missing


def load_json(path: str) -> Any:
    """JSON as Python writes it: Infinity/NaN are accepted (norms overflow), and kept as floats."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def check_file(group: str, run: str | None, key: str, path: str) -> Any:
    """Parse one result file and check the fields the writeup uses; returns the parsed content."""
    p = Path(path)
    if not p.is_file():
        raise _problem(path, group, key, "is missing")
    suffix = p.suffix.lower()
    try:
        if suffix == ".png":
            with open(p, "rb") as fh:
                if fh.read(8) != PNG_SIGNATURE:
                    raise ValueError("is not a PNG image")
            return None
        if suffix == ".svg":
            with open(p, "rb") as fh:
                head = fh.read(4096)
            if b"<svg" not in head:
                raise ValueError("is not an SVG image")
            return None
        if suffix == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            need = CSV_COLUMNS[group]
            have = rows[0].keys() if rows else []
            if not rows:
                raise ValueError("has no rows")
            if lost := [c for c in need if c not in have]:
                raise ValueError(f"lacks column(s) {', '.join(lost)}")
            for line, row in enumerate(rows, start=2):
                for c in need:
                    try:
                        float(row[c])
                    except (TypeError, ValueError):
                        raise ValueError(f"line {line}, column {c} is not a number: {row[c]!r}") from None
            return rows
        if suffix == ".jsonl":
            with open(p, encoding="utf-8") as fh:
                lines = [json.loads(line) for line in fh if line.strip()]
            if not lines:
                raise ValueError("has no lines")
            for i, line in enumerate(lines, start=1):
                if lost := _missing_keys(line, JSONL_KEYS[key]):
                    raise ValueError(f"line {i} lacks key(s) {', '.join(lost)}")
            return lines
        data = load_json(str(p))
        spec = JSON_KEYS.get(f"{group}.{key}", JSON_KEYS.get(key, []))
        if lost := _missing_keys(data, spec):
            raise ValueError(f"lacks key(s) {', '.join(lost)}")
        return data
    except (ValueError, KeyError, csv.Error, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError: ValueError
        raise _problem(path, group, key, f"is malformed ({exc})") from None


def finite_json(obj: Any) -> Any:
    """Replace inf/nan by the strings "inf", "-inf", "nan": Typst's JSON reader accepts only finite numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_json(v) for v in obj]
    return obj
