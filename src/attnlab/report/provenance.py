"""The commit a pipeline ran from, recorded when the report's INPUTS are written, never read back by git.

``checkout_provenance(root)`` runs on the checkout whose Snakefile is running
(workflow/scripts/report.py passes its own folder) and its result travels in
INPUTS.json as ``"provenance": {"commit", "dirty"}``. The report stage only
checks the shape of that record: it never runs git, least of all on a path
an inputs file names, since a repository's ``.git/config`` can make git run
programs (``core.fsmonitor``, hooks, filter drivers).

Even on our own checkout git runs defensively: every configuration key that
can start a program during ``rev-parse`` or ``status`` is switched off on the
command line (``SAFE_CONFIG``, plus the clean/smudge/process commands of each
filter driver the repository configures), ``--no-optional-locks`` keeps
status from writing the index (which would fire the post-index-change hook),
submodules are not entered, and the caller's ``GIT_*`` variables (``GIT_DIR``,
``GIT_CONFIG_PARAMETERS``, ...) are dropped; the system and user config files
stay (they are the machine owner's, like the Snakefile, and may hold
``safe.directory``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

UNKNOWN = {"commit": "unknown", "dirty": False}
COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # sha1 or sha256 object names

# Keys whose value git may run as a program during rev-parse/status, each set to "off".
SAFE_CONFIG = (
    "core.fsmonitor=false",          # status asks this command which files changed
    "core.hooksPath=/dev/null",      # no hook at all (post-index-change, reference-transaction, ...)
    "core.untrackedCache=false",
    "core.pager=cat",
    "core.askPass=",
    "core.sshCommand=",
    "credential.helper=",
    "diff.external=",
    "protocol.allow=never",          # no transport, so no remote helper either
    "submodule.recurse=false",
)
_TIMEOUT_S = 20


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat",
               LC_ALL="C")
    return env


def _git(root: Path, *args: str, extra: tuple[str, ...] = ()) -> str:
    cmd = ["git", "--no-pager", "--no-optional-locks"]
    for item in SAFE_CONFIG + extra:
        cmd += ["-c", item]
    out = subprocess.run([*cmd, "-C", str(root), *args], capture_output=True, text=True, timeout=_TIMEOUT_S,
                         check=True, env=_env(), stdin=subprocess.DEVNULL)
    return out.stdout


def _filter_overrides(root: Path) -> tuple[str, ...]:
    """``filter.<driver>.{clean,smudge,process}=`` for every driver the config names (an empty command is none).

    Listing config keys reads files only; status would run a clean filter on
    any file whose timestamps changed.
    """
    try:
        listing = _git(root, "config", "--name-only", "--get-regexp", r"^filter\.")
    except subprocess.CalledProcessError as exc:
        if exc.returncode == 1:  # no such key: no filter driver
            return ()
        raise
    drivers = {name.strip().rsplit(".", 1)[0] for name in listing.splitlines() if name.count(".") >= 2}
    return tuple(f"{driver}.{cmd}=" for driver in sorted(drivers) for cmd in ("clean", "smudge", "process"))


def checkout_provenance(root: str | Path) -> dict:
    """{"commit": HEAD's full hash or "unknown", "dirty": tracked files differ from HEAD} of ``root``."""
    root = Path(root)
    if not (root / ".git").exists():
        return dict(UNKNOWN)
    try:
        head = _git(root, "rev-parse", "--verify", "-q", "HEAD").strip()
        status = _git(root, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all",
                      extra=_filter_overrides(root))
    except (OSError, subprocess.SubprocessError):
        return dict(UNKNOWN)
    return {"commit": head if COMMIT.fullmatch(head) else "unknown", "dirty": bool(status.strip())}


def provenance_of(inputs: Mapping[str, Any]) -> dict:
    """INPUTS' ``provenance`` record, checked for shape (absent: commit "unknown"); ValueError if malformed."""
    record = inputs.get("provenance")
    if record is None:
        return dict(UNKNOWN)
    if not isinstance(record, Mapping) or set(record) != {"commit", "dirty"}:
        raise ValueError('"provenance" must be {"commit": ..., "dirty": true/false}')
    commit, dirty = record["commit"], record["dirty"]
    if not isinstance(commit, str) or not (commit == "unknown" or COMMIT.fullmatch(commit)):
        raise ValueError('"provenance.commit" must be a full hexadecimal commit hash or "unknown"')
    if not isinstance(dirty, bool):
        raise ValueError('"provenance.dirty" must be true or false')
    return {"commit": commit, "dirty": dirty}
