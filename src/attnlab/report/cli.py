"""Command line of the report stage."""

from __future__ import annotations

import time
from pathlib import Path

from attnlab.cli import stage_parser
from attnlab.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("attnlab.report", "Compile the homework writeup (report/writeup.typ) from the pipeline's "
                          "results into a PDF. INPUTS.json lists the config, the checkout's provenance and every "
                          "result file (see attnlab.report.build).")
    parser.add_argument("--inputs", required=True, type=Path, help="INPUTS.json: config, provenance, result paths")
    parser.add_argument("--out", required=True, type=Path, help="PDF to write (atomically)")
    parser.add_argument("--data-json", type=Path, default=None,
                        help="also write the facts handed to Typst here (for debugging)")
    args = parser.parse_args(argv)

    from attnlab.report.build import build_report, load_inputs

    start = time.perf_counter()
    build_report(load_inputs(args.inputs), args.out, data_json=args.data_json)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.perf_counter() - start:.1f}s")
    return 0
