"""Rule evaluate_gpt: validation loss, perplexity and bits per character on val.txt, beside the n-gram baseline."""
from _stage import run_stage

run_stage(snakemake, "attnlab.gpt.evaluate", lambda _cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--vocab", snakemake.input.vocab,
    "--text", snakemake.input.text,
    "--out", snakemake.output.eval,
    "--ngram", snakemake.input.ngram,
    "--data", snakemake.input.dialogues,
    "--vocab-report", snakemake.input.vocab_report,
    "--source", snakemake.input.source,
])
