"""Rule build_vocab: tiny-shakespeare -> dialogues split, vocabulary, vocabulary report."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.data.__main__", lambda cfg: [
    "build-vocab", "--text", snakemake.input.text,
    "--sha256", snakemake.params.sha256 or "null",  # null: skip the check
    "--config", cfg,
    "--out-dir", os.path.dirname(snakemake.output.vocab),
])
