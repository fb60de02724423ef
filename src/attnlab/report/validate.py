"""Check that every result the writeup reads exists and has the fields it uses.

A missing or malformed file stops the report with one message that names the
file and the rule that makes it, instead of a Typst error deep inside the
document ("dictionary does not contain key ...").
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

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


class ReportInputError(ValueError):
    """A result the writeup needs is missing or malformed."""


def _problem(path: str, group: str, key: str, what: str) -> ReportInputError:
    rule = rule_for(group, key)
    return ReportInputError(
        f"{path} {what}: it is made by rule {rule}; rerun it "
        f"(snakemake --forcerun {rule} results/report/writeup.pdf) or fix the input"
    )


def iter_files(results: Mapping[str, Any]) -> Iterator[tuple[str, str | None, str, str]]:
    """(group, run or None, key, path) for every required result file."""
    for group in FIXED_GROUPS:
        for key, path in _group(results, group).items():
            yield group, None, key, str(path)
    for family in RUN_GROUPS:
        runs = _group(results, family)
        if not runs:
            raise ReportInputError(f"INPUTS.json lists no {family} run under results.{family}")
        for run, files in runs.items():
            for key, path in files.items():
                yield family, run, key, str(path)


def _group(results: Mapping[str, Any], group: str) -> dict:
    if group not in results or not isinstance(results[group], Mapping):
        raise ReportInputError(f"INPUTS.json has no mapping results.{group}")
    return dict(results[group])


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
    except (ValueError, KeyError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
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
