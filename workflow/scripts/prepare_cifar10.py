"""Rule prepare_cifar10: any supported CIFAR-10 source -> {train,test}.pt + manifest.json."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.data.__main__", lambda _cfg: [
    "prepare-cifar10", "--source", snakemake.input.source,
    "--md5", snakemake.params.md5 or "null",  # null: skip the check
    "--sha256", snakemake.params.sha256 or "null",
    "--out-dir", os.path.dirname(snakemake.output.manifest),
])
