"""Rule vit_heatmaps: CLS attention heatmaps, attention rollout and their statistics."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.vit.heatmaps", lambda cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--data", snakemake.input.test,
    "--n-images", str(snakemake.params.n_images),
    "--out-dir", os.path.dirname(snakemake.output.stats),
])
