"""Assemble the writeup PDF from the pipeline's results.

``build_report(inputs, out_pdf)`` checks every result file, gathers the
title-page facts, stages the results next to ``report/writeup.typ`` in a
temporary folder (Typst reads only files under its root, and the results may
live in another working directory), and compiles it with the ``typst`` PyPI
package: bundled fonts only, system fonts ignored, a fixed timestamp. The
same result files therefore give the same PDF bytes.

The first run of each family (in mapping order) is shown in detail; every run
appears in the comparison table. ``attnlab.report.inputs.make_inputs(config,
results_dir, provenance)`` builds the INPUTS dict for the standard ``results/``
layout (documented in docs/stages.md). An INPUTS file is data: its shape is
checked first (``validate.check_inputs``), and nothing in it is run, git
included (the commit comes recorded in ``provenance``).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from attnlab.config import defaults, digest, plain, run_section
from attnlab.errors import AttnlabError
from attnlab.io import atomic_path, write_json
from attnlab.report import code, facts
from attnlab.report.inputs import RUN_GROUPS
from attnlab.report.provenance import provenance_of
from attnlab.report.validate import ReportInputError, check_file, check_inputs, finite_json, iter_files

CHECKOUT = Path(__file__).resolve().parents[3]  # src/attnlab/report/build.py -> repo root


class ReportBuildError(AttnlabError, RuntimeError):
    """Typst failed to compile the writeup (a bug in report/writeup.typ, not in the results)."""


def writeup_source(inputs: Mapping[str, Any]) -> Path:
    path = Path(inputs["writeup"]) if inputs.get("writeup") else CHECKOUT / "report" / "writeup.typ"
    if not path.is_file():
        raise ReportInputError(f"writeup source {path} is missing (set \"writeup\" in INPUTS.json)")
    return path


def stage(inputs: Mapping[str, Any], where: Path) -> dict:
    """Copy the .typ sources and every result into ``where``; return the data dict for Typst.

    Results land at files/<group>[/<run>]/<key><suffix>. JSON files are rewritten
    with inf/nan as strings (Typst's JSON reader rejects them); the rest are copied.
    """
    check_inputs(inputs)
    results = inputs["results"]
    source = writeup_source(inputs)
    for typ in sorted(source.parent.glob("*.typ")):
        shutil.copyfile(typ, where / typ.name)

    files: dict[str, Any] = {}
    originals: list[str] = []
    for group, run, key, path in iter_files(results):
        parsed = check_file(group, run, key, path)  # raises ReportInputError
        originals.append(path)
        rel = Path("files", group, *([run] if run else []), key + Path(path).suffix.lower())
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix == ".json":
            (where / rel).write_text(json.dumps(finite_json(parsed), allow_nan=False), encoding="utf-8")
        else:
            shutil.copyfile(path, where / rel)
        node = files.setdefault(group, {})
        if run:
            node = node.setdefault(run, {})
        node[key] = rel.as_posix()

    config = dict(inputs.get("config") or {})
    report_cfg = config.get("report") or {}
    epoch = facts.results_epoch(originals)
    try:
        walls = facts.wall_times(results.get("benchmarks") or {})
    except ValueError as exc:
        raise ReportInputError(str(exc)) from None

    return {
        "title": report_cfg.get("title") or defaults("report")["title"],
        "author": report_cfg.get("author") or "",
        **provenance_of(inputs),
        "config_digest": digest(config),
        "preset": facts.preset_name(config, CHECKOUT / "config"),  # the presets of this code, not of the inputs
        "epoch": epoch,
        "date": facts.format_date(epoch),
        "wall_times": walls,
        "config_yaml": facts.config_yaml(config),
        "runs": {family: list(results[family]) for family in RUN_GROUPS},
        "data_config": plain(config.get("data") or {}),
        "run_config": {family: {run: run_section(config, family, run) for run in results[family]}
                       for family in RUN_GROUPS},
        "files": files,
        "code": code.listings(),
    }


def compile_pdf(main_typ: Path, root: Path, data_rel: str, epoch: int) -> bytes:
    import typst

    try:
        pdf, warnings = typst.compile_with_warnings(
            str(main_typ), output=None, root=str(root), format="pdf",
            font_paths=[], ignore_system_fonts=True,  # bundled fonts only: same bytes everywhere
            sys_inputs={"data": data_rel}, timestamp=int(epoch),
        )
    except typst.TypstError as exc:
        detail = getattr(exc, "diagnostic", "") or ""
        hints = "; ".join(getattr(exc, "hints", []) or [])
        raise ReportBuildError(f"typst could not compile {main_typ.name}: {exc}\n{detail}\n{hints}".rstrip()) from None
    for w in warnings:
        print(f"typst warning: {getattr(w, 'message', w)}", file=sys.stderr)
    return pdf


def build_report(inputs: Mapping[str, Any], out_pdf: str | Path, data_json: str | Path | None = None) -> Path:
    """Check the results, compile the writeup and write ``out_pdf`` atomically.

    ``data_json``, if given, also receives the facts dict handed to Typst (for debugging).
    Raises ReportInputError (missing/malformed result) or ReportBuildError (Typst failed).
    """
    out_pdf = Path(out_pdf)
    with tempfile.TemporaryDirectory(prefix="attnlab-report-") as tmp:
        where = Path(tmp)
        data = stage(inputs, where)
        # the config may hold nan/inf too (the appendix prints it): strings, as for the results
        (where / "data.json").write_text(json.dumps(finite_json(data), indent=1, allow_nan=False), encoding="utf-8")
        pdf = compile_pdf(where / writeup_source(inputs).name, where, "data.json", data["epoch"])
    with atomic_path(out_pdf) as part:
        part.write_bytes(pdf)
    if data_json is not None:
        write_json(data_json, data)
    return out_pdf


def load_inputs(path: str | Path) -> dict:
    """Read INPUTS.json; a file that is not a readable JSON object raises ReportInputError."""
    p = Path(path)
    if not p.is_file():
        raise ReportInputError(f"inputs file {p} is missing" if not p.exists() else f"inputs file {p} is not a file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReportInputError(f"inputs file {p} is not valid UTF-8 JSON ({exc.__class__.__name__}: "
                               f"{str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"inputs file {p} must hold a JSON object (see attnlab.report.build)")
    return data
