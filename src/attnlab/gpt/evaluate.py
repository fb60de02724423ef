"""Score a DialogueGPT checkpoint on any tiny-shakespeare-format text (rule ``evaluate_gpt``).

    python -m attnlab.gpt.evaluate --checkpoint CKPT --vocab VOCAB --text FILE --out JSON

The text is split into dialogues (blank-line separated blocks, as the seed's
``all_dialogues``), each encoded with the run's vocabulary (start token
first) and scored with the trainer's validation code
(:func:`attnlab.gpt.scoring.score_dialogues`): every target token counts once,
long dialogues in overlapping windows. bits/char = total NLL / ln 2 /
characters of the dialogues. Words outside the vocabulary become the unk token
and are scored as such; ``unk_rate`` says how often that happened.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from attnlab.checkpoint import CheckpointError
from attnlab.gpt.model import load_checkpoint
from attnlab.gpt.scoring import score_dialogues, summarize
from attnlab.io import write_json
from attnlab.runtime import pick_device


def evaluate(checkpoint: str | Path, vocab_path: str | Path, text_path: str | Path,
             device: str = "auto", batch_size: int = 64) -> dict:
    """eval.json's content for ``checkpoint`` on the dialogues of ``text_path``."""
    from attnlab.data.shakespeare import split_dialogues
    from attnlab.gpt.train import load_tokenizer

    text_path = Path(text_path)
    if not text_path.exists():
        raise FileNotFoundError(f"text file {text_path} does not exist")
    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    tok = load_tokenizer(vocab_path, model.vocab_size)
    dialogues = split_dialogues(text_path.read_text(encoding="utf-8"))
    if not dialogues:
        raise ValueError(f"{text_path} holds no dialogue (blocks separated by blank lines)")
    ids = [tok.encode(d) for d in dialogues]
    scores = score_dialogues(model, ids, tok.pad_id, tok.unk_id, batch_size, device=dev,
                             amp=dev.type == "cuda")
    out = summarize(scores, sum(len(d) for d in dialogues))
    out.update({"source": str(text_path), "n_dialogues": len(dialogues), "checkpoint": str(checkpoint),
                "epoch": ckpt.get("epoch")})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnlab.gpt.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--vocab", required=True)
    p.add_argument("--text", required=True, help="text in tiny-shakespeare format, e.g. val.txt")
    p.add_argument("--out", required=True, help="eval.json to write")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    try:
        result = evaluate(args.checkpoint, args.vocab, args.text, args.device)
    except (FileNotFoundError, CheckpointError) as exc:  # a wrong or foreign --checkpoint
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(args.out, result)
    print(f"val_loss {result['val_loss']:.4f}  bits/char {result['val_bits_per_char']:.4f}  "
          f"unk {result['unk_rate']:.4f}  ({result['n_tokens']} tokens)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
