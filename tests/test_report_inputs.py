"""A results bundle is data: the report stage runs nothing it names, and a malformed INPUTS is one error line.

* The commit on the title page comes from INPUTS' ``provenance`` record, which the
  pipeline writes with git run on its own checkout, defensively (fsmonitor, hooks and
  filter drivers switched off). The report stage never runs git: a bundle whose old
  ``repo`` key points at a repository with ``core.fsmonitor = <command>`` runs nothing.
* Crafted INPUTS files (wrong shapes, path-traversing run names, bad provenance,
  undecodable or absurdly nested JSON) end ``python -m attnlab.report`` with one
  ``error:`` line, exit 2, and no PDF.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("typst")

from attnlab.report.cli import main as report_main  # noqa: E402
from attnlab.report.inputs import make_inputs  # noqa: E402
from attnlab.report.provenance import checkout_provenance  # noqa: E402

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          check=True, capture_output=True, text=True).stdout


def one_commit_repo(path: Path) -> Path:
    """A repository with one commit of a.txt ("hello")."""
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.txt").write_text("hello\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-qm", "first")
    return path


def hostile_repo(path: Path, marker_dir: Path) -> Path:
    """A repository whose config runs a program at every chance git gives it: fsmonitor, a filter driver
    (on every tracked file), hooks. Each writes its own marker file into ``marker_dir``."""
    one_commit_repo(path)
    (path / ".gitattributes").write_text("* filter=evil\n")
    git(path, "config", "core.fsmonitor", f"touch {marker_dir / 'fsmonitor'}; false")
    git(path, "config", "filter.evil.clean", f"touch {marker_dir / 'clean'}; cat")
    git(path, "config", "filter.evil.process", f"touch {marker_dir / 'process'}")
    hooks = path / ".git" / "hooks"
    for hook in ("post-index-change", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker_dir / hook}\n")
        (hooks / hook).chmod(0o755)
    return path


def head_from_files(repo: Path) -> str:
    """HEAD's commit read from the files, without git: the independent reference."""
    ref = (repo / ".git" / "HEAD").read_text().strip().removeprefix("ref: ")
    return (repo / ".git" / ref).read_text().strip()


@needs_git
def test_provenance_of_a_checkout_runs_nothing_it_configures(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = hostile_repo(tmp_path / "repo", markers)
    (repo / "a.txt").write_text("jello\n")  # same size, new time: status must read it, through the clean filter
    record = checkout_provenance(repo)
    assert record == {"commit": head_from_files(repo), "dirty": True}
    assert sorted(p.name for p in markers.iterdir()) == []
    # and the same checks are what plain git would have run: the markers do appear without the safe options
    subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True)
    ran = {p.name for p in markers.iterdir()}
    assert "fsmonitor" in ran and ran & {"clean", "process"}, ran


