"""Loading the GPT stages' inputs (dialogues.pt, vocab.json), shared by training, evaluation and generation.

Kept apart from the trainer so that evaluating, sampling or fitting the n-gram
baseline imports no training code. ``BASELINE_DEFAULTS`` (rule ``ngram_gpt``'s
``gpt.baseline``) lives here too: the trainer's DEFAULT_CONFIG lists every
``gpt`` key, and taking them from :mod:`attnlab.gpt.ngram` would make an edit
of the n-gram code rerun training (the rules' code inputs follow imports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

BASELINE_DEFAULTS = {"orders": [2, 3, 4, 5], "discount": "modified", "char_order": 5}


def load_data(data_path: str | Path) -> dict:
    data_path = Path(data_path)
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} does not exist; build it with "
                                "`python -m attnlab.data build-vocab`")
    data = torch.load(data_path, map_location="cpu", weights_only=False)
    missing = [k for k in ("train", "val", "val_chars", "start_id", "pad_id", "unk_id", "vocab_size")
               if k not in data]
    if missing:
        raise ValueError(f"{data_path} lacks {missing}; rebuild it with `python -m attnlab.data build-vocab`")
    return data


def load_tokenizer(vocab_path: str | Path, vocab_size: Optional[int] = None):
    from attnlab.data.tokenizer import MyTokenizer

    tok = MyTokenizer.load(vocab_path)
    if vocab_size is not None and len(tok) != vocab_size:
        raise ValueError(f"{vocab_path} has {len(tok)} tokens but the data/model expect {vocab_size}; "
                         "use the vocab.json written together with dialogues.pt")
    return tok
