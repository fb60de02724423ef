"""Rule download_shakespeare: fetch tiny-shakespeare, verified against its sha256."""
from _stage import run_stage

run_stage(snakemake, "attnlab.data.__main__", lambda _cfg: [
    "download-shakespeare", "--url", snakemake.params.url,
    "--sha256", snakemake.params.sha256 or "null",  # null: skip the check
    "--out", snakemake.output[0],
    "--max-mb", str(snakemake.params.max_mb), "--deadline-s", str(snakemake.params.deadline_s),
])
