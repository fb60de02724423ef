"""The pipeline through a real SLURM controller (snakemake --profile profiles/slurm).

Needs a running cluster (`bash .ci/slurm-up.sh` starts a one-node one on this
machine) and the snakemake-executor-plugin-slurm; skips cleanly without them,
except in CI where ATTNLAB_REQUIRE_SLURM=1 turns the skip into a failure.

A small part of the tiny DAG (5 jobs: both data preparations, the module checks,
the theory measurements and one GPT training, which asks for gpu=1) goes
through sbatch; the test checks with the controller (`scontrol show job`) that
each job ran there, and that the outputs equal those of the local tiny run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import unavailable

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TARGETS = [
    "results/data/cifar10/manifest.json",
    "results/data/shakespeare/vocab.json",
    "results/checks/module_checks.json",
    "results/theory/rnn_vs_attention.json",
    "results/gpt/main/train_summary.json",
]
RULES = {"prepare_cifar10", "build_vocab", "module_checks", "rnn_vs_attention", "train_gpt"}


def _unavailable(why: str):
    unavailable(why, "ATTNLAB_REQUIRE_SLURM", "SLURM test")


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        _unavailable("no SLURM client (sinfo/sbatch) on PATH; `bash .ci/slurm-up.sh` starts a local cluster")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _unavailable("snakemake-executor-plugin-slurm is not installed (pip install '.[slurm]')")
    nodes = subprocess.run(["sinfo", "-h", "-N", "-r", "-o", "%N %T %c %G"], capture_output=True, text=True)
    up = [line.split() for line in nodes.stdout.splitlines() if re.search(r"\b(idle|mixed)\b", line)]
    if nodes.returncode != 0 or not up:
        _unavailable(f"no SLURM node is up (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})")
    return {"has_gpu_gres": any("gpu" in fields[-1] for fields in up)}


def _show_job(jobid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def test_pipeline_runs_through_slurm(cluster, tiny_run, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(tiny_run.workdir / "tinydata", workdir / "tinydata")
    # A CPU-only test node: small memory asks; GPU jobs run when the node has a (fake) gpu gres, else gpu=0.
    resources = [f"{rule}:mem_mb=1000" for rule in sorted(RULES)]
    if not cluster["has_gpu_gres"]:
        resources.append("train_gpt:gpu=0")
    cmd = ["timeout", "-s", "INT", "600", sys.executable, "-m", "snakemake",
           "-s", str(tiny_run.repo / "Snakefile"), "-d", str(workdir),
           "--profile", str(tiny_run.repo / "profiles" / "slurm"),
           "--configfile", str(tiny_run.config),
           # no slurmdbd here: poll with squeue (the cluster keeps finished jobs for MinJobAge=600 s)
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-no-account", "--slurm-keep-successful-logs", "--latency-wait", "10",
           "--set-threads", "train_gpt=2", "--set-resources", *resources, "--", *TARGETS]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    print(f"\n[slurm] {len(RULES)} jobs through sbatch in {seconds:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:]

    # every job was submitted to SLURM, and the controller ran it, in our folder
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+?)/", proc.stdout))
    assert set(submitted.values()) == RULES, proc.stdout[-4000:]
    for jobid, rule in submitted.items():
        job = _show_job(jobid)
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert os.path.samefile(job["WorkDir"], workdir), (rule, job["WorkDir"])
        if rule == "train_gpt" and cluster["has_gpu_gres"]:
            assert "gpu:1" in job.get("TresPerJob", ""), job  # gpu=1 became --gpus=1
    assert list((workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))

    _assert_same_outputs(workdir / "results", tiny_run.workdir / "results")


def _assert_same_outputs(slurm: "os.PathLike", local: "os.PathLike") -> None:
    """The deterministic parts of what the SLURM jobs wrote equal the local run's."""
    import torch

    from pathlib import Path

    slurm, local = Path(slurm), Path(local)
    for name in ("data/shakespeare/vocab.json", "data/shakespeare/val.txt"):
        assert (slurm / name).read_bytes() == (local / name).read_bytes(), name

    def without_timing(path):
        obj = json.loads(path.read_text())
        return _drop(obj, {"seconds", "hardware", "device"})

    for name in ("data/cifar10/manifest.json", "data/shakespeare/vocab_report.json", "checks/module_checks.json"):
        assert without_timing(slurm / name) == without_timing(local / name), name
    for split in ("train", "test"):
        a = torch.load(slurm / f"data/cifar10/{split}.pt", weights_only=True)
        b = torch.load(local / f"data/cifar10/{split}.pt", weights_only=True)
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])

    theory_s = json.loads((slurm / "theory/rnn_vs_attention.json").read_text())
    theory_l = json.loads((local / "theory/rnn_vs_attention.json").read_text())
    assert theory_s["contribution"] == theory_l["contribution"]
    for method, rec in theory_l["scaling"]["methods"].items():
        assert theory_s["scaling"]["methods"][method]["flops"] == rec["flops"], method

    # GPT training is seeded and single-threaded: same losses, same weights
    cols = lambda p: [line.split(",")[:7] for line in p.read_text().splitlines()]  # epoch..lr, no timings
    assert cols(slurm / "gpt/main/metrics.csv") == cols(local / "gpt/main/metrics.csv")
    sa = torch.load(slurm / "gpt/main/checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(local / "gpt/main/checkpoint.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _drop(obj, keys):
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_drop(v, keys) for v in obj]
    return obj


def test_gpu_preset_decides_inside_the_job_on_slurm(cluster, tiny_run, tmp_path):
    """Planning on the login node (no GPU) goes through; the job on the compute node, which has no
    CUDA device here (its gpu gres is fake), stops at once with one line saying what to do."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(tiny_run.workdir / "tinydata", workdir / "tinydata")
    extra = tmp_path / "gpuonly.yaml"
    extra.write_text(json.dumps({"gpt": {"runs": {"gpuonly": {"train": {"device": "auto", "require_gpu": True}}}}}))
    resources = [f"{rule}:mem_mb=1000" for rule in ("build_vocab", "train_gpt")]
    if not cluster["has_gpu_gres"]:
        resources.append("train_gpt:gpu=0")
    target = "results/gpt/gpuonly/train_summary.json"
    cmd = ["timeout", "-s", "INT", "600", sys.executable, "-m", "snakemake",
           "-s", str(tiny_run.repo / "Snakefile"), "-d", str(workdir),
           "--profile", str(tiny_run.repo / "profiles" / "slurm"),
           "--configfile", str(tiny_run.config), str(extra),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-no-account", "--latency-wait", "10", "--retries", "0",
           "--set-resources", *resources, "--", target]
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode != 0, proc.stdout[-4000:]
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+?)/", proc.stdout))
    jobid = next(j for j, rule in submitted.items() if rule == "train_gpt")  # it was planned and submitted
    assert _show_job(jobid)["JobState"] == "FAILED"
    log = (workdir / "results" / "logs" / "train_gpt" / "gpuonly.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "gpt.train.require_gpu is true" in errors[0], log[-3000:]
    assert "--configfile config/cpu.yaml" in errors[0]
    assert "[gpt] epoch" not in log and not (workdir / target).exists()
