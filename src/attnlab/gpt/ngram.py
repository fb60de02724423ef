"""Kneser-Ney n-gram baseline on DialogueGPT's own tokens, and open-vocabulary bits/char (rule ``ngram_gpt``).

    python -m attnlab.gpt.ngram --data DIALOGUES_PT --vocab-report VOCAB_REPORT --source INPUT_TXT \
        --val-text VAL_TXT --config BASELINE.yaml --out JSON

Interpolated modified Kneser-Ney (Chen & Goodman 1999) over DialogueGPT's ids,
fit on the training split and scoring exactly the model's validation targets
(``<unk>`` included); the order with the best validation loss is the
baseline. A character n-gram fit on the training words charges each
``<unk>`` target the bits to spell its word, for an open-vocabulary bits/char
comparable with character-level models. A small implementation rather than
``nltk.lm``, which keeps one fixed discount and is ~100x slower. The model,
its formulas and measured numbers: docs/ngram-baseline.md.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Sequence

from attnlab.config import defaults
from attnlab.data import DataError
from attnlab.cli import stage_parser
from attnlab.errors import cli_main

DISCOUNT_MODES = ("modified", "single")


def _discounts(count_of_counts: Counter, mode: str) -> tuple[float, float, float]:
    """(D1, D2, D3+) from counts-of-counts t_j; on data too small to estimate them, D = 0.5 (clamped to <= j)."""
    t1, t2, t3, t4 = (count_of_counts.get(j, 0) for j in (1, 2, 3, 4))
    y = t1 / (t1 + 2 * t2) if t1 + 2 * t2 > 0 else 0.5
    if mode == "single":
        ds = (y, y, y)
    else:
        def est(j, tj, tj1):
            return j - (j + 1) * y * tj1 / tj if tj > 0 else float("nan")
        ds = (est(1, t1, t2), est(2, t2, t3), est(3, t3, t4))
    # Toy corpora give nan or out-of-range estimates; a discount must lie in [0, j]
    # so that no count goes negative and the mass stays a distribution.
    return tuple(min(max(d if math.isfinite(d) and d > 0 else 0.5, 0.0), j) for j, d in zip((1, 2, 3), ds))


class KneserNey:
    """Interpolated (modified) Kneser-Ney n-gram model over ids ``0..vocab_size-1``.

    ``discounts`` (optional) fixes D per order: {k: (D1, D2, D3+)}, for
    hand-checkable tests; otherwise they are estimated (``discount`` mode).
    """

    def __init__(self, order: int, vocab_size: int, start_id: int = 0, discount: str = "modified",
                 discounts: Optional[dict] = None) -> None:
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"n-gram order must be an integer >= 1, got {order!r}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if discount not in DISCOUNT_MODES:
            raise ValueError(f"discount must be one of {DISCOUNT_MODES}, got {discount!r}")
        self.order, self.vocab_size, self.start_id, self.discount = order, vocab_size, start_id, discount
        self.fixed_discounts = discounts
        self.counts: list[dict] = []   # counts[k][g]: a_k of the k-gram g (tuple)
        self.contexts: list[dict] = []  # contexts[k][h]: (A_k(h), gamma_k(h))
        self.D: list[tuple] = []        # D[k] = (D1, D2, D3+)

    def _pad(self, ids: Sequence[int]) -> list[int]:
        ids = [int(t) for t in ids]
        if not ids or ids[0] != self.start_id:
            raise ValueError(f"each sequence must start with the start token {self.start_id}, got {ids[:3]}")
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary 0..{self.vocab_size - 1}")
        return [self.start_id] * (self.order - 2) + ids if self.order >= 2 else ids[1:]

    def _ngrams(self, ids: Sequence[int]) -> Iterable[tuple]:
        p, n = self._pad(ids), self.order
        # Targets are ids[1:]; in p they sit at n-1.. (order 1: everything in p).
        return (tuple(p[i - n + 1:i + 1]) for i in range(max(n - 1, 0), len(p)))

    def fit(self, sequences: Iterable[Sequence[int]]) -> "KneserNey":
        n = self.order
        raw = Counter(g for s in sequences for g in self._ngrams(s))
        if not raw:
            raise ValueError("no target token to fit the n-gram model on")
        adjusted = {n: raw}
        for k in range(n - 1, 0, -1):
            cont, raw_k = Counter(), Counter()
            for g, c in raw.items():
                cont[g[1:]] += 1
                raw_k[g[1:]] += c
            adjusted[k] = Counter({g: (raw_k[g] if g[0] == self.start_id else cont[g]) for g in raw_k})
            raw = raw_k
        self.counts, self.contexts, self.D = [{}], [{}], [()]
        for k in range(1, n + 1):
            a = adjusted[k]
            if self.fixed_discounts is not None:
                d = tuple(self.fixed_discounts[k])
            else:
                d = _discounts(Counter(a.values()), self.discount)
            stats: dict = {}
            for g, c in a.items():
                s = stats.setdefault(g[:-1], [0, 0.0])
                s[0] += c
                s[1] += d[min(c, 3) - 1]
            self.counts.append(dict(a))
            self.contexts.append({h: (tot, dsum / tot) for h, (tot, dsum) in stats.items()})
            self.D.append(d)
        return self

    def prob(self, word: int, context: Sequence[int]) -> float:
        """p(word | context); ``context`` is the history (start token first or already padded)."""
        if not self.counts:
            raise RuntimeError("fit the model first")
        h = tuple(int(t) for t in context)[-(self.order - 1):] if self.order > 1 else ()
        if len(h) < self.order - 1:
            h = (self.start_id,) * (self.order - 1 - len(h)) + h
        return self._prob(int(word), h)

    def _prob(self, w: int, h: tuple) -> float:
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            hk = h[len(h) - k + 1:] if k > 1 else ()
            st = self.contexts[k].get(hk)
            if st is None:
                continue  # unseen context: the lower order's distribution as it is
            a = self.counts[k].get(hk + (w,), 0)
            d = self.D[k][min(a, 3) - 1] if a else 0.0
            p = (a - d) / st[0] + st[1] * p
        return p

    def target_nll(self, ids: Sequence[int]) -> list[float]:
        """-ln p of each target ``ids[1:]`` of one sequence, in order (nats)."""
        return [-math.log(self._prob(g[-1], g[:-1])) for g in self._ngrams(ids)]

    def score(self, sequences: Iterable[Sequence[int]], per_target: bool = False) -> dict:
        """Total NLL (nats) of every target ``ids[1:]`` of every sequence: {"total_nll", "n_tokens"}.

        With ``per_target`` also "target_nll": each sequence's :meth:`target_nll`
        (the total is their sum, added in the same order either way).
        """
        total, n_tok, per = 0.0, 0, []
        for s in sequences:
            nlls = self.target_nll(s)
            for x in nlls:
                total += x  # == total -= log(p): negation is exact
            n_tok += len(nlls)
            if per_target:
                per.append(nlls)
        out = {"total_nll": total, "n_tokens": n_tok, "loss": total / max(n_tok, 1)}
        if per_target:
            out["target_nll"] = per
        return out


class CharSpeller:
    """Character Kneser-Ney model of how words are spelled, with an end-of-word symbol.

    ids: 0 = start of word (context padding only), 1 = end of word,
    2 = any character not seen in training, 3.. = training characters.
    """

    START, END, OTHER = 0, 1, 2

    def __init__(self, words: Iterable[str], order: int = 5, discount: str = "modified",
                 discounts: Optional[dict] = None) -> None:
        words = [w for w in words if w]
        if not words:
            raise ValueError("the spelling model needs at least one non-empty training word")
        self.alphabet = sorted({c for w in words for c in w})
        self.char_ids = {c: i + 3 for i, c in enumerate(self.alphabet)}
        self.model = KneserNey(order, len(self.alphabet) + 3, self.START, discount, discounts)
        self.model.fit(self.encode(w) for w in words)

    def encode(self, word: str) -> list[int]:
        return [self.START] + [self.char_ids.get(c, self.OTHER) for c in word] + [self.END]

    def cost(self, word: str) -> float:
        """-ln P(word's characters, then end of word), in nats."""
        if not word:
            raise ValueError("cannot spell an empty word")
        return self.model.score([self.encode(word)])["total_nll"]


def training_words(source: str | Path, vocab_report: dict, report_path: str | Path = "vocab_report.json"
                   ) -> list[str]:
    """Word tokens of the training split, re-split from the source text as build_vocab did.

    dialogues.pt keeps only ids (rare words are ``<unk>`` there), so the
    spelling model reads the text; the split's size in characters is checked
    against the report so a different source or split is refused.
    """
    from attnlab.data.shakespeare import split_dialogues, train_val_split
    from attnlab.data.text import read_text
    from attnlab.data.tokenizer import word_tokenize

    checks = {"val_fraction": ("a number in [0, 1)", lambda v: isinstance(v, (int, float)) and 0 <= v < 1),
              "seed": ("an integer", lambda v: isinstance(v, int)),
              "train_chars": ("an integer >= 0", lambda v: isinstance(v, int) and v >= 0)}
    for key, (want, ok) in checks.items():
        value = vocab_report.get(key)
        if isinstance(value, bool) or not ok(value):
            raise DataError(f"{report_path}: {key!r} must be {want}, got {value!r:.80}; rebuild it with "
                            f"`python -m attnlab.data build-vocab`")
    train, _ = train_val_split(split_dialogues(read_text(source, "the tiny-shakespeare text build_vocab read")),
                               vocab_report["val_fraction"], vocab_report["seed"])
    n_chars = sum(map(len, train))
    if n_chars != vocab_report["train_chars"]:
        raise DataError(f"{source} split with val_fraction {vocab_report['val_fraction']}, seed "
                        f"{vocab_report['seed']} gives {n_chars} training characters, but build_vocab saw "
                        f"{vocab_report['train_chars']}: it is not the text the vocabulary was built from")
    return [t for d in train for t in word_tokenize(d)]


def fit_speller(source: str | Path, vocab_report_path: str | Path, char_order: int,
                discount: str = "modified") -> CharSpeller:
    """The spelling model of the open-vocabulary figure: fit on the training split's distinct words."""
    from attnlab.data.text import read_json

    report = read_json(vocab_report_path, "a vocab_report.json written by `python -m attnlab.data build-vocab`")
    return CharSpeller(sorted(set(training_words(source, report, vocab_report_path))), char_order, discount)


def spelling_nll(words: Iterable[str], tok, speller: CharSpeller) -> tuple[float, int]:
    """(sum of spelling costs in nats, count) over the words ``tok`` maps to ``<unk>``."""
    total, n = 0.0, 0
    for w in words:
        if w not in tok.stoi:
            total += speller.cost(w)
            n += 1
    return total, n


def summarize(total_nll: float, n_tokens: int, n_chars: int, spell_nll: Optional[float] = None) -> dict:
    """Perplexity and bits/char of a total NLL; with ``spell_nll`` also the open-vocabulary bits/char."""
    out = {"loss": total_nll / max(n_tokens, 1), "perplexity": math.exp(min(total_nll / max(n_tokens, 1), 700.0)),
           "bits_per_char": total_nll / math.log(2) / max(n_chars, 1)}
    if spell_nll is not None:
        out["bits_per_char_open"] = (total_nll + spell_nll) / math.log(2) / max(n_chars, 1)
    return out


def resolve_config(user: Optional[dict]) -> dict:
    from attnlab import config as cfgmod

    return cfgmod.resolve(defaults("gpt")["baseline"], user, "gpt.baseline")  # the schema checks the values


def checked_dialogues(data_path: str | Path) -> dict:
    """dialogues.pt, checked by :func:`attnlab.gpt.data.load_data`; its splits as lists of int lists."""
    from attnlab.gpt.data import load_data

    data = load_data(data_path)
    return {**{k: data[k] for k in ("vocab_size", "start_id", "unk_id", "val_chars")},
            "vocab_digest": data.get("vocab_digest"),
            "train": [s.tolist() for s in data["train"]], "val": [s.tolist() for s in data["val"]]}


def run(data_path: str | Path, vocab_report_path: str | Path, source: str | Path, val_text: str | Path,
        vocab_path: str | Path, cfg: Optional[dict] = None, log=None) -> dict:
    """ngram.json's content: every order on the validation split, and the order chosen by it."""
    from attnlab.data.shakespeare import split_dialogues
    from attnlab.data.text import read_text
    from attnlab.data.tokenizer import word_tokenize
    from attnlab.gpt.data import load_tokenizer

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfg = resolve_config(cfg)
    data = checked_dialogues(data_path)
    tok = load_tokenizer(vocab_path, data["vocab_size"], data["vocab_digest"], f"{data_path}")
    t0 = time.perf_counter()
    speller = fit_speller(source, vocab_report_path, cfg["char_order"], cfg["discount"])
    val_text_content = read_text(val_text, "the val.txt written by build_vocab")
    val_words = [t for d in split_dialogues(val_text_content) for t in word_tokenize(d)]
    spell, n_spelled = spelling_nll(val_words, tok, speller)
    train_ids, val_ids = data["train"], data["val"]
    n_unk = sum(s[1:].count(data["unk_id"]) for s in val_ids)
    if n_unk != n_spelled:
        raise DataError(f"{val_text} has {n_spelled} out-of-vocabulary words but dialogues.pt's validation "
                        f"split has {n_unk} <unk> targets: they are not the same text")
    orders = {}
    for n in cfg["orders"]:
        t = time.perf_counter()
        kn = KneserNey(n, data["vocab_size"], data["start_id"], cfg["discount"]).fit(train_ids)
        s = kn.score(val_ids)
        orders[str(n)] = {**summarize(s["total_nll"], s["n_tokens"], data["val_chars"], spell),
                          "n_tokens": s["n_tokens"], "discounts": [list(d) for d in kn.D[1:]],
                          "seconds": time.perf_counter() - t}
        log(f"[ngram] order {n}: perplexity {orders[str(n)]['perplexity']:.1f}, "
            f"{orders[str(n)]['bits_per_char']:.4f} bits/char ({orders[str(n)]['seconds']:.1f}s)")
    best = min(orders, key=lambda k: orders[k]["loss"])
    return {"best_order": int(best), "best": orders[best], "orders": orders, "config": cfg,
            "n_chars": data["val_chars"], "n_unk": n_unk, "spell_nll": spell,
            "char_alphabet": len(speller.alphabet), "seconds": time.perf_counter() - t0}


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    from attnlab import config as cfgmod
    from attnlab.io import write_json

    p = stage_parser("attnlab.gpt.ngram", __doc__, "dialogues", "vocab")
    p.add_argument("--vocab-report", required=True, help="vocab_report.json (the split's seed and fraction)")
    p.add_argument("--source", required=True, help="the tiny-shakespeare text build_vocab read")
    p.add_argument("--val-text", required=True, help="val.txt written by build_vocab")
    p.add_argument("--config", default=None, help="gpt.baseline (YAML/JSON)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    result = run(args.data, args.vocab_report, args.source, args.val_text, args.vocab,
                 cfgmod.load_config_file(args.config))
    write_json(args.out, result)
    b = result["best"]
    print(f"best order {result['best_order']}: perplexity {b['perplexity']:.1f}, {b['bits_per_char']:.4f} "
          f"bits/char, open vocabulary {b['bits_per_char_open']:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
