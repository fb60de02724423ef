"""Rule explore_views: screenshots of each view of an explorer page (attention_views/*.png)."""
from _stage import run_stage

run_stage(snakemake, "attnlab.explore.views", lambda cfg: [
    "--page", snakemake.input.html,
    "--out-dir", snakemake.output.views,
])
