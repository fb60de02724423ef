"""Shared fixtures: one complete tiny pipeline run, reused by every pipeline test.

``tiny_run`` (session scope) copies the workflow and the package source into a
temporary folder, writes synthetic data with ``tinydata`` (a CIFAR-10 tarball in
the official layout, a tiny-shakespeare-format text), and runs the whole DAG
once with ``config/tiny.yaml`` (~2-3 minutes on 2 cores). Tests then plan or
run more Snakemake commands in that finished folder with ``tiny_run.snakemake``.

Working on a copy means tests may touch source files (to check what reruns)
without disturbing the checkout, and never need ../shared/data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a pipeline run needs from the checkout (results/, .venv/ etc. stay behind).
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "envs", "profiles", "report", "src")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".snakemake", "results")


def copy_workflow(dest: Path) -> Path:
    """Copy the parts of the checkout a pipeline run reads into ``dest``; return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_IGNORE)
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def make_tiny_data(workdir: Path) -> None:
    """The inputs config/tiny.yaml names: tinydata/{cifar-10-python.tar.gz,input.txt}."""
    from tinydata import make_cifar_tarball, make_shakespeare_text

    make_cifar_tarball(workdir / "tinydata" / "cifar-10-python.tar.gz", n_per_class_train=10, n_per_class_test=4)
    make_shakespeare_text(workdir / "tinydata" / "input.txt", n_dialogues=60)


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a Snakemake (dry) run; {} when nothing is planned."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("job") and line.split()[-1:] == ["count"]:
            for row in lines[i + 2:]:
                parts = row.split()
                if len(parts) != 2 or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            break
    return counts


def planned_runs(output: str) -> set[tuple[str, str | None]]:
    """(rule, run wildcard or None) of every job a dry run lists."""
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", output)[1:]:
        rule = block.split(":", 1)[0].split()[1]
        m = re.search(r"^\s+wildcards: .*?\brun=([^,\s]+)", block, re.M)
        jobs.add((rule, m.group(1) if m else None))
    return jobs


@dataclass
class TinyRun:
    """A finished tiny pipeline: ``repo`` (the workflow copy) and ``workdir`` (its results)."""

    repo: Path
    workdir: Path
    seconds: float = 0.0
    extra_env: dict = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.repo / "config" / "tiny.yaml"

    def command(self, *args: str, configfiles: tuple[str | Path, ...] = ()) -> list[str]:
        # args (flags and targets) first: --configfile takes every following word as a file
        return [sys.executable, "-m", "snakemake", "-s", str(self.repo / "Snakefile"), "-d", str(self.workdir),
                "--cores", "2", *args, "--configfile", str(self.config), *map(str, configfiles)]

    def snakemake(self, *args: str, configfiles: tuple[str | Path, ...] = (), check: bool = True,
                  timeout: float = 900) -> subprocess.CompletedProcess:
        """Run snakemake here; output (stdout + stderr) in ``.stdout``."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        proc = subprocess.run(self.command(*args, configfiles=configfiles), cwd=self.workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
        return proc

    def plan(self, *args: str, configfiles: tuple[str | Path, ...] = ()) -> dict[str, int]:
        """Rule -> number of jobs a dry run would execute."""
        proc = self.snakemake("-n", *args, configfiles=configfiles)
        if "Nothing to be done" in proc.stdout:
            return {}
        counts = planned_jobs(proc.stdout)
        assert counts, f"could not read the job table of:\n{proc.stdout[-4000:]}"
        return counts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared tiny CIFAR-10 folder (3 training and 2 test images per class), for the ViT trainer's tests."""
    from tinydata import make_cifar_tarball

    from attnlab.data.cifar10 import prepare

    base = tmp_path_factory.mktemp("vitdata")
    make_cifar_tarball(base / "cifar-10-python.tar.gz", n_per_class_train=3, n_per_class_test=2)
    prepare(base / "cifar-10-python.tar.gz", base / "prepared")
    return base / "prepared"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """The whole pipeline, run once on config/tiny.yaml in a temporary folder."""
    base = tmp_path_factory.mktemp("tiny_pipeline")
    repo = copy_workflow(base / "repo")
    workdir = base / "work"
    workdir.mkdir()
    make_tiny_data(workdir)
    run = TinyRun(repo=repo, workdir=workdir)
    start = time.perf_counter()
    run.snakemake()
    run.seconds = time.perf_counter() - start
    print(f"\n[tiny_run] whole tiny pipeline: {run.seconds:.1f} s in {workdir}")
    return run


def unavailable(why: str, required_by: str, what: str) -> None:
    """Skip a test whose tool is missing, or fail it where ``$required_by`` is 1 (CI: the test must run there)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{what} required ({required_by}=1) but {why}")
    pytest.skip(why)


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test will send SIGINT: Ctrl-C's default action, as in a terminal.

    A child of a shell's background job (``cmd &``, nohup) inherits SIGINT ignored,
    and Python then keeps it ignored: the signal would do nothing at all there.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


class FakeClock:
    """A clock that moves only when simulated work is done (``advance``); ``marks``: time after each save."""

    def __init__(self) -> None:
        self.t, self.marks, self.epoch = 0.0, [], 1

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def fake_clock(monkeypatch, trainer, validate_name: str, step, validate: float, save: float) -> FakeClock:
    """Replace attnlab.training.now by a FakeClock that a trainer's steps, validation and saves advance.

    ``step(epoch)`` is the cost of one optimizer step in that epoch; ``validate``
    of one validation call (``trainer.<validate_name>``); ``save`` of one resume save.
    """
    from attnlab import training

    clock = FakeClock()
    monkeypatch.setattr(training, "now", clock)
    real_adamw, real_validate, real_save = trainer.make_adamw, getattr(trainer, validate_name), training.torch_save

    def make_adamw(*args, **kwargs):
        opt = real_adamw(*args, **kwargs)
        real_step = opt.step

        def timed_step(*a, **k):
            clock.advance(step(clock.epoch))
            return real_step(*a, **k)

        opt.step = timed_step
        return opt

    def timed_validate(*args, **kwargs):
        clock.advance(validate)
        return real_validate(*args, **kwargs)

    def timed_save(obj, path):
        if "state" not in obj:  # the checkpoint written once training has ended
            return real_save(obj, path)
        clock.advance(save)
        real_save(obj, path)
        clock.marks.append(clock.t)  # a resume save ends an epoch
        clock.epoch += 1

    monkeypatch.setattr(trainer, "make_adamw", make_adamw)
    monkeypatch.setattr(trainer, validate_name, timed_validate)
    monkeypatch.setattr(training, "torch_save", timed_save)
    return clock
