"""The Snakemake pipeline end to end on the tiny config: outputs, caching, interruption.

All tests share one finished run (the ``tiny_run`` fixture in conftest.py) and
leave it finished: dry runs plan without running, touched files get their old
modification time back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, planned_runs

pytestmark = pytest.mark.slow

VIT_RULES = {"train_vit", "evaluate_vit", "vit_heatmaps", "explore_vit"}
GPT_RULES = {"train_gpt", "evaluate_gpt", "generate_gpt", "explore_gpt"}
DATA_RULES = {"download_cifar10", "download_shakespeare", "prepare_cifar10", "build_vocab"}


@contextmanager
def edited(path: Path, addition: bytes | None = None):
    """Append ``addition`` (default: a line of code) to ``path``, then restore its bytes and mtime.

    A plain `touch` is not enough: Snakemake (>= 8) keeps checksums of small
    inputs and rightly ignores a file that is newer but unchanged; and for the
    package code only a change of the code itself counts (pkgdeps.code_digest).
    """
    st, original = path.stat(), path.read_bytes()
    if addition is None:
        addition = b"\n// edited by a test\n" if path.suffix == ".typ" else b"\n_EDITED_BY_A_TEST = 1\n"
    path.write_bytes(original + addition)
    later = time.time() + 5
    os.utime(path, (later, later))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_complete_run_writes_every_output(tiny_run):
    res = tiny_run.workdir / "results"
    assert (res / "report" / "writeup.pdf").read_bytes()[:5] == b"%PDF-"
    tiny = yaml.safe_load(tiny_run.config.read_text())
    gpt_runs = list(tiny["gpt"]["runs"])
    assert gpt_runs == ["main", "narrow"]
    for run in gpt_runs:
        ev = json.loads((res / "gpt" / run / "eval.json").read_text())
        assert ev["n_tokens"] > 0 and ev["val_loss"] > 0
        assert json.loads((res / "gpt" / run / "generation.json").read_text())["samples"]
        # every job has its log and its benchmark
        for rule in GPT_RULES:
            assert (res / "logs" / rule / f"{run}.log").is_file()
            assert (res / "benchmarks" / rule / f"{run}.tsv").read_text().startswith("s\t")
    # the sweep really trained two different models
    widths = {run: json.loads((res / "gpt" / run / "train_summary.json").read_text())["n_params"] for run in gpt_runs}
    assert widths["main"] > widths["narrow"]
    assert json.loads((res / "checks" / "module_checks.json").read_text())["all_passed"] is True
    assert (res / "vit" / "main" / "eval.json").is_file() and (res / "vit" / "main" / "heatmap_stats.json").is_file()
    # offline sources: the download rules never ran
    assert not (res / "data" / "cifar10" / "download").exists()
    assert not (res / "data" / "shakespeare" / "input.txt").exists()


def test_finished_run_plans_nothing(tiny_run):
    start = time.perf_counter()
    proc = tiny_run.snakemake("-n")
    seconds = time.perf_counter() - start
    print(f"\n[no-op] snakemake -n on the finished tiny run: {seconds:.2f} s")
    assert "Nothing to be done" in proc.stdout, proc.stdout[-3000:]


def test_changing_a_gpt_param_plans_only_gpt_and_report(tiny_run, tmp_path):
    extra = tmp_path / "lr.yaml"
    extra.write_text(yaml.safe_dump({"gpt": {"train": {"lr": 0.0123}}}))
    plan = tiny_run.plan(configfiles=(extra,))
    assert set(plan) == GPT_RULES | {"report", "all"}, plan
    assert plan["train_gpt"] == 2  # both runs of the sweep inherit gpt.train.lr


def test_changing_one_runs_override_plans_only_that_run(tiny_run, tmp_path):
    extra = tmp_path / "narrow.yaml"
    extra.write_text(yaml.safe_dump({"gpt": {"runs": {"narrow": {"model": {"d_model": 24}}}}}))
    proc = tiny_run.snakemake("-n", configfiles=(extra,))
    assert planned_runs(proc.stdout) == {(rule, "narrow") for rule in GPT_RULES} | {("report", None), ("all", None)}


def test_editing_the_writeup_source_plans_only_report(tiny_run):
    with edited(tiny_run.repo / "report" / "writeup.typ"):
        plan = tiny_run.plan()
    assert set(plan) == {"report", "all"}, plan


def test_editing_vit_model_code_plans_vit_not_gpt(tiny_run):
    with edited(tiny_run.repo / "src" / "attnlab" / "vit" / "model.py"):
        plan = tiny_run.plan()
    assert VIT_RULES <= set(plan), plan
    assert "report" in plan
    assert not (set(plan) & (GPT_RULES | DATA_RULES)), plan
    # anything else planned must really import the ViT model (e.g. the module checks' ViT demo)
    import sys

    sys.path.insert(0, str(tiny_run.repo / "workflow" / "lib"))
    import pkgdeps

    model = str((tiny_run.repo / "src" / "attnlab" / "vit" / "model.py").resolve())
    assert "module_checks" in plan  # its ViT demo builds the model
    for rule in set(plan) - VIT_RULES - {"report", "all"}:
        assert rule == "module_checks", plan
        assert model in pkgdeps.source_files(tiny_run.repo / "src", "attnlab.checks")


def test_editing_gpt_code_plans_gpt_not_vit(tiny_run):
    with edited(tiny_run.repo / "src" / "attnlab" / "gpt" / "model.py"):
        plan = tiny_run.plan()
    assert GPT_RULES <= set(plan), plan
    assert not (set(plan) & (VIT_RULES | DATA_RULES)), plan


def test_editing_only_comments_and_docstrings_plans_nothing(tiny_run):
    model = tiny_run.repo / "src" / "attnlab" / "vit" / "model.py"
    text = model.read_text()
    # a rewritten module docstring, a new comment and a re-wrapped line: no code changed
    prose = '"""Rewritten docstring."""\n' + text.split('"""', 2)[2].replace("\nimport ", "\n# a new comment\nimport ", 1)
    assert prose != text
    with edited(model, b""):
        model.write_text(prose)
        # only the writeup, whose code appendix prints this file whole, is rebuilt (seconds);
        # no training, evaluation or heatmap job
        assert set(tiny_run.plan()) == {"report", "all"}
    with edited(tiny_run.repo / "src" / "attnlab" / "training.py", b"\n# a closing comment\n"):
        assert tiny_run.plan() == {}  # not printed anywhere: nothing at all


