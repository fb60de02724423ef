"""Rule train_gpt: train one DialogueGPT run ({model, train} of gpt, with the run's overrides)."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.gpt.train", lambda cfg: [
    "--data", snakemake.input.dialogues,
    "--vocab", snakemake.input.vocab,
    "--config", cfg,
    "--out-dir", os.path.dirname(snakemake.output.checkpoint),
], resume_dir=os.path.join(os.path.dirname(snakemake.output.checkpoint), "resume"))
