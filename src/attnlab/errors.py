"""One base class for the failures a user causes, and the one way a stage's command line reports them.

Every user-facing error of the package (ConfigError, CheckpointError,
DataError, DivergenceError, ReportInputError, ReportBuildError,
CodeListingError, ChecksFailed, WriteError) derives from :class:`AttnlabError`
and keeps its own module and name. Their messages say what was wrong and what
to do. :func:`cli_main` wraps a stage's ``main(argv)``: such an error, or an
operating-system mistake a user makes (a missing file, a folder without write
permission, a full disk), becomes exactly one line ``error: <message>`` on
stderr and exit status 2; anything else is a bug and keeps its traceback.

This module imports nothing from the package, so every other module may import it.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
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


class AttnlabError(Exception):
    """A failure the user caused (a config, a file, the machine); the message is for them, on one line."""


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


def cli_main(main: Callable[[Optional[Sequence[str]]], Optional[int]]) -> Callable[[Optional[Sequence[str]]], int]:
    """Decorate a stage's ``main(argv) -> int``: user-caused failures become one ``error:`` line and exit 2.

    ``AttnlabError`` prints its message; an ``OSError`` about the user's files
    (missing, permission, disk full) prints what and which file. Messages of
    several lines are joined into one. Other exceptions propagate (bugs keep
    their traceback); argparse's own exits pass through unchanged.
    """

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None) -> int:
        try:
            return int(main(argv) or 0)
        except AttnlabError as exc:
            message = one_line(exc)
        except OSError as exc:
            if not is_user_os_error(exc):
                raise
            message = one_line(describe_os_error(exc))
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR

    return wrapper
