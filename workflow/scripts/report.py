"""Rule report: compile report/writeup.typ with every result into results/report/writeup.pdf.

The INPUTS.json handed to ``python -m attnlab.report`` is kept beside the log
(results/logs/report.inputs.json) so a failed build can be rerun by hand. The
checkout's commit is recorded in it here, by git run on this checkout with
its program-running settings switched off (attnlab.report.provenance); the
report stage itself never runs git.
"""
import json
from pathlib import Path

from _stage import ROOT, run_stage


def argv(_section):
    from attnlab.report.inputs import make_inputs
    from attnlab.report.provenance import checkout_provenance

    inputs = make_inputs(snakemake.params.config, results="results", provenance=checkout_provenance(ROOT),
                         writeup=ROOT / "report" / "writeup.typ")
    path = Path(snakemake.log[0]).with_suffix(".inputs.json")
    path.write_text(json.dumps(inputs, indent=1, default=str), encoding="utf-8")
    return ["--inputs", str(path), "--out", snakemake.output.pdf]


run_stage(snakemake, "attnlab.report", argv)
