"""Rule explore_vit: the ViT's interactive attention page (attention.html)."""
from _stage import run_stage

run_stage(snakemake, "attnlab.explore.vit", lambda cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--data", snakemake.input.test,
    "--n-images", str(snakemake.params.n_images),
    "--run", snakemake.wildcards.run,
    "--out", snakemake.output.html,
])
