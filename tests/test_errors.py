"""One base class for user-facing errors, one CLI wrapper, and what every stage CLI prints for a user's mistake.

A mistake a user can make (a config with a YAML tag, a missing input file, a
full disk) must end a stage's command line with exactly one line
``error: <message>`` on stderr and exit status 2; a bug keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.errors import AttnlabError, cli_main, use_writable_caches

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module, name, old_base", [
    ("attnlab.config", "ConfigError", ValueError),
    ("attnlab.checkpoint", "CheckpointError", ValueError),
    ("attnlab.data", "DataError", RuntimeError),
    ("attnlab.training", "DivergenceError", RuntimeError),
    ("attnlab.report.validate", "ReportInputError", ValueError),
    ("attnlab.report.build", "ReportBuildError", RuntimeError),
    ("attnlab.report.code", "CodeListingError", LookupError),
    ("attnlab.checks", "ChecksFailed", RuntimeError),
    ("attnlab.io", "WriteError", OSError),
])
def test_every_user_facing_error_is_an_attnlab_error_and_keeps_its_old_base(module, name, old_base):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AttnlabError) and issubclass(cls, old_base)
    assert cls.__module__ == module  # still importable from where it always was


def _run(main, capsys, argv=()):
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_cli_main_prints_one_line_and_exits_2(capsys):
    @cli_main
    def multi(argv):
        raise AttnlabError("first part\n  second part\n")

    rc, err = _run(multi, capsys)
    assert rc == 2 and err == "error: first part; second part\n"

    @cli_main
    def missing(argv):
        open(Path("/nonexistent-attnlab") / "input.txt")

    rc, err = _run(missing, capsys)
    assert rc == 2 and err == "error: No such file or directory: /nonexistent-attnlab/input.txt\n"

    @cli_main
    def full(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out.pt")

    rc, err = _run(full, capsys)
    assert rc == 2 and err == "error: No space left on device: /data/out.pt; free some space and rerun\n"

    @cli_main
    def fine(argv):
        return None

    assert fine([]) == 0


def test_cli_main_leaves_bugs_and_argparse_alone():
    @cli_main
    def bug(argv):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        bug([])

    @cli_main
    def io_bug(argv):
        raise OSError(errno.EIO, "Input/output error")  # not something the user's files explain

    with pytest.raises(OSError):
        io_bug([])

    import argparse

    @cli_main
    def usage(argv):
        argparse.ArgumentParser(prog="x").parse_args(argv)

    with pytest.raises(SystemExit) as exit_:
        usage(["--nope"])
    assert exit_.value.code == 2


# Every stage CLI but the two trainers (attnlab.vit.train, attnlab.gpt.train: rewritten on another branch),
# each with a user's mistake that must be one line.
def _tagged(tmp_path: Path) -> Path:
    path = tmp_path / "tagged.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['touch " + str(tmp_path / "ran") + "']\n")
    return path


STAGES = {
    "theory": ("attnlab.theory", lambda t: ["--config", str(_tagged(t)), "--out-dir", str(t / "o")],
               "the YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    "build-vocab": ("attnlab.data.__main__",
                    lambda t: ["build-vocab", "--text", str(ROOT / "README.md"), "--sha256", "null",
                               "--config", str(_tagged(t)), "--out-dir", str(t / "o")],
                    "the YAML tag"),
    "generate": ("attnlab.gpt.generate",
                 lambda t: ["--checkpoint", str(t / "c.pt"), "--vocab", str(t / "v.json"), "--config",
                            str(_tagged(t)), "--out-txt", str(t / "g.txt"), "--out-json", str(t / "g.json")],
                 "the YAML tag"),
    "ngram": ("attnlab.gpt.ngram",
              lambda t: ["--data", str(t / "d.pt"), "--vocab", str(t / "v.json"), "--vocab-report", str(t / "r"),
                         "--source", str(t / "s"), "--val-text", str(t / "v"), "--config", str(_tagged(t)),
                         "--out", str(t / "n.json")],
              "the YAML tag"),
    "vit.evaluate": ("attnlab.vit.evaluate",
                     lambda t: ["--checkpoint", str(t / "missing.pt"), "--data", str(t), "--out", str(t / "e.json")],
                     "missing.pt does not exist"),
    "vit.heatmaps": ("attnlab.vit.heatmaps",
                     lambda t: ["--checkpoint", str(t / "missing.pt"), "--data", str(t), "--out-dir", str(t / "h")],
                     "missing.pt does not exist"),
    "gpt.evaluate": ("attnlab.gpt.evaluate",
                     lambda t: ["--checkpoint", str(t / "c.pt"), "--vocab", str(t / "v.json"), "--text",
                                str(t / "none.txt"), "--out", str(t / "e.json")],
                     "none.txt does not exist"),
    "report": ("attnlab.report.cli",
               lambda t: ["--inputs", str(t / "INPUTS.json"), "--out", str(t / "w.pdf")], "INPUTS.json is missing"),
    "checks": ("attnlab.checks", lambda t: ["--out-dir", str(_blocked(t))], "Not a directory"),
    "vit.train": ("attnlab.vit.train",
                  lambda t: ["--data", str(t), "--config", str(_tagged(t)), "--out-dir", str(t / "o")],
                  "the YAML tag"),
    "gpt.train": ("attnlab.gpt.train",
                  lambda t: ["--data", str(t / "d.pt"), "--vocab", str(t / "v.json"), "--config", str(_tagged(t)),
                             "--out-dir", str(t / "o")],
                  "the YAML tag"),
    "explore.vit": ("attnlab.explore.vit",
                    lambda t: ["--checkpoint", str(t / "missing.pt"), "--data", str(t), "--out", str(t / "a.html")],
                    "missing.pt does not exist"),
    "explore.gpt": ("attnlab.explore.gpt",
                    lambda t: ["--checkpoint", str(t / "missing.pt"), "--vocab", str(t / "v.json"), "--dialogues",
                               str(t / "d.pt"), "--generation", str(t / "g.json"), "--out", str(t / "a.html")],
                    "missing.pt does not exist"),
    "explore.views": ("attnlab.explore.views", lambda t: ["--page", str(t / "none.html")], "none.html does not exist"),
    "bench": ("attnlab.bench.__main__", lambda t: ["vit", "--device", "cuda:99"], "device 'cuda:99' was asked for"),
}


def _blocked(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("a file where a folder should be")
    return tmp_path / "file" / "out"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_cli_reports_a_users_mistake_in_one_line(stage, tmp_path, capsys):
    import importlib

    module, argv, says = STAGES[stage]
    main = importlib.import_module(module).main
    assert hasattr(main, "__wrapped__"), f"{module}.main is not wrapped by attnlab.errors.cli_main"
    rc, err = _run(main, capsys, argv(tmp_path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert lines[-1].startswith("error: ") and says in lines[-1], err
    assert "Traceback" not in err
    assert not (tmp_path / "ran").exists()  # the tag's command never ran


# ------------------------------------------------------------- caches when HOME cannot be written --
def test_caches_move_to_a_private_temporary_folder_when_home_is_unusable(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = {"HOME": "/dev/null"}  # not a folder: nothing can be created below it, not even by root
    use_writable_caches(env)
    base = tmp_path / f"attnlab-{os.getuid()}"
    assert env["MPLCONFIGDIR"] == str(base / "matplotlib") and env["TRITON_CACHE_DIR"] == str(base / "triton")
    assert stat.S_IMODE(base.stat().st_mode) == 0o700

    # a writable HOME, or a variable the user set, is left alone
    env = {"HOME": str(tmp_path / "home"), "TRITON_CACHE_DIR": "/mine"}
    use_writable_caches(env)
    assert env == {"HOME": str(tmp_path / "home"), "TRITON_CACHE_DIR": "/mine"}


def test_a_planted_cache_folder_is_not_used(tmp_path, monkeypatch):
    """Another user could create the predictable folder first (Triton loads compiled code from its cache)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = tmp_path / f"attnlab-{os.getuid()}"
    base.mkdir()
    base.chmod(0o777)  # writable by everyone: not ours alone
    env = {"HOME": "/dev/null"}
    use_writable_caches(env)
    assert "MPLCONFIGDIR" not in env and "TRITON_CACHE_DIR" not in env

    base.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    base.symlink_to(elsewhere)  # a link: refused even though it leads to a private folder
    use_writable_caches(env)
    assert "MPLCONFIGDIR" not in env


@pytest.mark.slow
def test_a_stage_runs_quietly_with_an_unusable_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME="/dev/null", TMPDIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "attnlab.checks", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib" not in proc.stderr.lower(), proc.stderr  # no "created a temporary cache directory" warning
    assert (tmp_path / "out" / "attention_mask.png").is_file()