def test_a_copied_checkout_and_results_plan_nothing(tiny_run, tmp_path):
    """The same files (same mtimes) in another folder, as when a cluster mounts the checkout elsewhere."""
    import shutil

    base = tmp_path / "moved"
    repo, workdir = base / "repo", base / "work"
    shutil.copytree(tiny_run.repo, repo, symlinks=True)  # copy2: modification times kept
    shutil.copytree(tiny_run.workdir, workdir, symlinks=True)
    moved = type(tiny_run)(repo=repo, workdir=workdir)
    assert moved.plan() == {}
    with edited(repo / "src" / "attnlab" / "gpt" / "model.py"):  # and code changes still count there
        assert GPT_RULES <= set(moved.plan())


def test_gpu_sizes_without_a_gpu_stop_in_seconds_with_the_fix_on_the_console(tiny_run, tmp_path):
    """The GPU preset's require_gpu with device auto, on this machine without a GPU (CI's too)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    extra = tmp_path / "gpu.yaml"
    extra.write_text(yaml.safe_dump({"vit": {"runs": {"gpusized": {"train": {"device": "auto", "require_gpu": True}}}}}))
    proc = tiny_run.snakemake("results/vit/gpusized/checkpoint.pt", configfiles=(extra,), check=False)
    assert proc.returncode != 0
    log = (tiny_run.workdir / "results" / "logs" / "train_vit" / "gpusized.log").read_text()
    assert "[vit epoch" not in log  # stopped before the first step, not hours into a GPU-sized run
    line = next(x for x in proc.stdout.splitlines() if "error: vit.train.require_gpu is true" in x)
    assert "--configfile config/cpu.yaml" in line and "require_gpu: false" in line
    out = tiny_run.workdir / "results" / "vit" / "gpusized"
    assert not (out / "checkpoint.pt").exists() and not (out / "resume").exists()


def test_a_killed_job_leaves_nothing_a_rerun_trusts(tiny_run, tmp_path):
    """SIGKILL snakemake and its job mid-training: the rerun redoes the job and finishes it."""
    extra = tmp_path / "killme.yaml"
    extra.write_text(yaml.safe_dump({"gpt": {"runs": {"killme": {"train": {"epochs": 60}}}}}))
    outdir = tiny_run.workdir / "results" / "gpt" / "killme"
    target = "results/gpt/killme/checkpoint.pt"
    console = tmp_path / "snakemake.out"
    with open(console, "w") as out:
        proc = subprocess.Popen(tiny_run.command(target, configfiles=(extra,)), cwd=tiny_run.workdir,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        # the trainer's per-epoch resume state shows training is under way
        while not (outdir / "resume").is_dir() or not any((outdir / "resume").iterdir()):
            assert proc.poll() is None, f"snakemake ended before the kill:\n{console.read_text()[-4000:]}"
            assert time.time() < deadline, "training never started"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # outputs are written only once training has ended: a killed run leaves its resume state (and the
    # rule wrapper's stamp of the job that wrote it) alone
    assert sorted(p.name for p in outdir.iterdir()) == ["resume", "resume.stamp.json"], sorted(outdir.iterdir())
    # a hard kill leaves snakemake's lock behind; unlocking is the documented first step
    tiny_run.snakemake("--unlock", configfiles=(extra,))
    proc = tiny_run.snakemake("-n", target, configfiles=(extra,))
    assert planned_runs(proc.stdout) == {("train_gpt", "killme")}, proc.stdout[-3000:]
    # the rerun completes (resuming from the per-epoch state) with a full, valid record
    tiny_run.snakemake(target, configfiles=(extra,))
    metrics = (outdir / "metrics.csv").read_text().strip().splitlines()
    assert [int(line.split(",")[0]) for line in metrics[1:]] == list(range(1, 61))
    assert "Nothing to be done" in tiny_run.snakemake("-n", target, configfiles=(extra,)).stdout


def test_a_failing_data_stage_prints_its_error_line_on_the_console(tmp_path):
    """The stage's one `error:` line reaches Snakemake's console, not only the job's log (a fresh workdir,
    so the shared tiny run keeps its outputs: Snakemake deletes a failed job's outputs)."""
    from conftest import TinyRun, make_tiny_data

    work = tmp_path / "work"
    make_tiny_data(work)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"data": {"shakespeare": {"sha256": "0" * 64}}}))
    run = TinyRun(repo=ROOT, workdir=work)
    proc = run.snakemake("results/data/shakespeare/vocab.json", configfiles=(wrong,), check=False, timeout=300)
    assert proc.returncode != 0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("[build_vocab.log] error: ")), None)
    assert line is not None, proc.stdout[-4000:]
    assert "sha256 mismatch" in line and "0" * 64 in line and "data.shakespeare.sha256" in line
    assert "Traceback" not in (work / "results" / "logs" / "build_vocab.log").read_text()
    assert not (work / "results" / "data" / "shakespeare" / "vocab.json").exists()


