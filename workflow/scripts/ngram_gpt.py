"""Rule ngram_gpt: the Kneser-Ney baseline on DialogueGPT's tokens, every order of gpt.baseline.orders."""
from _stage import run_stage

run_stage(snakemake, "attnlab.gpt.ngram", lambda cfg: [
    "--data", snakemake.input.dialogues,
    "--vocab", snakemake.input.vocab,
    "--vocab-report", snakemake.input.vocab_report,
    "--source", snakemake.input.source,
    "--val-text", snakemake.input.val,
    "--config", cfg,
    "--out", snakemake.output.ngram,
])
