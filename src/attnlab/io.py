"""File helpers shared by every stage: atomic writes, digests, JSON.

Every stage writes its outputs through ``atomic_path`` so that a job killed
half-way never leaves a file at an output path that a rerun would trust. A
write that fails for lack of space (a full disk, a quota, a file-size limit)
raises :class:`WriteError` naming the output, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from attnlab.errors import AttnlabError

# errno values that mean "no room for this file": the user frees space, nothing else is wrong.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class WriteError(AttnlabError, OSError):
    """An output could not be written for lack of space; nothing was left at its path."""


def _no_space(path: Path, exc: OSError) -> WriteError:
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**20:,.0f} MiB free there"
    except OSError:
        free = ""
    err = WriteError(f"could not write {path}: {exc.strerror or exc}{free}; free some space (or write "
                     f"elsewhere) and rerun")
    err.errno = exc.errno
    return err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    A process killed (SIGKILL, OOM) inside this block cannot remove its
    temporary file; the next write to the same output removes such leftovers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file 0600; give the result the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in NO_SPACE and not isinstance(exc, WriteError):
            raise _no_space(path, exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_parts(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left beside ``path`` (``.<name>.XXXXXXXX.part``); return them.

    The pattern is exact (mkstemp's 8 random characters), so another output's
    temporary files (``.<name>.suffix.XXXXXXXX.part``) are never touched.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.part")
    removed = []
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        if pattern.fullmatch(old.name):
            old.unlink(missing_ok=True)
            removed.append(old)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through ``atomic_path``; a full disk is a WriteError, not torch's C++ message.

    torch's writer reports a failed write as a RuntimeError ("unexpected pos",
    "basic_ios::clear"); writing through a Python file keeps the OSError that
    caused it as the RuntimeError's context, so the reason can be named.
    """
    import torch

    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                torch.save(obj, fh)
        except RuntimeError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, OSError):  # atomic_path names the output and removes the partial file
                raise OSError(cause.errno, cause.strerror, str(tmp)) from exc
            raise


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
