"""Scoring dialogues honestly, and batching them for training.

Shared by the trainer's per-epoch validation and ``python -m attnlab.gpt.evaluate``
so both report the same numbers for the same model and text.

Every target token of every dialogue is scored exactly once. A dialogue longer
than ``max_len`` (learned positions stop there) is cut into overlapping
windows: the first window scores its targets 1..max_len-1; each later window
ends ``stride`` tokens further on and scores only the targets not scored yet,
with at least ``max_len - stride`` tokens of the dialogue as context. So the
total NLL covers the whole text, and bits per character
(total NLL / ln 2 / characters) is comparable with character-level models.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from attnlab.data.dialogues import collate_batch
from attnlab.gpt.model import token_nll
from attnlab.runtime import autocast

Window = tuple[list[int], int]  # (token ids, number of leading targets already scored)


def windows(ids: Sequence[int], max_len: int, stride: Optional[int] = None) -> list[Window]:
    """Cut one dialogue into windows of <= max_len tokens that score each target once."""
    ids = [int(t) for t in ids]
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 to score anything, got {max_len}")
    stride = stride or max(1, max_len // 2)
    if not 1 <= stride <= max_len - 1:
        raise ValueError(f"stride must be in 1..max_len-1={max_len - 1}, got {stride}")
    out = [(ids[:max_len], 0)]
    scored_upto = min(len(ids), max_len)  # targets ids[1:scored_upto] are scored
    while scored_upto < len(ids):
        end = min(scored_upto + stride, len(ids))
        start = end - max_len
        # Window position j predicts ids[start + j]; targets with start + j < scored_upto are done.
        out.append((ids[start:end], scored_upto - start - 1))
        scored_upto = end
    return out


@torch.no_grad()
def score_dialogues(
    model: torch.nn.Module,
    dialogues: Sequence[Sequence[int]],
    pad_id: int,
    unk_id: Optional[int] = None,
    batch_size: int = 64,
    stride: Optional[int] = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    per_target: bool = False,
) -> dict:
    """Total NLL (nats) over every target token, with the token and unk-target counts.

    Returns {"total_nll", "n_tokens", "n_unk", "loss" (mean nats/token)}; with
    ``per_target`` also "target_nll": for each dialogue, the NLL (float64 nats)
    of each of its targets ``ids[1:]`` in order (the values the total sums).
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    # (window, dialogue index, window index within the dialogue)
    wins = [(w, d, k) for d, ids in enumerate(dialogues) for k, w in enumerate(windows(ids, model.max_len, stride))]
    # Length-sorted batches waste little on padding; the sum does not depend on order.
    wins.sort(key=lambda w: len(w[0][0]))
    total, n_tok, n_unk = 0.0, 0, 0
    pieces: dict[tuple[int, int], list[float]] = {}
    try:
        for i in range(0, len(wins), batch_size):
            chunk = wins[i:i + batch_size]
            batch = collate_batch([w[0][0] for w in chunk], pad_id)
            ids = batch["input_ids"].to(device)
            mask = batch["input_mask"].to(device)
            with autocast(device, amp):
                logits = model(ids, mask)
            nll, keep = token_nll(logits, ids, mask)
            skip = torch.tensor([w[0][1] for w in chunk], device=device)
            keep = keep & (torch.arange(keep.shape[1], device=device)[None, :] >= skip[:, None])
            total += float((nll.double() * keep).sum())
            n_tok += int(keep.sum())
            if unk_id is not None:
                n_unk += int((keep & (ids[:, 1:] == unk_id)).sum())
            if per_target:
                # a window's kept targets are contiguous and follow the previous window's
                nll64, keep_cpu = nll.double().cpu(), keep.cpu()
                for row, (_, d, k) in enumerate(chunk):
                    pieces[(d, k)] = nll64[row][keep_cpu[row]].tolist()
    finally:
        model.train(was_training)
    out = {"total_nll": total, "n_tokens": n_tok, "n_unk": n_unk, "loss": total / max(n_tok, 1)}
    if per_target:
        per_dialogue: list[list[float]] = [[] for _ in dialogues]
        for d, k in sorted(pieces):
            per_dialogue[d] += pieces[(d, k)]
        out["target_nll"] = per_dialogue
    return out


def summarize(scores: dict, n_chars: int) -> dict:
    """The metrics the trainer and evaluator report, from score_dialogues' totals."""
    loss = scores["loss"]
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 700.0)),
        "val_bits_per_char": scores["total_nll"] / math.log(2) / max(n_chars, 1),
        "unk_rate": scores["n_unk"] / max(scores["n_tokens"], 1),
        "n_tokens": scores["n_tokens"],
        "n_chars": n_chars,
    }


def training_chunks(dialogues: Sequence[Sequence[int]], max_len: int) -> list[list[int]]:
    """Cut long training dialogues into max_len pieces overlapping by one token.

    Each piece's first token is the previous piece's last, so every target of
    the dialogue is trained on once; pieces of a single token carry no target
    and are dropped.
    """
    out = []
    for ids in dialogues:
        ids = [int(t) for t in ids]
        for s in range(0, max(len(ids) - 1, 1), max_len - 1):
            piece = ids[s:s + max_len]
            if len(piece) >= 2:
                out.append(piece)
    return out


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of indices whose sequences have similar lengths.

    Shuffle, sort within groups of ``bucket * batch_size`` by length, cut into
    batches, shuffle the batch order: random each epoch (seeded), with little
    padding even though dialogue lengths range from 2 to hundreds of tokens.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    group = bucket * batch_size
    batches = []
    for g in range(0, len(perm), group):
        idx = sorted(perm[g:g + group], key=lambda i: lengths[i])
        batches += [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]
