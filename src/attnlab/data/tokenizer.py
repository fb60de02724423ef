"""Word-level tokenizer of the starter code (Problem 4a): NLTK word_tokenize without any NLTK data.

``nltk.word_tokenize`` sentence-splits with the pretrained Punkt model (the
``punkt_tab`` download) and then runs NLTK's improved Treebank tokenizer on
each sentence. Punkt is unsupervised: an untrained ``PunktSentenceTokenizer``
needs no data and still ends sentences at ``. ? !`` followed by a capital,
which is what matters here, so "hear me speak. We know't" gives ``speak``,
``.``, ``We``. (``word_tokenize(..., preserve_line=True)`` would skip sentence
splitting and leave ``speak.`` as one token.) The one difference from the
pretrained model: abbreviations it knows ("Mr.") are split off too.

nltk is imported lazily inside ``tokenize``, so loading a saved vocabulary,
encoding prompts and decoding work on a machine with torch alone: without
nltk, ``tokenize`` falls back to a regex approximation and warns once.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from attnlab.data import DataError
from attnlab.data.text import read_json
from attnlab.io import write_json

FORMAT = "attnlab-word-tokenizer"
START, PAD, UNK = "<start>", "<pad>", "<unk>"

_nltk_tokenizers = None  # (sentence splitter, word tokenizer), built on first use
_warned = False

# Fallback without nltk, following the Treebank rules that matter for this text:
# "cannot" -> can not; clitics 's 'm 'd 'll 're 've and n't split off; hyphens and
# other apostrophes stay inside words; "--" and "..." kept whole; any other
# punctuation one character per token.
_FALLBACK = re.compile(
    r"""\b(?:can(?=not\b)|\w+?(?=n't\b)|\w+(?:[-']\w+)*?(?=(?:'s|'m|'d|'ll|'re|'ve)\b))
    |n't\b|'(?:s|m|d|ll|re|ve|t)\b
    |\w+(?:[-']\w+)*
    |--|\.\.\.|[^\w\s]""",
    re.IGNORECASE | re.VERBOSE,
)


def _nltk():
    global _nltk_tokenizers
    if _nltk_tokenizers is None:
        from nltk.tokenize.destructive import NLTKWordTokenizer  # the tokenizer word_tokenize uses
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        _nltk_tokenizers = (PunktSentenceTokenizer(), NLTKWordTokenizer())
    return _nltk_tokenizers


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` with an untrained Punkt splitter (no downloads needed)."""
    global _warned
    try:
        sentences, words = _nltk()
    except ImportError:
        if not _warned:
            warnings.warn("nltk is not installed; MyTokenizer falls back to a regex tokenizer that approximates "
                          "NLTK's word_tokenize (install nltk for identical tokens)", RuntimeWarning, stacklevel=3)
            _warned = True
        return _FALLBACK.findall(text)
    return [tok for sent in sentences.tokenize(text) for tok in words.tokenize(sent)]


class MyTokenizer:
    """Maps text to word ids and back; three special tokens: start, pad, unk.

    ids: 0 = start, 1 = pad, 2 = unk, then the vocabulary, most frequent first.
    """

    def __init__(self, tokens: Sequence[str], start_token: str = START, pad_token: str = PAD,
                 unk_token: str = UNK, meta: dict | None = None) -> None:
        specials = [start_token, pad_token, unk_token]
        if len(set(specials)) != 3:
            raise ValueError(f"special tokens must differ, got {specials}")
        self.itos: list[str] = specials + [t for t in tokens if t not in specials]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        self.start_token, self.pad_token, self.unk_token = specials
        self.start_id, self.pad_id, self.unk_id = 0, 1, 2
        self.meta = dict(meta or {})

    # ----------------------------------------------------------------- building

    @classmethod
    def build(cls, dialogues: Iterable[str], min_freq: int = 1, max_size: int | None = None,
              tokenized: Iterable[Sequence[str]] | None = None) -> "MyTokenizer":
        """Vocabulary from ``dialogues`` (the training split only): tokens seen >= ``min_freq`` times.

        ``max_size`` caps ``len(tokenizer)`` (specials included) by keeping the
        most frequent tokens; ties are broken by the token string so the result
        never depends on dict order. ``tokenized`` passes pre-tokenized dialogues
        (then ``dialogues`` is ignored), to avoid tokenizing twice.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 3:
            raise ValueError(f"max_size must be >= 3 (the special tokens), got {max_size}")
        token_lists = tokenized if tokenized is not None else (word_tokenize(d) for d in dialogues)
        counts = Counter(tok for toks in token_lists for tok in toks)
        for special in (START, PAD, UNK):
            counts.pop(special, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 3]
        return cls(kept, meta={"min_freq": min_freq, "max_size": max_size})

    # ----------------------------------------------------------------- encode / decode

    def tokenize(self, text: str) -> list[str]:
        return word_tokenize(text)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with the start id first; unseen words map to the unk id."""
        return [self.start_id] + self.convert_tokens_to_ids(self.tokenize(text))

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Tokens of ``ids`` joined by one space (special tokens kept unless ``skip_special``)."""
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i > self.unk_id]
        return " ".join(self.itos[i] for i in ids)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"MyTokenizer(vocab_size={len(self)})"

    # ----------------------------------------------------------------- persistence

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "tokenizer": "nltk word_tokenize (untrained Punkt + NLTKWordTokenizer)",
            "special_tokens": {"start": self.start_token, "pad": self.pad_token, "unk": self.unk_token},
            "special_ids": {"start": self.start_id, "pad": self.pad_id, "unk": self.unk_id},
            **self.meta,
            "vocab_size": len(self),
            "itos": self.itos,
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MyTokenizer":
        """The tokenizer saved at ``path``; a file that is not one is a :class:`VocabularyError` naming the fault."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"vocabulary {path} does not exist; run the build_vocab stage "
                                    f"(python -m attnlab.data build-vocab ...)")
        try:
            data = read_json(path, "a vocab.json written by `python -m attnlab.data build-vocab`")
        except DataError as err:
            raise VocabularyError(str(err)) from err
        return cls(*_checked_fields(data, path))


class VocabularyError(DataError, ValueError):
    """A vocab.json that is not a saved MyTokenizer (also a ValueError, what it was before)."""


def _checked_fields(data: dict, path: Path) -> tuple:
    """(tokens, start, pad, unk, meta) of a loaded vocab.json, every field checked."""
    def bad(what: str) -> VocabularyError:
        return VocabularyError(f"{path} is not a MyTokenizer vocabulary: {what}; rebuild it with "
                               f"`python -m attnlab.data build-vocab`")

    if data.get("format") != FORMAT:
        raise bad(f"its format is {data.get('format')!r}, not {FORMAT!r}")
    missing = [k for k in ("special_tokens", "itos") if k not in data]
    if missing:
        raise bad(f"it lacks {missing}")
    sp, itos = data["special_tokens"], data["itos"]
    if not isinstance(sp, dict) or sorted(sp) != ["pad", "start", "unk"] or not all(
            isinstance(v, str) for v in sp.values()):
        raise bad(f"special_tokens must map exactly start, pad and unk to strings, got {sp!r:.120}")
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise bad("itos must be a list of strings")
    specials = [sp["start"], sp["pad"], sp["unk"]]
    if itos[:3] != specials:
        raise bad(f"the first three tokens must be the special tokens {specials}, got {itos[:3]}")
    seen: set[str] = set()
    for i, t in enumerate(itos):
        if t in seen:
            raise bad(f"the token {t!r} appears twice (again at id {i})")
        seen.add(t)
    ids = data.get("special_ids", {"start": 0, "pad": 1, "unk": 2})
    if ids != {"start": 0, "pad": 1, "unk": 2}:
        raise bad(f"special_ids must be start 0, pad 1, unk 2, got {ids!r:.120}")
    if "vocab_size" in data and data["vocab_size"] != len(itos):
        raise bad(f"vocab_size says {data['vocab_size']!r} but itos holds {len(itos)} tokens")
    meta = {k: data[k] for k in ("min_freq", "max_size") if k in data}
    return itos[3:], sp["start"], sp["pad"], sp["unk"], meta
