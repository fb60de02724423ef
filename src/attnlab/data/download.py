"""Streamed, checksummed, retried, bounded downloads (stdlib ``urllib`` only).

The file is streamed into a temporary file beside the target, its digest
checked, and only then moved into place, so an interrupted or corrupted
transfer never leaves a file at the output path that a rerun would trust.

A server is not trusted to end its answer: ``max_bytes`` stops a body that is
larger than the file can be (an endless one included), and ``deadline`` stops
the whole download, tries and waits included, even when the server keeps
sending a byte now and then (which a socket timeout never catches). The
deadline is enforced by a watchdog that shuts the open sockets down, so a
server dripping its headers is stopped as well as one dripping its body.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from attnlab.data import DataError
from attnlab.io import atomic_path

_CHUNK = 1 << 20


class _ShortRead(OSError):
    pass


class _TooLarge(Exception):
    """More bytes than ``max_bytes``, announced or sent: not retried, the next try would be as large."""


class _Expired(Exception):
    """The deadline passed mid-transfer; ``args[0]``: the bytes that had arrived."""


def download(
    url: str,
    out: str | os.PathLike,
    checksum: str | None,
    algorithm: str = "sha256",
    *,
    offline_key: str | None = None,
    checksum_key: str | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    timeout: float = 20.0,
    give_up_after: float = 60.0,
    max_bytes: int | None = None,
    deadline: float | None = None,
    limit_keys: tuple[str, str] | None = None,
    stream=None,
) -> dict:
    """Download ``url`` to ``out`` and verify its ``algorithm`` digest against ``checksum``.

    ``checksum=None`` skips verification (the computed digest is still returned).
    A transfer that fails (network error, HTTP 5xx, short read) is retried up to
    ``retries`` times in all, waiting ``backoff * 2**i`` seconds between tries.
    ``timeout`` bounds each network wait; ``give_up_after`` bounds the whole
    time without receiving data, tries and waits included, so a server that
    hangs is given up on after at most that long. ``max_bytes`` (None: no cap)
    stops a transfer, announced or streamed, that is larger; ``deadline`` (in
    seconds, None: none) stops the whole download after that long, however
    slowly data keeps arriving. Neither is retried.
    ``offline_key`` names the config key that takes an offline copy,
    ``checksum_key`` the one holding the checksum and ``limit_keys`` the two
    holding (max MiB, deadline s); error messages point there. Returns {"url",
    "path", "algorithm", "value", "expected", "verified", "bytes", "seconds"}.
    """
    out = Path(out)
    stream = stream or sys.stderr
    hint = f" Without network access, set {offline_key} to a local copy instead." if offline_key else ""
    size_key, time_key = limit_keys or ("max_bytes", "deadline")
    start = time.perf_counter()
    ends = time.monotonic() + (deadline if deadline is not None else math.inf)
    last_error: Exception | None = None
    last_data = [time.monotonic()]  # when bytes last arrived; _fetch moves it on
    out_of_time = False
    for attempt in range(max(1, retries)):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            if time.monotonic() + wait >= ends:
                out_of_time = True  # the next try would start past the deadline
                break
            if give_up_after - (time.monotonic() - last_data[0]) <= wait:
                break
            print(f"[download] retrying {url} in {wait:.1f}s (try {attempt + 1}/{retries})", file=stream, flush=True)
            time.sleep(wait)
        left = min(give_up_after - (time.monotonic() - last_data[0]), ends - time.monotonic())
        if left <= 0:
            break
        try:
            with atomic_path(out) as tmp:
                digest, n_bytes = _fetch(url, tmp, algorithm, min(timeout, left), stream, last_data,
                                         max_bytes, ends)
                if checksum is not None and digest != checksum.lower():
                    # Not retried: a stable mismatch means the config's checksum or the
                    # upstream file changed, and another transfer will not fix that.
                    raise DataError(
                        f"{algorithm} mismatch for {url}: expected {checksum}, got {digest} "
                        f"(nothing was written to {out}). If the file changed upstream, update "
                        f"{checksum_key or 'the expected checksum'}; or use a verified local copy"
                        + (f" via {offline_key}." if offline_key else ".")
                    )
        except _TooLarge as err:
            raise DataError(f"stopped downloading {url}: {err}, more than the {max_bytes / 2**20:g} MiB limit "
                            f"({size_key}); nothing was written to {out}. If the file really is that large, "
                            f"raise {size_key}.{hint}") from None
        except _Expired as err:
            raise DataError(f"stopped downloading {url}: not complete after the {deadline:g} s deadline "
                            f"({time_key}; {err.args[0]} bytes had arrived); nothing was written to {out}. "
                            f"On a slow link raise {time_key}.{hint}") from None
        except urllib.error.HTTPError as err:
            last_error = err
            if 400 <= err.code < 500:  # a missing file does not come back on retry
                break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            last_error = err
        else:
            return {
                "url": url,
                "path": str(out),
                "algorithm": algorithm,
                "value": digest,
                "expected": checksum,
                "verified": checksum is not None,
                "bytes": n_bytes,
                "seconds": round(time.perf_counter() - start, 3),
            }
    if out_of_time or time.monotonic() >= ends:
        raise DataError(f"could not download {url} within the {deadline:g} s deadline ({time_key}): "
                        f"{last_error or 'no try finished'}.{hint}") from last_error
    if isinstance(last_error, urllib.error.URLError) and not isinstance(last_error, urllib.error.HTTPError):
        reason = last_error.reason  # e.g. "[Errno 111] Connection refused", not "<urlopen error ...>"
    else:
        reason = last_error
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        reason = f"no data arrived for {give_up_after:.0f}s (the server does not answer)"
    raise DataError(f"could not download {url}: {reason}.{hint}") from last_error


def download_limited(url: str, out: str | os.PathLike, checksum: str | None, algorithm: str, section: str,
                     max_mb: float | None = None, deadline_s: float | None = None, **kwargs) -> dict:
    """:func:`download` of the data set configured in ``section`` ("data.cifar10"), its keys named in errors.

    ``max_mb`` / ``deadline_s`` default to the section's ``download_max_mb`` / ``download_deadline_s``.
    """
    from attnlab.data import DEFAULT_CONFIG

    defaults = DEFAULT_CONFIG[section.split(".")[1]]
    max_mb = defaults["download_max_mb"] if max_mb is None else max_mb
    deadline_s = defaults["download_deadline_s"] if deadline_s is None else deadline_s
    return download(url, out, checksum, algorithm, offline_key=f"{section}.path",
                    checksum_key=f"{section}.{algorithm}", max_bytes=int(max_mb * 2**20), deadline=deadline_s,
                    limit_keys=(f"{section}.download_max_mb", f"{section}.download_deadline_s"), **kwargs)


class _Watchdog:
    """Shuts down every socket the download opened once the deadline passes.

    A blocked ``recv`` then returns at once, whether urllib is waiting for the
    status line, a header or the body; ``expired`` tells the reader why.
    """

    def __init__(self, ends: float) -> None:
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._timer = None
        if math.isfinite(ends):
            self._timer = threading.Timer(max(0.0, ends - time.monotonic()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def opener(self) -> urllib.request.OpenerDirector:
        watchdog = self

        def tracked(conn_class):
            class Tracked(conn_class):
                def connect(self):
                    super().connect()
                    watchdog.sockets.append(self.sock)
                    if watchdog.expired:  # connected just after the deadline
                        watchdog._expire()
            return Tracked

        class HTTP(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(tracked(http_class), req, **kwargs)

        handlers = [HTTP]
        if hasattr(http.client, "HTTPSConnection"):
            class HTTPS(urllib.request.HTTPSHandler):
                def do_open(self, http_class, req, **kwargs):
                    return super().do_open(tracked(http_class), req, **kwargs)

            handlers.append(HTTPS)
        return urllib.request.build_opener(*handlers)


def _announced(value: str | None) -> int:
    """Content-Length as a byte count; 0 (unknown) when absent or not a count, as http.client reads it."""
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


def _fetch(url: str, dest: Path, algorithm: str, timeout: float, stream, last_data: list,
           max_bytes: int | None, ends: float) -> tuple[str, int]:
    """Stream ``url`` into ``dest``; return (hex digest, bytes written). ``last_data[0]``: time of the last bytes."""
    h = hashlib.new(algorithm)
    cap = max_bytes if max_bytes is not None else math.inf
    request = urllib.request.Request(url, headers={"User-Agent": "attnlab"})
    watchdog = _Watchdog(ends)
    n = 0
    try:
        with watchdog.opener().open(request, timeout=timeout) as response, open(dest, "wb") as fh:
            total = _announced(response.headers.get("Content-Length"))
            if total > cap:
                raise _TooLarge(f"the server announces {total} bytes")
            read = getattr(response, "read1", response.read)  # what has arrived, not a blocking 1 MiB
            last_report = start = time.perf_counter()
            while block := read(_CHUNK):
                n += len(block)
                if n > cap:
                    raise _TooLarge(f"the server sent over {cap} bytes")  # n jumps by up to a chunk
                if watchdog.expired or time.monotonic() >= ends:
                    raise _Expired(n)
                fh.write(block)
                h.update(block)
                last_data[0] = time.monotonic()
                now = time.perf_counter()
                if now - last_report >= 5.0:
                    last_report = now
                    done = f"{n / 2**20:.1f}/{total / 2**20:.1f} MiB" if total else f"{n / 2**20:.1f} MiB"
                    print(f"[download] {dest.name.split('.part')[0].lstrip('.')}: {done} "
                          f"({n / 2**20 / (now - start):.1f} MiB/s)", file=stream, flush=True)
            if watchdog.expired:  # the cut socket looked like the end of the body
                raise _Expired(n)
            if total and n != total:
                raise _ShortRead(f"connection closed after {n} of {total} bytes")
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        if watchdog.expired:
            raise _Expired(n) from None
        raise
    finally:
        watchdog.cancel()
    return h.hexdigest(), n
