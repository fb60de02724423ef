"""Shared plumbing of the thin rule scripts.

Each script in this folder reads ``snakemake.input/output/params``, and hands
the work to a stage module's ``main(argv)`` through :func:`run_stage`, which

* puts the checkout's ``src/`` first on ``sys.path``, so the code the rule
  depends on (and whose files are the rule's inputs) is the code that runs,
  with ``--use-conda`` environments too (they hold only third-party packages);
* writes the rule's config section (``params.section``) to a temporary YAML
  file for the stage's ``--config`` option;
* sends stdout and stderr (file descriptors, so C-level output too) to the
  rule's log file;
* exits with the stage's return code, so a failing stage fails the job and
  Snakemake removes the job's outputs.

Training rules also pass ``resume_dir``: the trainers keep per-epoch state there
so that a killed job continues where it stopped. That state is only valid for
another attempt at the *same* job; :func:`run_stage` stamps it with the job's
params, input files and code, discards it when the stamp differs (a changed
config or edited model code must train from scratch, not resume), and removes
it once the job has succeeded; a failed job that saved no state leaves no stamp.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]  # the checkout
SRC = ROOT / "src"


def _use_checkout_source() -> None:
    # First, even when it is already on the path: Snakemake's script preamble appends its own process's
    # sys.path, which holds SRC behind an editable install's src/ of another checkout.
    if SRC.is_dir():
        while str(SRC) in sys.path:
            sys.path.remove(str(SRC))
        sys.path.insert(0, str(SRC))


def _redirect_to_log(log: str | None) -> int | None:
    """Send fds 1 and 2 to ``log``; return a duplicate of the console's stderr (None without a log)."""
    if not log:
        return None
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # line-buffer so a killed job's log still shows how far it got
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    return console


def _echo_errors(log: str, console: int) -> None:
    """Repeat a failed stage's ``error:`` lines on the console, where Snakemake's user looks first."""
    lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.startswith("error: ")]
    if lines:
        os.write(console, "".join(f"[{Path(log).name}] {line}\n" for line in lines[-3:]).encode())


def config_file(section: Any, tmpdir: str) -> str:
    """Write ``section`` (a plain mapping) as YAML in ``tmpdir``; return the path."""
    import yaml

    from attnlab.config import plain

    path = os.path.join(tmpdir, "section.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(plain(section), fh, sort_keys=False)
    return path


def job_stamp(snakemake: Any) -> dict:
    """What makes a training job this job: its params (the code digest among them) and the size/mtime of every input."""
    from attnlab.config import plain

    inputs = {}
    for path in sorted(set(map(str, snakemake.input))):
        st = os.stat(path)
        inputs[path] = [st.st_size, st.st_mtime_ns]
    return {"rule": snakemake.rule, "wildcards": dict(snakemake.wildcards.items()),
            "params": plain(dict(snakemake.params.items())), "inputs": inputs}


def _prepare_resume(resume_dir: Path, stamp: dict) -> Path:
    import json
    import shutil

    stamp_file = resume_dir.with_name(resume_dir.name + ".stamp.json")
    old = None
    if stamp_file.is_file():
        try:
            old = json.loads(stamp_file.read_text())
        except ValueError:
            old = None
    if resume_dir.exists() and old != stamp:
        print(f"[resume] discarding {resume_dir}: written by a different job (params, inputs or code changed)",
              file=sys.stderr, flush=True)
        shutil.rmtree(resume_dir)
    elif resume_dir.exists():
        print(f"[resume] continuing the interrupted attempt in {resume_dir}", file=sys.stderr, flush=True)
    resume_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp_file.with_suffix(".part")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    os.replace(tmp, stamp_file)
    return stamp_file


def _finish_resume(resume_dir: Path, stamp_file: Path, succeeded: bool) -> None:
    """After the trainer: drop the resume state once it succeeded, and a stamp that stamps nothing.

    A job that failed before saving any state (bad data, a config error) must
    not leave a stamp behind; one that saved state keeps both, so a rerun (or
    a retry after Ctrl-C) continues from it.
    """
    import shutil

    if succeeded:
        shutil.rmtree(resume_dir, ignore_errors=True)  # done: nothing left to resume
        stamp_file.unlink(missing_ok=True)
    elif not resume_dir.is_dir() or not any(resume_dir.iterdir()):
        shutil.rmtree(resume_dir, ignore_errors=True)
        stamp_file.unlink(missing_ok=True)


def run_stage(snakemake: Any, module: str, build_argv: Callable[[str | None], list[str]],
              resume_dir: str | os.PathLike | None = None) -> None:
    """Import ``module`` and exit with ``module.main(build_argv(config_path))``.

    ``build_argv`` receives the path of the YAML with ``snakemake.params.section``
    (None when the rule has no section) and returns the stage's CLI arguments.
    ``resume_dir``: the trainer's resume-state folder (see the module docstring).
    """
    log = snakemake.log[0] if len(snakemake.log) else None
    console = _redirect_to_log(log)
    _use_checkout_source()
    import importlib

    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):  # a package whose CLI lives in __main__.py
        mod = importlib.import_module(module + ".__main__")
    main = mod.main
    section = getattr(snakemake.params, "section", None)
    stamp_file = _prepare_resume(Path(resume_dir), job_stamp(snakemake)) if resume_dir else None
    start = time.perf_counter()
    rc = 1
    try:
        with tempfile.TemporaryDirectory(prefix=f"attnlab-{snakemake.rule}-") as tmp:
            argv = build_argv(config_file(section, tmp) if section is not None else None)
            print(f"[{snakemake.rule}] python -m {module} {' '.join(argv)}", file=sys.stderr, flush=True)
            rc = main(argv)
    finally:
        if stamp_file is not None:
            _finish_resume(Path(resume_dir), stamp_file, succeeded=not rc)
    print(f"[{snakemake.rule}] finished rc={rc} in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if rc and console is not None:
        _echo_errors(log, console)
    sys.exit(int(rc or 0))
