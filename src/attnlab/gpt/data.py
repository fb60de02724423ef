"""Loading the GPT stages' inputs (dialogues.pt, vocab.json), shared by training, evaluation and generation.

Kept apart from the trainer so that evaluating, sampling or fitting the n-gram
baseline imports no training code. Files are loaded as data, never as code
(:func:`attnlab.checkpoint.load_pt`). A vocabulary is matched to the data or
checkpoint it is used with by its tokens (:func:`attnlab.data.vocab.vocab_digest`),
not only by its size: one of the same size with other tokens would score garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from attnlab.checkpoint import load_pt
from attnlab.data import DataError
from attnlab.data.vocab import vocab_digest

REBUILD = "rebuild it with `python -m attnlab.data build-vocab`"


def load_data(data_path: str | Path) -> dict:
    """dialogues.pt, checked: for both splits, non-empty integer id sequences (1-D tensors) within the
    vocabulary, each beginning with the start id; integer special ids and counts."""
    import torch

    data_path = Path(data_path)
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path} does not exist; build it with "
                                "`python -m attnlab.data build-vocab`")
    data = load_pt(data_path, "a dialogues.pt written by `python -m attnlab.data build-vocab`")
    if not isinstance(data, dict):
        raise DataError(f"{data_path} holds a {type(data).__name__}, not the dialogues dict; {REBUILD}")
    missing = [k for k in ("train", "val", "val_chars", "start_id", "pad_id", "unk_id", "vocab_size")
               if k not in data]
    if missing:
        raise DataError(f"{data_path} lacks {missing}; {REBUILD}")
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    size = data["vocab_size"]
    ids = [data[k] for k in ("start_id", "pad_id", "unk_id")]
    if not integer(size) or size < 3 or not all(integer(i) and 0 <= i < size for i in ids):
        raise DataError(f"{data_path}: start/pad/unk ids {ids!r:.80} must be integers below its vocab_size "
                        f"{size!r:.20} (at least 3); {REBUILD}")
    if not integer(data["val_chars"]) or data["val_chars"] < 1:
        raise DataError(f"{data_path}: val_chars must be a positive integer, got {data['val_chars']!r:.40}; "
                        f"{REBUILD}")
    for split in ("train", "val"):
        seqs = data[split]
        if not isinstance(seqs, list) or not seqs or not all(
                isinstance(s, torch.Tensor) and s.dim() == 1 and len(s) > 0 and not s.dtype.is_floating_point
                and not s.dtype.is_complex and s.dtype != torch.bool for s in seqs):
            raise DataError(f"{data_path}: '{split}' must be a non-empty list of non-empty 1-D integer id "
                            f"tensors; {REBUILD}")
        flat = torch.cat(seqs)
        if int(flat.min()) < 0 or int(flat.max()) >= size:
            raise DataError(f"{data_path}: '{split}' holds ids {int(flat.min())}..{int(flat.max())}, outside "
                            f"its vocabulary 0..{size - 1}; {REBUILD}")
        if any(int(s[0]) != data["start_id"] for s in seqs):
            raise DataError(f"{data_path}: a '{split}' dialogue does not begin with the start id "
                            f"{data['start_id']}; {REBUILD}")
    return data


def load_tokenizer(vocab_path: str | Path, vocab_size: Optional[int] = None, digest: Optional[str] = None,
                   made_for: str = "the data/model"):
    """vocab.json as a MyTokenizer; refused (DataError) unless it has ``vocab_size`` tokens and, when the
    data or checkpoint it serves (``made_for``) recorded one, the token digest ``digest``."""
    from attnlab.data.tokenizer import MyTokenizer

    tok = MyTokenizer.load(vocab_path)
    if vocab_size is not None and len(tok) != vocab_size:
        raise DataError(f"{vocab_path} has {len(tok)} tokens but {made_for} expects {vocab_size}; "
                        "use the vocab.json written together with dialogues.pt")
    if digest is not None and vocab_digest(tok.itos) != digest:
        raise DataError(f"{vocab_path} holds other tokens (digest {vocab_digest(tok.itos)}) than {made_for} was "
                        f"made with (digest {digest}); use the vocab.json written together with its dialogues.pt")
    return tok


def trained_vocab_digest(ckpt: dict) -> Optional[str]:
    """The token digest a checkpoint of attnlab.gpt.train recorded (None for one written before it did)."""
    digests = ckpt.get("digests")
    return digests.get("vocab") if isinstance(digests, dict) else None
