"""build_vocab stage: tiny-shakespeare -> dialogues, train/val split, vocabulary, ids, report.

Outputs (all written atomically) in ``out_dir``: ``vocab.json`` (MyTokenizer.save),
``dialogues.pt`` (token ids per split, and ``vocab_digest``: the digest of the token list
they index, :func:`vocab_digest`), ``val.txt`` (validation dialogues in
tiny-shakespeare format, for evaluation on raw text), ``vocab_report.json`` and
``lengths.png`` (histogram of dialogue lengths in tokens, for the writeup).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from attnlab.config import check, resolve
from attnlab.data import DEFAULT_CONFIG, DataError
from attnlab.data.shakespeare import split_dialogues, train_val_split, verify_text
from attnlab.data.text import read_text
from attnlab.data.tokenizer import MyTokenizer, word_tokenize
from attnlab.io import atomic_path, torch_save, write_json, write_text

# The stage's own config: data.shakespeare's split keys plus data.tokenizer's keys, flat.
VOCAB_CONFIG = {**{k: DEFAULT_CONFIG["shakespeare"][k] for k in ("val_fraction", "seed")},
                **DEFAULT_CONFIG["tokenizer"]}


def resolve_vocab_config(user: Mapping | None) -> dict:
    """The flat {val_fraction, seed, min_freq, max_size} from either accepted shape.

    Flat (what the pipeline passes), or the ``data`` section itself
    (``{shakespeare: {...}, tokenizer: {...}}``, other ``data`` keys ignored).
    Either way the values are checked against the schema's ``data`` section.
    """
    user = dict(user or {})
    if {"shakespeare", "tokenizer", "cifar10"} & set(user):
        data = resolve(DEFAULT_CONFIG, user, "data")
        cfg = {k: data["shakespeare"][k] for k in ("val_fraction", "seed")}
        cfg.update({k: data["tokenizer"][k] for k in ("min_freq", "max_size")})
    else:
        cfg = resolve(VOCAB_CONFIG, user, "build_vocab")  # unknown keys; the schema has no flat section
        check({"shakespeare": {k: cfg[k] for k in ("val_fraction", "seed")},
               "tokenizer": {k: cfg[k] for k in ("min_freq", "max_size")}}, "data")
    return cfg


def vocab_digest(tokens: Sequence[str]) -> str:
    """sha256 of the token list, id order kept: the same for any vocab.json holding these tokens, however formatted."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(list(tokens), ensure_ascii=False).encode("utf-8")).hexdigest()


