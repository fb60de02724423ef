"""Rule download_cifar10: fetch the official CIFAR-10 tarball, verified against its md5."""
from _stage import run_stage

run_stage(snakemake, "attnlab.data.__main__", lambda _cfg: [
    "download-cifar10", "--url", snakemake.params.url,
    "--md5", snakemake.params.md5 or "null",  # null: skip the check
    "--out", snakemake.output[0],
    "--max-mb", str(snakemake.params.max_mb), "--deadline-s", str(snakemake.params.deadline_s),
])
