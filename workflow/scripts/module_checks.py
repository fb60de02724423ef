"""Rule module_checks: the starter code's Problem 2 checks of the attention modules."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.checks", lambda _cfg: ["--out-dir", os.path.dirname(snakemake.output.checks)])
