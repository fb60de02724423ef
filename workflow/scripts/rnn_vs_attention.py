"""Rule rnn_vs_attention: scaling and contribution measurements (theory section)."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.theory", lambda cfg: [
    "--config", cfg, "--out-dir", os.path.dirname(snakemake.output.json),
])
