"""Tar archives read as untrusted data: streamed, bounded, nothing extracted to disk.

A small tarball can hold anything: a 2 GiB member of zeros compresses to
2 MB, a sparse member declares 64 GiB in a few blocks, a pax header or a long
name can declare gigabytes too, and one archive can hold millions of entries.
:func:`iter_tar` therefore reads only the members its caller asks for, each
up to the size limit the caller gives for it, and refuses (one
:class:`~attnlab.data.DataError` line naming the member and the limit):

- a wanted member that is not a regular file (symbolic or hard link, device,
  FIFO, directory, sparse file), has an unsafe name (absolute, ``..``) or
  appears twice;
- any single read larger than ``max_read`` (a header declaring a huge name or
  pax record is refused before it is read);
- more than ``max_total`` decompressed bytes in all, or more than
  ``max_members`` entries;
- an archive that ends without tar's end-of-archive block (truncated), or is
  not readable (corrupt compression, bad headers).

gzip, bzip2 and xz are decompressed here as a stream (each read returns at
most what was asked for), so a bomb costs CPU time up to ``max_total``, never
memory.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import tarfile
import time
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from attnlab.data import DataError

# Compression by magic bytes, as tarfile's own "r:*" tells them apart.
_OPENERS = ((b"\x1f\x8b", gzip.GzipFile), (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))
# The longest header record (GNU long name, pax extended header) read; real ones are a few hundred bytes.
_MAX_HEADER = 1 << 20
_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
          tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO", tarfile.DIRTYPE: "a directory"}


class _Bounded:
    """The decompressed stream as tarfile sees it: forward reads and seeks, each one bounded."""

    def __init__(self, raw, path: Path, max_read: int, max_total: int) -> None:
        self.raw, self.path, self.max_read, self.max_total = raw, path, max_read, max_total

    def _check(self, end: int) -> None:
        if end > self.max_total:
            raise DataError(f"{self.path} holds more than {self.max_total / 2**20:.0f} MiB once decompressed, "
                            f"the limit for this data set's archive; it is not the data set (a compression "
                            f"bomb?)")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.max_read:
            raise DataError(f"{self.path}: a tar header declares a record of "
                            f"{'unbounded' if n is None or n < 0 else n} bytes, more than the "
                            f"{self.max_read / 2**20:.0f} MiB any member may have here; the archive is corrupt "
                            f"or crafted")
        self._check(self.raw.tell() + n)
        return self.raw.read(n)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            pos += self.raw.tell() if whence == os.SEEK_CUR else self.max_total + 1
        self._check(pos)
        return self.raw.seek(pos)

    def tell(self) -> int:
        return self.raw.tell()


def _open(fh, path: Path, max_read: int, max_total: int) -> _Bounded:
    head = fh.read(6)
    fh.seek(0)
    for magic, opener in _OPENERS:
        if head.startswith(magic):
            return _Bounded(opener(fileobj=fh) if opener is gzip.GzipFile else opener(fh), path, max_read, max_total)
    return _Bounded(fh, path, max_read, max_total)


def is_tar(path: str | os.PathLike) -> bool:
    """Whether ``path`` opens as a (possibly compressed) tar archive; reads its first header only, bounded."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            tarfile.open(fileobj=_open(fh, path, _MAX_HEADER, 16 << 20), mode="r:")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, DataError):
        return False
    return True


def iter_tar(path: str | os.PathLike, limit: Callable[[tuple[str, ...]], int | None], *, max_total: int,
             max_members: int, hint: str, progress: Callable[[int, int], None] | None = None
             ) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """(name parts, bytes) of each member of ``path`` for which ``limit(parts)`` gives a byte limit.

    ``parts`` is the member's normalized POSIX path split into its parts.
    Members ``limit`` maps to None are skipped unread. ``hint`` ends the
    truncated/corrupt message (what to do instead). ``progress(bytes of the
    file read, entries seen)`` is called about every 5 s.
    """
    path = Path(path)
    seen: set[tuple[str, ...]] = set()
    n_members = 0
    last = time.perf_counter()
    try:
        with open(path, "rb") as fh:
            stream = _open(fh, path, _MAX_HEADER, max_total)
            tf = tarfile.open(fileobj=stream, mode="r:")
            while (member := tf.next()) is not None:
                tf.members.clear()  # tarfile keeps every header it read; we never look back
                n_members += 1
                if n_members > max_members:
                    raise DataError(f"{path} holds more than {max_members} entries, the limit for this data set; "
                                    f"it is not the data set")
                parts = PurePosixPath(member.name).parts
                want = limit(parts) if parts else None
                if want is not None:
                    stream.max_read = max(want, _MAX_HEADER)
                    blob = _read_member(tf, member, parts, want, seen, path)
                    stream.max_read = _MAX_HEADER
                    yield parts, blob
                if progress is not None and time.perf_counter() - last >= 5.0:
                    last = time.perf_counter()
                    progress(fh.tell(), n_members)
            _check_end(stream, tf.offset, path)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        raise DataError(f"cannot read the tarball {path}: {err}. It may be truncated or corrupt; {hint}") from err


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...], limit: int,
                 seen: set, path: Path) -> bytes:
    name = "/".join(parts)
    if member.name.startswith("/") or ".." in parts:
        raise DataError(f"{path}: member {member.name!r} has an unsafe name (absolute or with ..); "
                        f"the archive is not a plain copy of the data set")
    if not member.isreg() or member.issparse():
        kind = "a sparse file" if member.isreg() else _KINDS.get(member.type, f"of tar type {member.type!r}")
        raise DataError(f"{path}: member {name} is {kind}, not a regular file; the data set's files must be "
                        f"stored as plain files")
    if member.size < 0:
        raise DataError(f"{path}: member {name} declares a negative size; the archive is corrupt or crafted")
    if member.size > limit:
        raise DataError(f"{path}: member {name} is {member.size} bytes, more than the {_size(limit)} limit for "
                        f"such a file; it is not a file of the data set")
    if parts in seen:
        raise DataError(f"{path}: member {name} appears twice; which one is meant is ambiguous")
    seen.add(parts)
    blob = tf.extractfile(member).read()
    if len(blob) != member.size:
        raise DataError(f"{path}: member {name} is cut short ({len(blob)} of {member.size} bytes)")
    return blob


def _check_end(stream: _Bounded, offset: int, path: Path) -> None:
    """tarfile stops quietly at a cut or damaged header; a complete archive ends with a zero block there."""
    stream.seek(offset)
    block = stream.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"no end-of-archive block at offset {offset} (cut short, or a damaged header)")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def read_file(path: Path, limit: int, name: str) -> bytes:
    """A regular file of a folder source (symbolic links followed), at most ``limit`` bytes, or DataError."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path} is not a regular file (a {_mode_kind(st.st_mode)}); the data set's files "
                            f"must be plain files")
        if st.st_size > limit:
            raise DataError(f"{path} is {st.st_size} bytes, more than the {_size(limit)} limit for {name}; it is "
                            f"not a file of the data set")
        with open(path, "rb") as fh:
            blob = fh.read(limit + 1)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    if len(blob) > limit:
        raise DataError(f"{path} grew past the {_size(limit)} limit for {name} while it was read")
    return blob


def _mode_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"
