"""Which result files the writeup reads, and which rule makes each of them.

The same table drives three things: the ``report`` rule's Snakemake inputs
(workflow/rules/report.smk), the INPUTS.json that ``python -m attnlab.report``
reads, and the error a missing or malformed file gives ("... it is made by
rule evaluate_vit").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from attnlab.config import run_names

# (key in INPUTS["results"][group], file name, rule that writes it)
DATA_FILES = {
    "cifar10_manifest": ("cifar10/manifest.json", "prepare_cifar10"),
    "vocab_report": ("shakespeare/vocab_report.json", "build_vocab"),
    "lengths": ("shakespeare/lengths.png", "build_vocab"),
}
CHECKS_FILES = {
    "module_checks": ("module_checks.json", "module_checks"),
    "attention_mask": ("attention_mask.png", "module_checks"),
}
THEORY_FILES = {
    "rnn_vs_attention": ("rnn_vs_attention.json", "rnn_vs_attention"),
    "scaling": ("scaling.svg", "rnn_vs_attention"),
    "contribution": ("contribution.svg", "rnn_vs_attention"),
}
VIT_FILES = {
    "metrics": ("metrics.csv", "train_vit"),
    "curves": ("curves.png", "train_vit"),
    "train_summary": ("train_summary.json", "train_vit"),
    "eval": ("eval.json", "evaluate_vit"),
    "confusion": ("confusion.png", "evaluate_vit"),
    "heatmap_stats": ("heatmap_stats.json", "vit_heatmaps"),
    "heatmaps": ("heatmaps.png", "vit_heatmaps"),
    "rollout": ("rollout.png", "vit_heatmaps"),
}
GPT_FILES = {
    "metrics": ("metrics.csv", "train_gpt"),
    "curves": ("curves.png", "train_gpt"),
    "samples": ("samples.jsonl", "train_gpt"),
    "train_summary": ("train_summary.json", "train_gpt"),
    "eval": ("eval.json", "evaluate_gpt"),
    "generation": ("generation.json", "generate_gpt"),
}
# Rules whose Snakemake benchmark (column ``s``) gives the wall times on the title page.
TIMED_RULES = {"vit": "train_vit", "gpt": "train_gpt"}

# Groups of INPUTS["results"] with fixed file sets, and the sub-folder of results/ each lives in.
FIXED_GROUPS = {"data": (DATA_FILES, "data"), "checks": (CHECKS_FILES, "checks"),
                "theory": (THEORY_FILES, "theory")}
RUN_GROUPS = {"vit": VIT_FILES, "gpt": GPT_FILES}


def result_paths(config: Mapping[str, Any], results: str | Path = "results") -> dict:
    """INPUTS["results"] for ``config``: every file the writeup reads, under the ``results`` folder."""
    root = Path(results)
    out: dict[str, Any] = {}
    for group, (files, sub) in FIXED_GROUPS.items():
        out[group] = {key: str(root / sub / name) for key, (name, _) in files.items()}
    for family, files in RUN_GROUPS.items():
        out[family] = {run: {key: str(root / family / run / name) for key, (name, _) in files.items()}
                       for run in run_names(config, family)}
    out["benchmarks"] = {rule: {run: str(root / "benchmarks" / rule / f"{run}.tsv")
                                for run in run_names(config, family)}
                         for family, rule in TIMED_RULES.items()}
    return out


def make_inputs(config: Mapping[str, Any], results: str | Path = "results",
                provenance: Mapping[str, Any] | None = None, writeup: str | Path | None = None) -> dict:
    """A complete INPUTS dict (see attnlab.report.build) for the standard results layout.

    ``provenance``: {"commit", "dirty"} of the checkout, from
    attnlab.report.provenance.checkout_provenance (None: commit "unknown").
    """
    return {
        "config": dict(config),
        "provenance": dict(provenance) if provenance is not None else None,
        "writeup": str(writeup) if writeup is not None else None,
        "results": result_paths(config, results),
    }


def required_files(results: Mapping[str, Any]) -> list[str]:
    """Every path in INPUTS["results"] except the (optional) benchmarks, in a stable order."""
    paths: list[str] = []
    for group in FIXED_GROUPS:
        paths += list(results[group].values())
    for family in RUN_GROUPS:
        for files in results[family].values():
            paths += list(files.values())
    return paths


def rule_for(group: str, key: str) -> str:
    """The rule that makes INPUTS["results"][group][...][key]."""
    table = FIXED_GROUPS[group][0] if group in FIXED_GROUPS else RUN_GROUPS[group]
    return table[key][1]
