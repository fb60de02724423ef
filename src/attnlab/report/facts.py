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

