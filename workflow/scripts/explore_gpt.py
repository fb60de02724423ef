"""Rule explore_gpt: DialogueGPT's interactive attention page (attention.html)."""
from _stage import run_stage

run_stage(snakemake, "attnlab.explore.gpt", lambda cfg: [
    "--checkpoint", snakemake.input.checkpoint,
    "--vocab", snakemake.input.vocab,
    "--dialogues", snakemake.input.dialogues,
    "--generation", snakemake.input.generation,
    "--run", snakemake.wildcards.run,
    "--out", snakemake.output.html,
])
