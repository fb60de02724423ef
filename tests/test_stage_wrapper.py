"""workflow/scripts/_stage.py, the rule scripts' wrapper: the checkout's code runs, and failures reach the console."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import _stage  # noqa: E402


def test_the_checkouts_source_goes_first_even_when_snakemake_appended_it(monkeypatch, tmp_path):
    """Snakemake extends a job's sys.path with the planning process's (the Snakefile put src/ there),
    behind site-packages: an editable install of another checkout would then shadow this one."""
    other = tmp_path / "other-checkout" / "src"
    (other / "attnlab").mkdir(parents=True)
    (other / "attnlab" / "__init__.py").write_text("WHICH = 'the other checkout'\n")
    monkeypatch.setattr(sys, "path", [str(other), "/usr/lib/python3", str(_stage.SRC)])
    _stage._use_checkout_source()
    assert sys.path == [str(_stage.SRC), str(other), "/usr/lib/python3"]


def _console(tmp_path: Path):
    path = tmp_path / "console"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    return path, fd


def test_error_lines_and_a_crashs_last_line_reach_the_console(tmp_path):
    log = tmp_path / "build_vocab.log"
    log.write_text("[build_vocab] python -m attnlab.data build-vocab ...\n"
                   "error: sha256 mismatch for input.txt: expected 00, got 11\n[build_vocab] finished rc=2 in 0.1s\n")
    path, fd = _console(tmp_path)
    _stage._echo_errors(str(log), fd)
    os.close(fd)
    assert path.read_text() == "[build_vocab.log] error: sha256 mismatch for input.txt: expected 00, got 11\n"

    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                   "ZeroDivisionError: division by zero\n[build_vocab] finished rc=1 in 0.1s\n")
    path, fd = _console(tmp_path)
    _stage._echo_errors(str(log), fd)
    os.close(fd)
    assert path.read_text() == (f"[build_vocab.log] error: the stage failed: ZeroDivisionError: division by zero "
                                f"(the traceback is in {log})\n")
