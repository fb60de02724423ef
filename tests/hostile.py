"""Hostile inputs for the data stages, crafted by the tests themselves: archive bombs, huge image headers, bad servers.

Import from any test (pytest puts tests/ on sys.path): ``from hostile import ...``.
Everything here is made in the calling test's tmp_path or in memory, and every
server binds 127.0.0.1 only, sends a bounded number of bytes for a bounded
time and is stopped by the test.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import tarfile
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator


def add_member(tf: tarfile.TarFile, name: str, blob: bytes = b"", kind: bytes = tarfile.REGTYPE,
               linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, linkname, 1577836800
    info.size = len(blob) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(blob) if kind == tarfile.REGTYPE else None)


def zero_member(tf: tarfile.TarFile, name: str, size: int) -> None:
    """A member of ``size`` zero bytes, streamed into the archive (never held in memory)."""

    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, 1577836800
    tf.addfile(info, io.BufferedReader(Zeros(), 1 << 20))


def sparse_member_tar(path: Path, name: str, declared: int, prefix: list[tuple[str, bytes]] = ()) -> None:
    """An uncompressed tar whose member ``name`` is an old-GNU sparse file declaring ``declared`` bytes.

    The header holds one sparse chunk of 512 bytes at offset 0 and the real size
    ``declared``; the archive itself stays a few KiB. ``prefix`` members come first.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for n, b in prefix:
            add_member(tf, n, b)
    body = buf.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.type = 512, 1577836800, tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    # old GNU sparse header: 4 (offset, numbytes) pairs at 386, isextended at 482, realsize at 483
    header[386:398] = b"%011o\0" % 0
    header[398:410] = b"%011o\0" % 512
    header[482] = 0
    header[483:495] = b"%011o\0" % declared if declared < 8 ** 11 else b"\x80" + declared.to_bytes(11, "big")
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    path.write_bytes(body + bytes(header) + b"x" * 512 + b"\0" * 1024)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGB pixels, with one tiny IDAT (never enough pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def jpeg_header(width: int, height: int, then: tuple[int, int] | None = None) -> bytes:
    """A real 32x32 baseline JPEG with its frame header (SOF0) rewritten to declare width x height.

    ``then``: a second frame header follows the first, declaring (width, height), so that a
    reader trusting one of the two and a decoder trusting the other disagree.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="JPEG")
    blob = bytearray(buf.getvalue())
    sof = blob.index(b"\xff\xc0")
    end = sof + 2 + struct.unpack(">H", blob[sof + 2:sof + 4])[0]
    frame = bytearray(blob[sof:end])
    frame[5:9] = struct.pack(">HH", height, width)  # SOF0: length(2), precision(1), height, width
    if then is not None:
        second = bytearray(frame)
        second[5:9] = struct.pack(">HH", then[1], then[0])
        frame += second
    return bytes(blob[:sof] + frame + blob[end:])


@contextlib.contextmanager
def http_server(respond: Callable[[socket.socket, int, threading.Event], None],
                max_seconds: float = 60.0) -> Iterator[str]:
    """A local HTTP server (127.0.0.1 only): ``respond(conn, request_number, stop)`` writes each answer.

    Yields the URL of ``/file``. On exit (or after ``max_seconds``) ``stop`` is
    set, the listening socket closed and every handler thread joined.
    """
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)
    stop = threading.Event()
    timer = threading.Timer(max_seconds, stop.set)
    timer.daemon = True
    timer.start()
    handlers: list[threading.Thread] = []

    def handle(conn: socket.socket, number: int) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request; its content does not matter here
                respond(conn, number, stop)
            except OSError:
                pass  # the client hung up, as it should on a bad answer

    def accept() -> None:
        number = 0
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            number += 1
            t = threading.Thread(target=handle, args=(conn, number), daemon=True)
            handlers.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/file"
    finally:
        stop.set()
        timer.cancel()
        acceptor.join(5)
        srv.close()
        for t in handlers:
            t.join(10)


def endless(limit: int = 256 << 20, chunked: bool = False, length: bytes | None = None) -> Callable:
    """An answer whose body never ends (up to ``limit`` bytes, then the server gives up).

    Without Content-Length (or with the bogus ``length`` given), or in chunks
    (``chunked``: Transfer-Encoding: chunked, a 64 KiB chunk after another).
    """
    def respond(conn: socket.socket, number: int, stop: threading.Event) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        head += b"Transfer-Encoding: chunked\r\n" if chunked else b""
        head += b"Content-Length: " + length + b"\r\n" if length is not None else b""
        conn.sendall(head + b"\r\n")
        block, sent = b"\0" * 65536, 0
        if chunked:
            block = b"%x\r\n" % len(block) + block + b"\r\n"
        while not stop.is_set() and sent < limit:
            conn.sendall(block)
            sent += len(block)
    return respond


def dripping(every: float = 0.5, in_headers: bool = False) -> Callable:
    """An answer that sends one byte every ``every`` seconds, in the body (or already in the headers)."""
    def respond(conn: socket.socket, number: int, stop: threading.Event) -> None:
        if in_headers:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while not stop.wait(every):
            conn.sendall(b"X" if in_headers else b"x")
    return respond


def cut_then_whole(blob: bytes, n_cut: int) -> Callable:
    """The first ``n_cut`` answers announce ``blob`` but close halfway; later ones send it whole."""
    def respond(conn: socket.socket, number: int, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(blob))
        conn.sendall(blob[: len(blob) // 2] if number <= n_cut else blob)
    return respond