def test_snakemake_report_shows_each_figure_with_its_caption(tiny_run, tmp_path):
    """`snakemake --report`: every report/*.rst caption is attached to the figure it describes, per run."""
    html = tmp_path / "report.html"
    tiny_run.snakemake("--report", str(html))
    text = html.read_text()
    captions = sorted((ROOT / "report").glob("*.rst"))
    # every caption file is some rule's (none is dead), and every rule's caption exists
    wired = set(re.findall(r'caption="\.\./\.\./report/([\w.-]+\.rst)"',
                           "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))))
    assert wired == {c.name for c in captions} and len(captions) >= 12, (wired, captions)
    # the tiny preset takes no screenshots (they need a browser): test_explore_browser checks their caption
    for caption in (c for c in captions if c.name != "explore_views.rst"):
        body = caption.read_text()
        if "{{" in body.split(":")[0]:  # "ViT run ``{{ snakemake.wildcards.run }}``: ...": what follows is its own
            body = body.split(": ", 1)[1]
        words = " ".join(body.split("``")[0].split()[:5])  # plain words: inline literals render as <tt>
        assert len(words.split()) >= 3, caption.name
        assert words in text, f"{caption.name}: {words!r} is not in the report"
    for run in ("main", "narrow"):  # the {run} wildcard in the GPT caption, rendered per run
        assert f'DialogueGPT run <tt class=\\"docutils literal\\">{run}</tt>' in text
    assert 'ViT run <tt class=\\"docutils literal\\">main</tt>: attention rollout' in text
