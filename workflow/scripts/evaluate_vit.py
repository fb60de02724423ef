"""Rule evaluate_vit: test accuracy, per-class accuracy and confusion matrix of one run."""
from _stage import run_stage

run_stage(snakemake, "attnlab.vit.evaluate", lambda _cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--data", snakemake.input.test,
    "--out", snakemake.output.eval,
    "--confusion", snakemake.output.confusion,
])
