"""Title-page facts that are not in any single result file: date, wall times, the config as YAML.

The commit comes from INPUTS' ``provenance`` record (attnlab.report.provenance).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from attnlab.config import plain


def results_epoch(paths: Iterable[str | Path]) -> int:
    """The date the writeup shows and stamps into the PDF, in UNIX seconds.

    SOURCE_DATE_EPOCH wins when set (the reproducible-builds convention);
    otherwise the newest result file's modification time, so the date says
    when the results were made, and the same result files give the same PDF.
    """
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ValueError(f"SOURCE_DATE_EPOCH must be an integer, got {env!r}") from None
    return max((int(Path(p).stat().st_mtime) for p in paths), default=0)


def format_date(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def benchmark_seconds(path: str | Path) -> float | None:
    """Wall time (column ``s``) of a Snakemake benchmark TSV; None if the file is absent.

    Benchmarks are not Snakemake outputs, so they cannot be the report rule's
    inputs: a missing one reads "not recorded" instead of stopping the report.
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        # with --benchmark-repeats there is one row per repeat; report the mean
        values = [float(r["s"]) for r in rows]
        return sum(values) / len(values)
    except (KeyError, ValueError, TypeError, ZeroDivisionError, csv.Error):  # UnicodeDecodeError is a ValueError
        raise ValueError(f"benchmark file {p} is malformed: expected a tab-separated table with a numeric "
                         f"column 's' (Snakemake writes it for the rule's benchmark: directive); "
                         f"delete it and rerun the rule") from None


def wall_times(benchmarks: Mapping[str, Mapping[str, str]]) -> list[dict]:
    """[{"rule", "run", "seconds" (float or None)}] for every benchmark listed in INPUTS."""
    out = []
    for rule, runs in (benchmarks or {}).items():
        for run, path in runs.items():
            out.append({"rule": rule, "run": run, "seconds": benchmark_seconds(path)})
    return out


def config_yaml(config: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(plain(config), sort_keys=False, default_flow_style=False, width=88, allow_unicode=True)



# The checkout's preset files and the words the writeup uses for them.
PRESETS = (("tiny.yaml", "toy sizes on synthetic data (a test run)"),
           ("cpu.yaml", "small models sized for a 2-core CPU without a GPU"),
           ("config.yaml", "the default sizes, meant for a GPU"))
# The parts of a preset that decide what was trained; data paths, titles and sweeps do not.
_PRESET_KEYS = {"vit": ("model", "train"), "gpt": ("model", "train")}


def _leaves(node: Any, prefix: tuple = ()):
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _leaves(v, prefix + (k,))
    else:
        yield prefix, node


def _get(node: Any, path: tuple) -> Any:
    for k in path:
        if not isinstance(node, Mapping) or k not in node:
            return KeyError
        node = node[k]
    return node


def preset_name(config: Mapping[str, Any], config_dir: str | Path) -> str:
    """Which preset of ``config_dir`` the config's models and training follow, in words; "a custom
    configuration" when none does. A preset matches when every value it sets under vit/gpt model and
    train equals the config's (so config.yaml, which sets them all, matches only the defaults)."""
    import yaml

    config = plain(config)
    for name, words in PRESETS:
        path = Path(config_dir) / name
        if not path.is_file():
            continue
        preset = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        pairs = [((family, part) + leaf, value) for family, parts in _PRESET_KEYS.items() for part in parts
                 for leaf, value in _leaves((preset.get(family) or {}).get(part) or {})]
        if pairs and all(_get(config, where) == value for where, value in pairs):
            return words
    return "a custom configuration"
