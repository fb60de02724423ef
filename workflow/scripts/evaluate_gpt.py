"""Rule evaluate_gpt: validation loss, perplexity and bits per character on val.txt."""
from _stage import run_stage

run_stage(snakemake, "attnlab.gpt.evaluate", lambda _cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--vocab", snakemake.input.vocab,
    "--text", snakemake.input.text,
    "--out", snakemake.output.eval,
])
