"""Streamed, checksummed, retried downloads (stdlib ``urllib`` only).

The file is streamed into a temporary file beside the target, its digest
checked, and only then moved into place, so an interrupted or corrupted
transfer never leaves a file at the output path that a rerun would trust.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from attnlab.data import DataError
from attnlab.io import atomic_path

_CHUNK = 1 << 20


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
    stream=None,
) -> dict:
    """Download ``url`` to ``out`` and verify its ``algorithm`` digest against ``checksum``.

    ``checksum=None`` skips verification (the computed digest is still returned).
    A transfer that fails (network error, HTTP 5xx, short read) is retried up to
    ``retries`` times in all, waiting ``backoff * 2**i`` seconds between tries.
    ``timeout`` bounds each network wait; ``give_up_after`` bounds the whole
    time without receiving data, tries and waits included, so a server that
    hangs is given up on after at most that long (a slow transfer that keeps
    delivering is not cut off).
    ``offline_key`` names the config key that takes an offline copy and
    ``checksum_key`` the one holding the checksum; error messages point there. Returns {"url", "path", "algorithm",
    "value", "expected", "verified", "bytes", "seconds"}.
    """
    out = Path(out)
    stream = stream or sys.stderr
    hint = f" Without network access, set {offline_key} to a local copy instead." if offline_key else ""
    start = time.perf_counter()
    last_error: Exception | None = None
    last_data = [time.monotonic()]  # when bytes last arrived; _fetch moves it on
    for attempt in range(max(1, retries)):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            if give_up_after - (time.monotonic() - last_data[0]) <= wait:
                break
            print(f"[download] retrying {url} in {wait:.1f}s (try {attempt + 1}/{retries})", file=stream, flush=True)
            time.sleep(wait)
        left = give_up_after - (time.monotonic() - last_data[0])
        if left <= 0:
            break
        try:
            with atomic_path(out) as tmp:
                digest, n_bytes = _fetch(url, tmp, algorithm, min(timeout, left), stream, last_data)
                if checksum is not None and digest != checksum.lower():
                    # Not retried: a stable mismatch means the config's checksum or the
                    # upstream file changed, and another transfer will not fix that.
                    raise DataError(
                        f"{algorithm} mismatch for {url}: expected {checksum}, got {digest} "
                        f"(nothing was written to {out}). If the file changed upstream, update "
                        f"{checksum_key or 'the expected checksum'}; or use a verified local copy"
                        + (f" via {offline_key}." if offline_key else ".")
                    )
        except urllib.error.HTTPError as err:
            last_error = err
            if 400 <= err.code < 500:  # a missing file does not come back on retry
                break
        except (urllib.error.URLError, OSError, _ShortRead) as err:
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
    if isinstance(last_error, urllib.error.URLError) and not isinstance(last_error, urllib.error.HTTPError):
        reason = last_error.reason  # e.g. "[Errno 111] Connection refused", not "<urlopen error ...>"
    else:
        reason = last_error
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        reason = f"no data arrived for {give_up_after:.0f}s (the server does not answer)"
    raise DataError(f"could not download {url}: {reason}.{hint}") from last_error


class _ShortRead(OSError):
    pass


def _fetch(url: str, dest: Path, algorithm: str, timeout: float, stream, last_data: list) -> tuple[str, int]:
    """Stream ``url`` into ``dest``; return (hex digest, bytes written). ``last_data[0]``: time of the last bytes."""
    h = hashlib.new(algorithm)
    request = urllib.request.Request(url, headers={"User-Agent": "attnlab"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0)
        n = 0
        last_report = start = time.perf_counter()
        while block := response.read(_CHUNK):
            fh.write(block)
            h.update(block)
            n += len(block)
            last_data[0] = time.monotonic()
            now = time.perf_counter()
            if now - last_report >= 5.0:
                last_report = now
                done = f"{n / 2**20:.1f}/{total / 2**20:.1f} MiB" if total else f"{n / 2**20:.1f} MiB"
                print(f"[download] {dest.name.split('.part')[0].lstrip('.')}: {done} "
                      f"({n / 2**20 / (now - start):.1f} MiB/s)", file=stream, flush=True)
        if total and n != total:
            raise _ShortRead(f"connection closed after {n} of {total} bytes")
    return h.hexdigest(), n
