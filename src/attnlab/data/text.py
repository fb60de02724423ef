"""Strict readers for the text and JSON files a user hands the pipeline (corpora, val.txt, vocab.json, reports).

One place decides what such a file may be, so that every stage refuses the
same mistakes with the same line: not a regular file, larger than the limit
(read whole into memory, so bounded), not UTF-8 (named with the byte offset of
the first bad byte), empty, or for JSON malformed, of the wrong top-level type
or with a key given twice. A leading UTF-8 byte order mark is dropped (editors
on Windows add one; kept, it would glue itself to the first word), and line
endings are read as universal newlines, like ``open()`` in text mode.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

from attnlab.data import DataError

# tiny-shakespeare is 1.1 MB; 64 MiB is ~60 times that and still tokenizes in minutes.
MAX_TEXT_BYTES = 64 << 20


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), or DataError naming ``what`` it should be."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist (expected {what})")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file (expected {what})")
    if path.stat().st_size > max_bytes:
        raise DataError(f"{path} is larger than the {max_bytes / 2**20:.0f} MiB limit for {what}; "
                        f"is it the right file?")
    try:
        with open(path, "rb") as fh:
            blob = fh.read(max_bytes + 1)  # never more than the limit, even if the file grows
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err} (expected {what})") from err
    if len(blob) > max_bytes:
        raise DataError(f"{path} is larger than the {max_bytes / 2**20:.0f} MiB limit for {what}; "
                        f"is it the right file?")
    return blob


def read_text(path: str | os.PathLike, what: str = "UTF-8 text", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """``path`` decoded as UTF-8 (BOM dropped, universal newlines); DataError if it is not, or holds only blanks."""
    blob = read_bytes(path, what, max_bytes)
    skip = len(codecs.BOM_UTF8) if blob.startswith(codecs.BOM_UTF8) else 0
    try:
        text = blob[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = blob.count(b"\n", 0, offset) + 1
        raise DataError(f"{path} is not UTF-8 text: byte {blob[offset]:#04x} at offset {offset} (line {line}) "
                        f"is {err.reason}; expected {what}. Convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                        ) from err
    if not text.strip():
        raise DataError(f"{path} is empty{' (only blanks)' if text else ''}; expected {what}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _no_duplicate_keys(path: Path):
    def hook(pairs: list) -> dict:
        out = {}
        for key, value in pairs:
            if key in out:
                raise DataError(f"{path} gives the key {key!r} twice; a JSON object's keys must be unique")
            out[key] = value
        return out

    return hook


def read_json(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> dict:
    """The JSON object in ``path``; DataError if it is not valid JSON, not an object, or repeats a key."""
    path = Path(path)
    text = read_text(path, what, max_bytes)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                        f"expected {what}") from err
    except RecursionError as err:  # "[[[[..." nested deeper than the parser's stack
        raise DataError(f"{path} nests JSON too deeply to be {what}") from err
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a JSON {type(data).__name__}, not an object; expected {what}")
    return data
