"""report stage: the homework writeup, compiled from the results with Typst.

    python -m attnlab.report --inputs INPUTS.json --out PDF

``build_report(inputs, out_pdf)`` does the work; INPUTS is described in
attnlab.report.build, and attnlab.report.inputs.make_inputs builds it for the
standard results/ layout. Nothing heavy is imported here (the Snakefile
imports attnlab.report.inputs while planning).
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "build_report": "attnlab.report.build",
    "ReportBuildError": "attnlab.report.build",
    "ReportInputError": "attnlab.report.validate",
    "make_inputs": "attnlab.report.inputs",
    "result_paths": "attnlab.report.inputs",
    "main": "attnlab.report.cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'attnlab.report' has no attribute {name!r}")
