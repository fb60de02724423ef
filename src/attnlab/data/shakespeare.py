"""tiny-shakespeare: checksum, dialogues (the starter code's ``all_dialogues``) and a deterministic split."""

from __future__ import annotations

import os
import random
from pathlib import Path

from attnlab.data import SHAKESPEARE_SHA256, SHAKESPEARE_URL, DataError
from attnlab.io import file_digest

OFFLINE_KEY = "data.shakespeare.path"


def download_shakespeare(url: str = SHAKESPEARE_URL, out: str | os.PathLike = "input.txt",
                         sha256: str | None = SHAKESPEARE_SHA256, max_mb: float | None = None,
                         deadline_s: float | None = None, **kwargs) -> dict:
    """Download tiny-shakespeare with sha256 verification (see ``attnlab.data.download``).

    ``max_mb`` / ``deadline_s`` default to ``data.shakespeare.download_max_mb`` / ``download_deadline_s``.
    """
    from attnlab.data.download import download_limited

    return download_limited(url, out, sha256, "sha256", "data.shakespeare", max_mb, deadline_s, **kwargs)


def verify_text(path: str | os.PathLike, sha256: str | None) -> dict:
    """Check ``path`` against ``sha256``; return {"path", "sha256", "expected", "verified"}.

    ``sha256=None`` skips the check (``verified`` is then false) but the
    computed digest is still recorded, so a report says what was used.
    """
    path = Path(path)
    if not path.is_file():
        why = "is not a regular file" if path.exists() else "does not exist"
        raise DataError(f"tiny-shakespeare text {path} {why}; set {OFFLINE_KEY} to a copy of input.txt "
                        f"or leave it unset to download it")
    value = file_digest(path, "sha256")
    if sha256 is not None and value != sha256.lower():
        raise DataError(f"sha256 mismatch for {path}: expected {sha256}, got {value}. It is not the tiny-shakespeare "
                        f"input.txt the config names; use the right file or set data.shakespeare.sha256 "
                        f"(null skips the check)")
    return {"path": str(path), "sha256": value, "expected": sha256, "verified": sha256 is not None}


def split_dialogues(text: str) -> list[str]:
    """The blank-line separated blocks of ``text`` (speaker line + speech), stripped, empties dropped.

    The starter code's notebook takes ``text.split("\\n\\n")``; stripping only removes the
    stray newline where three newlines meet, so the blocks are the same ones.
    """
    return [block.strip() for block in text.split("\n\n") if block.strip()]


def train_val_split(dialogues: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split: a seeded random choice of ``round(n * val_fraction)`` validation dialogues.

    Both parts keep the text's order. At least one dialogue lands on each side
    when ``0 < val_fraction < 1`` and there are two or more dialogues.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"data.shakespeare.val_fraction must be in [0, 1), got {val_fraction}")
    n = len(dialogues)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [d for i, d in enumerate(dialogues) if i not in val_idx]
    val = [d for i, d in enumerate(dialogues) if i in val_idx]
    return train, val

