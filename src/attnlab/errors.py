"""One base class for the failures a user causes, and the one way a stage's command line reports them.

Every user-facing error of the package (ConfigError, CheckpointError,
DataError, DivergenceError, ReportInputError, ReportBuildError,
CodeListingError, ChecksFailed, WriteError) derives from :class:`AttnlabError`
and keeps its own module and name. Their messages say what was wrong and what
to do. :func:`cli_main` wraps a stage's ``main(argv)``: such an error, or an
operating-system mistake a user makes (a missing file, a folder without write
permission, a full disk), becomes exactly one line ``error: <message>`` on
stderr and exit status 2; anything else is a bug and keeps its traceback.

:func:`cli_main` also points matplotlib's and Triton's caches at a per-user
folder of the temporary directory when their default place under HOME cannot
be written (a read-only or missing HOME), so such a machine neither fails nor
warns, and keeps its font cache between runs.

This module imports nothing from the package, so every other module may import it.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

# Exit status of a stage that stopped on a user-caused failure (argparse uses 2 for misuse too).
EXIT_USER_ERROR = 2

# OSError numbers that describe the user's files or machine, not a bug: a path that is not there
# or not what it should be, no permission, no space.
USER_OS_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
    errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.ELOOP,
})
# ... and the same by class, for the ones raised with a message only (no errno)
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


# Exit status of a stage stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


class AttnlabError(Exception):
    """A failure the user caused (a config, a file, the machine); the message is for them, on one line."""

    exit_status = EXIT_USER_ERROR


class Interrupted(AttnlabError):
    """Ctrl-C stopped a stage; the message says what the stage left behind and how to go on."""

    exit_status = EXIT_INTERRUPTED


def one_line(message: object) -> str:
    """``message`` with its lines joined by "; " (a multi-line message must not spill over the console)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return "; ".join(lines) or "(no message)"


def describe_os_error(exc: OSError) -> str:
    """An OSError as "<what>: <file>" (Python's str() puts the errno in front, which users need not read)."""
    what = exc.strerror or str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(os.fsdecode(n) if isinstance(n, bytes) else str(n) for n in names)
    advice = {errno.ENOSPC: "free some space and rerun", errno.EDQUOT: "free some space and rerun",
              errno.EACCES: "check the permissions", errno.EPERM: "check the permissions",
              errno.EROFS: "write somewhere writable"}.get(exc.errno or 0, "")
    return ": ".join(p for p in (what, where) if p) + (f"; {advice}" if advice else "")


def is_user_os_error(exc: BaseException) -> bool:
    return isinstance(exc, USER_OS_ERRORS) or (isinstance(exc, OSError) and exc.errno in USER_OS_ERRNOS)


def _creatable(path: Path) -> bool:
    """Whether ``path`` is a writable folder or could be made one (checked without creating anything)."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _private_dir(path: Path) -> bool:
    """Make ``path`` a folder only this user can enter; False if it exists otherwise (someone else's, a link).

    The fallbacks live in the shared temporary directory, where another user
    could plant a folder first: Triton loads compiled kernels from its cache.
    """
    import stat

    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def use_writable_caches(env: dict | None = None) -> None:
    """Set MPLCONFIGDIR / TRITON_CACHE_DIR to <tmp>/attnlab-<uid>/... where their default under HOME is unusable."""
    env = os.environ if env is None else env
    if not hasattr(os, "getuid"):
        return
    try:
        home = Path(env.get("HOME") or Path.home())
    except RuntimeError:  # no HOME and no passwd entry
        home = Path("/nonexistent")
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    for var, default, name in (("MPLCONFIGDIR", config / "matplotlib", "matplotlib"),
                               ("TRITON_CACHE_DIR", home / ".triton" / "cache", "triton")):
        if env.get(var) or _creatable(default):
            continue
        base = Path(tempfile.gettempdir()) / f"attnlab-{os.getuid()}"
        if _private_dir(base) and _private_dir(base / name):
            env[var] = str(base / name)


def cli_main(main: Callable[[Optional[Sequence[str]]], Optional[int]]) -> Callable[[Optional[Sequence[str]]], int]:
    """Decorate a stage's ``main(argv) -> int``: user-caused failures become one ``error:`` line and exit 2.

    ``AttnlabError`` prints its message; an ``OSError`` about the user's files
    (missing, permission, disk full) prints what and which file. Messages of
    several lines are joined into one. Ctrl-C is one line and exit 130 (a stage
    that knows what it leaves behind raises :class:`Interrupted` saying so).
    Other exceptions propagate (bugs keep their traceback); argparse's own
    exits pass through unchanged.
    """

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None) -> int:
        use_writable_caches()
        status = EXIT_USER_ERROR
        try:
            return int(main(argv) or 0)
        except AttnlabError as exc:
            message, status = one_line(exc), exc.exit_status
        except KeyboardInterrupt:
            message, status = "interrupted", EXIT_INTERRUPTED
        except OSError as exc:
            if not is_user_os_error(exc):
                raise
            message = one_line(describe_os_error(exc))
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return status

    return wrapper
