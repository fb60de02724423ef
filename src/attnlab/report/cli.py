"""Command line of the report stage."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attnlab.report",
        description="Compile the homework writeup (report/writeup.typ) from the pipeline's results into a PDF. "
                    "INPUTS.json lists the config and every result file (see attnlab.report.build).",
    )
    parser.add_argument("--inputs", required=True, type=Path, help="INPUTS.json: config, repo and result paths")
    parser.add_argument("--out", required=True, type=Path, help="PDF to write (atomically)")
    parser.add_argument("--data-json", type=Path, default=None,
                        help="also write the facts handed to Typst here (for debugging)")
    args = parser.parse_args(argv)

    from attnlab.report.build import ReportBuildError, build_report, load_inputs
    from attnlab.report.validate import ReportInputError

    start = time.perf_counter()
    try:
        build_report(load_inputs(args.inputs), args.out, data_json=args.data_json)
    except (ReportInputError, ReportBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.perf_counter() - start:.1f}s")
    return 0
