# attnlab: transformers from scratch, from the data to a PDF writeup.
#
#   snakemake --cores all --use-conda                       # GPU preset (config/config.yaml)
#   snakemake --cores 2 --configfile config/cpu.yaml        # small CPU preset
#   snakemake --profile profiles/slurm                      # on a SLURM cluster
#
# See docs/pipeline.md for the rule graph, the config keys (config/README.md)
# and how caching works.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")

ROOT = Path(workflow.basedir).resolve()  # the checkout; the working directory may be elsewhere (-d)

# The checkout's package (config merging, report inputs) and the planning-time helpers
# (workflow/lib: config checks, data sources, code digests); one insert for the whole workflow.
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "workflow" / "lib")]
import configcheck

configfile: str(ROOT / "config" / "config.yaml")

# Stop before any job: aliases that expand a small file into billions of values first (every
# later step walks the tree); then a misspelt key, a wrong type or an out-of-range value, one
# line per problem naming the key, in front of Snakemake's own schema report; then what the
# schema cannot express (divisibility, finite numbers, data sources inside results/, sizes
# that cannot fit in memory).
configcheck.check_size(config)
try:
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
except WorkflowError:
    configcheck.check_schema(config)
    raise
configcheck.check_semantics(config)


# Run names of the vit/gpt sweeps (vit.runs, gpt.runs) become the {run} wildcard and a
# folder name: no leading dot, so never "." or ".." (the schema's run_name says the same).
wildcard_constraints:
    run=r"[A-Za-z0-9_-][A-Za-z0-9_.-]*",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/vit.smk"
include: "workflow/rules/gpt.smk"
include: "workflow/rules/explore.smk"
include: "workflow/rules/report.smk"


# Downloads need the network, which cluster compute nodes often lack.
localrules: all, download_cifar10, download_shakespeare


rule all:
    default_target: True
    input:
        "results/report/writeup.pdf",
        "results/checks/module_checks.json",
        "results/theory/rnn_vs_attention.json",
        vit_run_files(),
        gpt_run_files(),
        view_files(),
