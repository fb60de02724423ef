"""Rule train_vit: train one ViT run ({model, train} of vit, with the run's overrides)."""
import os

from _stage import run_stage

run_stage(snakemake, "attnlab.vit.train", lambda cfg: [
    "--data", os.path.dirname(snakemake.input.train),
    "--config", cfg,
    "--out-dir", os.path.dirname(snakemake.output.checkpoint),
], resume_dir=os.path.join(os.path.dirname(snakemake.output.checkpoint), "resume"))
