"""DialogueGPT's attention explorer page (rule ``explore_gpt``).

    python -m attnlab.explore gpt --checkpoint CKPT --vocab VOCAB --dialogues DIALOGUES_PT \
        --generation GENERATION_JSON --out HTML [--n-dialogues 4] [--max-tokens 64] [--run NAME]

The sequences are the run's greedy samples (``generation.json``, the text the
writeup prints) and the first ``--n-dialogues`` validation dialogues of
``dialogues.pt``, each cut to its first ``--max-tokens`` tokens (start token
included; at most the model's ``max_len``). Each runs through the model once
with ``return_attention=True`` under the causal mask, exactly as in training.

Page data (``pack`` explains the row format): one entry per sequence with its
tokens and ``attention`` rows in the order (layer, head, query), each over all
T keys; the causal mask makes every weight on a later key exactly 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from attnlab.explore.pack import pack_rows, render_page
from attnlab.data import DataError
from attnlab.data.text import read_json
from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.gpt.data import load_data, load_tokenizer, trained_vocab_digest
from attnlab.gpt.model import load_checkpoint
from attnlab.io import write_text
from attnlab.runtime import pick_device


def greedy_samples(path: str | Path, vocab_size: int) -> list[tuple[str, list[int]]]:
    """(label, ids) of generation.json's greedy samples; a file not in that shape is a DataError."""
    what = "a generation.json written by attnlab.gpt.generate"
    try:
        samples = read_json(path, what)["samples"]
        out = [(f"greedy sample: {s['prompt']}", [int(i) for i in s["ids"]]) for s in samples]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not {what} ({exc})") from None
    for label, ids in out:
        if not ids or any(not 0 <= i < vocab_size for i in ids):
            raise DataError(f"{path}: {label!r} holds ids outside the vocabulary (0..{vocab_size - 1}); "
                            "was it generated with this checkpoint?")
    return out


def page_data(checkpoint: str | Path, vocab: str | Path, dialogues: str | Path, generation: str | Path,
              n_dialogues: int = 4, max_tokens: int = 64, run: str | None = None, device: str = "auto") -> dict:
    if n_dialogues < 0 or max_tokens < 2:
        raise ValueError(f"need n_dialogues >= 0 and max_tokens >= 2, got {n_dialogues} and {max_tokens}")
    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    tok = load_tokenizer(vocab, model.vocab_size, trained_vocab_digest(ckpt), f"{checkpoint}")
    val = load_data(dialogues)["val"]
    seqs = greedy_samples(generation, model.vocab_size)
    seqs += [(f"validation dialogue {k + 1} of {len(val)}", [int(i) for i in val[k]])
             for k in range(min(n_dialogues, len(val)))]
    keep = min(max_tokens, model.max_len)
    sequences = []
    for label, ids in seqs:
        ids = ids[:keep]
        with torch.no_grad():
            _, maps = model(torch.tensor([ids], device=dev), return_attention=True)  # (1, L, H, T, T)
        sequences.append({"label": label, "tokens": [tok.itos[i] for i in ids], "attention": pack_rows(maps[0])})
    if not sequences:
        raise DataError(f"nothing to show: {generation} has no samples and n_dialogues is 0")
    layers = model.transformer.layers
    return {"family": "gpt", "run": run or Path(checkpoint).parent.name, "epoch": ckpt.get("epoch"),
            "layers": len(layers), "heads": layers[0].attn.n_heads, "max_tokens": keep, "sequences": sequences}


def build(checkpoint, vocab, dialogues, generation, out, n_dialogues: int = 4, max_tokens: int = 64,
          run: str | None = None, device: str = "auto") -> dict:
    """Write the page to ``out`` (atomically); returns its data."""
    d = page_data(checkpoint, vocab, dialogues, generation, n_dialogues, max_tokens, run, device)
    write_text(out, render_page("gpt", f"DialogueGPT attention explorer: run {d['run']}", d))
    return d


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.explore gpt", __doc__, "gpt-checkpoint", "vocab", "device")
    ap.add_argument("--dialogues", required=True, help="dialogues.pt (its validation split)")
    ap.add_argument("--generation", required=True, help="generation.json written by attnlab.gpt.generate")
    ap.add_argument("--out", required=True, help="the page to write (attention.html)")
    ap.add_argument("--n-dialogues", type=int, default=4, help="validation dialogues shown (default 4)")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens kept per sequence (default 64)")
    ap.add_argument("--run", default=None, help="run name shown on the page (default: the checkpoint's folder)")
    args = ap.parse_args(argv)
    if args.n_dialogues < 0 or args.max_tokens < 2:
        ap.error(f"need --n-dialogues >= 0 and --max-tokens >= 2, got {args.n_dialogues} and {args.max_tokens}")
    d = build(args.checkpoint, args.vocab, args.dialogues, args.generation, args.out, args.n_dialogues,
              args.max_tokens, args.run, args.device)
    print(f"wrote {args.out}: {len(d['sequences'])} sequences, {d['layers']} layers x {d['heads']} heads, "
          f"{Path(args.out).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