def build_vocab(text: str | os.PathLike, sha256: str | None, config: Mapping | None,
                out_dir: str | os.PathLike, stream=None) -> dict:
    """Run the stage; return the report (also written to ``out_dir/vocab_report.json``)."""
    stream = stream or sys.stderr
    start = time.perf_counter()
    cfg = resolve_vocab_config(config)
    out_dir = Path(out_dir)
    source = verify_text(text, sha256)
    dialogues = split_dialogues(read_text(text, "tiny-shakespeare text (UTF-8)"))
    if len(dialogues) < 2:
        raise DataError(f"{text} holds {len(dialogues)} dialogue(s); expected blank-line separated blocks "
                        f"(tiny-shakespeare format)")
    train, val = train_val_split(dialogues, cfg["val_fraction"], cfg["seed"])
    print(f"[build_vocab] {len(dialogues)} dialogues: {len(train)} train / {len(val)} val", file=stream, flush=True)

    train_tokens = _tokenize_all(train, "train", stream)
    val_tokens = _tokenize_all(val, "val", stream)
    tok = MyTokenizer.build(train, cfg["min_freq"], cfg["max_size"], tokenized=train_tokens)
    train_ids = [[tok.start_id] + tok.convert_tokens_to_ids(t) for t in train_tokens]
    val_ids = [[tok.start_id] + tok.convert_tokens_to_ids(t) for t in val_tokens]

    import torch

    tok.save(out_dir / "vocab.json")
    torch_save({
        "train": [torch.tensor(ids, dtype=torch.long) for ids in train_ids],
        "val": [torch.tensor(ids, dtype=torch.long) for ids in val_ids],
        "train_chars": sum(map(len, train)),
        "val_chars": sum(map(len, val)),
        "start_id": tok.start_id,
        "pad_id": tok.pad_id,
        "unk_id": tok.unk_id,
        "vocab_size": len(tok),
        "vocab_digest": vocab_digest(tok.itos),
    }, out_dir / "dialogues.pt")
    write_text(out_dir / "val.txt", "\n\n".join(val) + "\n")

    lengths = {"train": [len(x) for x in train_ids], "val": [len(x) for x in val_ids]}
    plot_lengths(lengths, out_dir / "lengths.png")

    def unk_rate(ids_list):  # over word tokens; the start token is not a word
        n = sum(len(x) - 1 for x in ids_list)
        return sum(x.count(tok.unk_id) for x in ids_list) / max(n, 1)

    every = lengths["train"] + lengths["val"]
    example = train[0]
    report = {
        "vocab_size": len(tok),
        "n_train_dialogues": len(train),
        "n_val_dialogues": len(val),
        "train_tokens": sum(map(len, train_tokens)),
        "val_tokens": sum(map(len, val_tokens)),
        "train_chars": sum(map(len, train)),
        "val_chars": sum(map(len, val)),
        "val_unk_rate": unk_rate(val_ids),
        "train_unk_rate": unk_rate(train_ids),
        "min_freq": cfg["min_freq"],
        "max_size": cfg["max_size"],
        "val_fraction": cfg["val_fraction"],
        "seed": cfg["seed"],
        "distinct_train_tokens": len({t for toks in train_tokens for t in toks}),
        "length_tokens": {  # per dialogue, start token included (what the model's context must hold)
            "mean": statistics.fmean(every),
            "median": statistics.median(every),
            "p95": _percentile(every, 0.95),
            "p99": _percentile(every, 0.99),
            "max": max(every),
        },
        "source": source,
        "example": {
            "text": example,
            "tokens": train_tokens[0],
            "ids": train_ids[0],
            "decoded": tok.decode(train_ids[0]),
        },
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(out_dir / "vocab_report.json", report)  # last: marks the stage complete
    print(f"[build_vocab] vocab {len(tok)} tokens, val unk rate {report['val_unk_rate']:.2%}, "
          f"{report['seconds']:.1f}s -> {out_dir}", file=stream, flush=True)
    return report


def _tokenize_all(dialogues: list[str], label: str, stream) -> list[list[str]]:
    out, last = [], time.perf_counter()
    for i, d in enumerate(dialogues, 1):
        out.append(word_tokenize(d))
        now = time.perf_counter()
        if now - last >= 5.0:
            last = now
            print(f"[build_vocab] tokenized {i}/{len(dialogues)} {label} dialogues", file=stream, flush=True)
    return out


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def plot_lengths(lengths: dict[str, list[int]], path: str | os.PathLike) -> None:
    """Histogram of dialogue lengths in tokens per split (log count axis: the tail is long)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = lengths["train"] + lengths["val"]
    bins = min(60, max(every)) or 1
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=150)
    ax.hist([lengths["train"], lengths["val"]], bins=bins, stacked=True, label=["train", "val"])
    for q, style in ((0.5, "--"), (0.95, ":")):
        v = _percentile(every, q)
        ax.axvline(v, color="black", linestyle=style, linewidth=1, label=("median" if q == 0.5 else "95th percentile") + f": {v}")
    ax.set_yscale("log")
    ax.set_xlabel("dialogue length (tokens, start token included)")
    ax.set_ylabel("dialogues")
    ax.set_title(f"{len(every)} dialogues, median {statistics.median(every):g} tokens")
    ax.legend(frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
