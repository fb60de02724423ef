"""Rule generate_gpt: sample dialogues and time plain vs KV-cached generation."""
from _stage import run_stage

run_stage(snakemake, "attnlab.gpt.generate", lambda cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--vocab", snakemake.input.vocab,
    "--config", cfg,
    "--out-txt", snakemake.output.txt,
    "--out-json", snakemake.output.json,
])
