"""Score a DialogueGPT checkpoint, and the Kneser-Ney baseline beside it, on any tiny-shakespeare-format text.

    python -m attnlab.gpt.evaluate --checkpoint CKPT --vocab VOCAB --text FILE --out JSON \
        [--ngram NGRAM_JSON --data DIALOGUES_PT --vocab-report VOCAB_REPORT --source INPUT_TXT]

(rule ``evaluate_gpt``). The text is split into dialogues (blank-line
separated blocks, as the starter code's ``all_dialogues``), each encoded with the
run's vocabulary (start token first) and scored with the trainer's
validation code (:func:`attnlab.gpt.scoring.score_dialogues`): every target
token counts once, long dialogues in overlapping windows. bits/char = total
NLL / ln 2 / characters of the dialogues. Words outside the vocabulary become
the unk token and are scored as such; ``unk_rate`` says how often that
happened.

With the baseline files, the same ids are also scored by the Kneser-Ney model
of the order ``ngram.json`` chose on validation (refit on dialogues.pt's
training split, :mod:`attnlab.gpt.ngram`); ``perplexity_ratio`` =
model perplexity / Kneser-Ney perplexity on the same targets (< 1: the model
is better). Both also get an open-vocabulary bits/char
(``val_bits_per_char_open``, ``baseline.bits_per_char_open``): each
out-of-vocabulary word additionally pays its spelling under a character
model fit on the training split, an upper bound comparable with
character-level models. ``mixture`` (:mod:`attnlab.gpt.mixture`) is a
separate figure for a combination of the two: per target
lam * p_model + (1 - lam) * p_KN, lam cross-fitted over two halves of the
validation dialogues; it is not the model's own perplexity.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.gpt.data import load_data, load_tokenizer, trained_vocab_digest
from attnlab.gpt.model import load_checkpoint
from attnlab.gpt.scoring import score_dialogues, summarize
from attnlab.io import write_json
from attnlab.runtime import pick_device

BASELINE_FILES = ("ngram", "data", "vocab_report", "source")


def evaluate(checkpoint: str | Path, vocab_path: str | Path, text_path: str | Path,
             device: str = "auto", batch_size: int = 64, baseline: Optional[dict] = None) -> dict:
    """eval.json's content for ``checkpoint`` on the dialogues of ``text_path``.

    ``baseline``: {"ngram", "data", "vocab_report", "source"} paths (see the
    module doc); without it only the model is scored.
    """
    from attnlab.data import DataError
    from attnlab.data.shakespeare import split_dialogues
    from attnlab.data.text import read_text
    from attnlab.gpt import bootstrap, mixture, ngram

    text_path = Path(text_path)
    if not text_path.exists():
        raise DataError(f"text file {text_path} does not exist")
    if baseline is not None:
        missing = [k for k in BASELINE_FILES if not baseline.get(k)]
        if missing:
            raise DataError(f"the baseline needs all of {BASELINE_FILES}; missing {missing}")
    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    tok = load_tokenizer(vocab_path, model.vocab_size, trained_vocab_digest(ckpt), f"{checkpoint}")
    dialogues = split_dialogues(read_text(text_path, "text in tiny-shakespeare format (UTF-8)"))
    if not dialogues:
        raise DataError(f"{text_path} holds no dialogue (blocks separated by blank lines)")
    words = [tok.tokenize(d) for d in dialogues]
    ids = [[tok.start_id] + tok.convert_tokens_to_ids(w) for w in words]
    scores = score_dialogues(model, ids, tok.pad_id, tok.unk_id, batch_size, device=dev,
                             amp=dev.type == "cuda", per_target=baseline is not None)
    target_nll = scores.pop("target_nll", None)
    n_chars = sum(len(d) for d in dialogues)
    out = summarize(scores, n_chars)
    out.update({"source": str(text_path), "n_dialogues": len(dialogues), "checkpoint": str(checkpoint),
                "epoch": ckpt.get("epoch")})
    if baseline is None:
        return out

    chosen = json.loads(Path(baseline["ngram"]).read_text(encoding="utf-8"))
    cfg = ngram.resolve_config(chosen.get("config"))
    order = int(chosen["best_order"])
    data = load_data(baseline["data"])
    load_tokenizer(vocab_path, data["vocab_size"], data.get("vocab_digest"), f"{baseline['data']}")
    kn = ngram.KneserNey(order, data["vocab_size"], data["start_id"], cfg["discount"])
    kn.fit([[int(t) for t in s] for s in data["train"]])
    kn_scores = kn.score(ids, per_target=True)
    if kn_scores["n_tokens"] != scores["n_tokens"]:
        raise DataError(f"the baseline scored {kn_scores['n_tokens']} targets, the model "
                             f"{scores['n_tokens']}: they must score the same ones")
    speller = ngram.fit_speller(baseline["source"], baseline["vocab_report"], cfg["char_order"], cfg["discount"])
    spell, n_spelled = ngram.spelling_nll((w for ws in words for w in ws), tok, speller)
    if n_spelled != scores["n_unk"]:
        raise DataError(f"{n_spelled} words spelled but {scores['n_unk']} <unk> targets")
    model_open = ngram.summarize(scores["total_nll"], scores["n_tokens"], n_chars, spell)
    kn_sum = ngram.summarize(kn_scores["total_nll"], kn_scores["n_tokens"], n_chars, spell)
    out.update({
        "val_bits_per_char_open": model_open["bits_per_char_open"],
        "spell_bits_per_unk": spell / math.log(2) / max(n_spelled, 1),
        "baseline": {"model": f"interpolated Kneser-Ney ({cfg['discount']} discounts)", "order": order,
                     "val_loss": kn_sum["loss"], "val_perplexity": kn_sum["perplexity"],
                     "val_bits_per_char": kn_sum["bits_per_char"],
                     "val_bits_per_char_open": kn_sum["bits_per_char_open"], "n_tokens": kn_scores["n_tokens"],
                     "char_order": cfg["char_order"],
                     # every fitted order on the validation split (ngram.json), how the order was chosen
                     "orders_on_validation": {n: {"val_perplexity": o["perplexity"],
                                                  "val_bits_per_char": o["bits_per_char"]}
                                              for n, o in chosen["orders"].items()}},
        "perplexity_ratio": out["val_perplexity"] / kn_sum["perplexity"],
        "perplexity_ratio_ci": bootstrap.perplexity_ratio_interval(target_nll, kn_scores["target_nll"]),
        # a combination of DialogueGPT with the n-gram model, never DialogueGPT's own figure
        "mixture": mixture.report(target_nll, kn_scores["target_nll"], n_chars, out["val_perplexity"],
                                  kn_sum["perplexity"], spell),
    })
    return out


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    p = stage_parser("attnlab.gpt.evaluate", __doc__, "gpt-checkpoint", "vocab", "device")
    p.add_argument("--text", required=True, help="text in tiny-shakespeare format, e.g. val.txt")
    p.add_argument("--out", required=True, help="eval.json to write")
    g = p.add_argument_group("baseline (all four, or none)")
    g.add_argument("--ngram", help="ngram.json of rule ngram_gpt (the chosen order)")
    g.add_argument("--data", help="dialogues.pt (the baseline's training split)")
    g.add_argument("--vocab-report", help="vocab_report.json (the split, for the spelling model)")
    g.add_argument("--source", help="the tiny-shakespeare text build_vocab read")
    args = p.parse_args(argv)
    given = {k: getattr(args, k) for k in BASELINE_FILES}
    if any(given.values()) and not all(given.values()):
        p.error(f"give all of --ngram --data --vocab-report --source, or none (missing: "
                f"{[k for k, v in given.items() if not v]})")
    result = evaluate(args.checkpoint, args.vocab, args.text, args.device,
                      baseline=given if all(given.values()) else None)
    write_json(args.out, result)
    line = (f"val_loss {result['val_loss']:.4f}  perplexity {result['val_perplexity']:.1f}  "
            f"bits/char {result['val_bits_per_char']:.4f}  unk {result['unk_rate']:.4f}  ({result['n_tokens']} tokens)")
    if "baseline" in result:
        b = result["baseline"]
        line += (f"\nopen-vocabulary bits/char {result['val_bits_per_char_open']:.4f}; Kneser-Ney {b['order']}-gram: "
                 f"perplexity {b['val_perplexity']:.1f}, bits/char {b['val_bits_per_char']:.4f} "
                 f"(open {b['val_bits_per_char_open']:.4f}); ratio {result['perplexity_ratio']:.3f}")
        m = result["mixture"]
        line += (f"\nmixture with the n-gram (not the model alone; lam cross-fitted {m['lambda_per_fold']}): "
                 f"perplexity {m['perplexity']:.1f}, bits/char {m['bits_per_char']:.4f}, "
                 f"{m['ratio_to_baseline']:.3f} x Kneser-Ney")
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