@needs_git
def test_a_clean_checkout_is_not_dirty_and_a_folder_without_git_is_unknown(tmp_path):
    repo = one_commit_repo(tmp_path / "repo")
    (repo / "untracked.txt").write_text("not part of the commit\n")
    assert checkout_provenance(repo) == {"commit": head_from_files(repo), "dirty": False}
    assert checkout_provenance(tmp_path / "elsewhere") == {"commit": "unknown", "dirty": False}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A complete results folder (as tests/test_report.py makes it) and its INPUTS."""
    from test_report import make_results

    root = tmp_path_factory.mktemp("bundle")
    return root, make_results(root)


@needs_git
def test_the_report_never_runs_git_on_a_path_from_its_inputs(bundle, tmp_path, capsys):
    root, inputs = bundle
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = hostile_repo(tmp_path / "repo", markers)
    (repo / "a.txt").write_text("changed\n")
    crafted = {**inputs, "repo": str(repo), "provenance": {"commit": "ab" * 20, "dirty": False}}
    (tmp_path / "INPUTS.json").write_text(json.dumps(crafted))
    rc = report_main(["--inputs", str(tmp_path / "INPUTS.json"), "--out", str(tmp_path / "w.pdf"),
                      "--data-json", str(tmp_path / "data.json")])
    assert rc == 0, capsys.readouterr().err
    assert list(markers.iterdir()) == []
    facts = json.loads((tmp_path / "data.json").read_text())
    assert facts["commit"] == "ab" * 20 and facts["dirty"] is False  # what the bundle recorded, not asked of git


def _crafted(inputs: dict, tmp_path: Path) -> dict:
    """name -> (INPUTS.json bytes, words the error line must contain)."""
    vit_main = inputs["results"]["vit"]["main"]

    def with_(**changes):
        return json.dumps({**inputs, **changes}).encode()

    def results(**changes):
        return with_(results={**inputs["results"], **changes})

    evil = str(tmp_path / "evil")
    return {
        "a list": (b"[1, 2]", "must hold a JSON object"),
        "no results": (json.dumps({"config": {}}).encode(), "has no mapping 'results'"),
        "unknown top key": (with_(run_this="rm -rf /"), "unknown key(s) run_this"),
        "no vit run": (results(vit={}), "lists no vit run"),
        "traversing run name": (results(vit={"../../evil": vit_main}), "has the run name '../../evil'"),
        "missing result key": (results(vit={"main": {k: v for k, v in vit_main.items() if k != "eval"}}),
                               "results.vit.main lacks eval (made by rule evaluate_vit)"),
        "unknown result key": (results(vit={"main": {**vit_main, "payload": evil}}), "unknown key(s) payload"),
        "path not a string": (results(data={**inputs["results"]["data"], "lengths": 5}),
                              "results.data.lengths must be a file path, got 5"),
        "NUL in a path": (results(data={**inputs["results"]["data"], "lengths": "a\0b"}), "must be a file path"),
        "benchmarks not per run": (results(benchmarks={"train_vit": "x.tsv"}), "results.benchmarks must map rules"),
        "shell in the commit": (with_(provenance={"commit": "$(touch " + evil + ")", "dirty": False}),
                                '"provenance.commit" must be a full hexadecimal commit hash'),
        "dirty not a boolean": (with_(provenance={"commit": "unknown", "dirty": "yes"}), '"provenance.dirty"'),
        "config not a mapping": (with_(config="vit: {}"), '"config" must be the pipeline config'),
        "runs not a mapping": (with_(config={**inputs["config"], "vit": {"runs": [1, 2]}}),
                               "config.vit.runs must map run names"),
        "title not a string": (with_(config={**inputs["config"], "report": {"title": 5}}),
                               "config.report.title must be a string"),
        "writeup not a path": (with_(writeup=7), '"writeup" must be the path of a .typ file'),
        "not JSON": (b"{'config': None}", "is not valid UTF-8 JSON"),
        "not UTF-8": ('{"config": "caf\u00e9"}'.encode("latin-1"), "is not valid UTF-8 JSON"),
        "nested too deep": (b"[" * 100_000 + b"]" * 100_000, "is not valid UTF-8 JSON"),
    }


def test_crafted_inputs_are_one_error_line_and_write_nothing(bundle, tmp_path, capsys):
    _, inputs = bundle
    failures = []
    for name, (blob, says) in _crafted(inputs, tmp_path).items():
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        path.write_bytes(blob)
        out = tmp_path / f"{name.replace(' ', '-')}.pdf"
        rc = report_main(["--inputs", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        if not (rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
                and not out.exists()):
            failures.append(f"{name}: rc={rc} {err!r}")
    assert failures == []
    assert not (tmp_path / "evil").exists()


def test_cli_misuse_is_one_error_line(bundle, tmp_path, capsys):
    _, inputs = bundle
    rc = report_main(["--inputs", str(tmp_path), "--out", str(tmp_path / "w.pdf")])  # a folder, not a file
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: inputs file") and err.count("\n") == 1 and "is not a file" in err
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error
        report_main(["--out", str(tmp_path / "w.pdf")])
    assert exit_.value.code == 2


def test_make_inputs_records_the_provenance_it_is_given():
    inputs = make_inputs({"vit": {"runs": {"main": {}}}}, provenance={"commit": "unknown", "dirty": False})
    assert inputs["provenance"] == {"commit": "unknown", "dirty": False} and "repo" not in inputs
