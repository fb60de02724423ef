"""Loading the GPT stages' inputs (dialogues.pt, vocab.json), shared by training, evaluation and generation.

Kept apart from the trainer so that evaluating, sampling or fitting the n-gram
baseline imports no training code. Files are loaded as data, never as code
(:func:`attnlab.checkpoint.load_pt`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from attnlab.checkpoint import load_pt
from attnlab.data import DataError


def load_data(data_path: str | Path) -> dict:
    data_path = Path(data_path)
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} does not exist; build it with "
                                "`python -m attnlab.data build-vocab`")
    data = load_pt(data_path, "a dialogues.pt written by `python -m attnlab.data build-vocab`")
    missing = [k for k in ("train", "val", "val_chars", "start_id", "pad_id", "unk_id", "vocab_size")
               if k not in data]
    if missing:
        raise DataError(f"{data_path} lacks {missing}; rebuild it with `python -m attnlab.data build-vocab`")
    return data


def load_tokenizer(vocab_path: str | Path, vocab_size: Optional[int] = None):
    from attnlab.data.tokenizer import MyTokenizer

    tok = MyTokenizer.load(vocab_path)
    if vocab_size is not None and len(tok) != vocab_size:
        raise DataError(f"{vocab_path} has {len(tok)} tokens but the data/model expect {vocab_size}; "
                         "use the vocab.json written together with dialogues.pt")
    return tok
