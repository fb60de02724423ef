"""MyTokenizer: NLTK word_tokenize semantics without NLTK data, vocabulary rules, JSON round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from attnlab import MyTokenizer
from attnlab.data import tokenizer as tokenizer_module


def test_sentence_period_is_split_off():
    tokens = MyTokenizer([]).tokenize("hear me speak. We know't")
    assert tokens == ["hear", "me", "speak", ".", "We", "know't"]


def test_matches_treebank_rules_written_out_by_hand():
    # What nltk.word_tokenize gives with the pretrained punkt model (reference values from NLTK's
    # documented Treebank conventions): clitics split, "cannot" split, quotes converted.
    text = 'First Citizen:\nYou are all resolved rather to die than to famish? I cannot; he\'s "mad".'
    assert MyTokenizer([]).tokenize(text) == [
        "First", "Citizen", ":", "You", "are", "all", "resolved", "rather", "to", "die", "than", "to", "famish",
        "?", "I", "can", "not", ";", "he", "'s", "``", "mad", "''", "."]


def test_same_tokens_as_nltk_word_tokenize_with_a_trained_punkt():
    # Independent reference: NLTK's own word_tokenize, handing it a Punkt splitter trained on text
    # in place of the downloadable model (Punkt is unsupervised), compared on sentences without
    # abbreviations (where an untrained and a trained Punkt agree).
    nltk_tokenize = pytest.importorskip("nltk.tokenize")
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    sample = ("MENENIUS:\nWhy, masters, my good friends, mine honest neighbours, will you undo yourselves? "
              "We cannot. They say poor suitors have strong breaths: they shall know we have strong arms too!\n"
              "O, 'tis a word! Let's go -- and come again... ")
    trained = PunktSentenceTokenizer(sample * 3)
    reference = [t for s in trained.tokenize(sample) for t in nltk_tokenize.NLTKWordTokenizer().tokenize(s)]
    assert MyTokenizer([]).tokenize(sample) == reference


def test_build_encode_decode_and_unk():
    dialogues = ["A:\nthe cat sat.", "B:\nthe dog sat!", "A:\nthe cat ran."]
    tok = MyTokenizer.build(dialogues, min_freq=2)
    # by hand: counts the 3, A 2, : 3, cat 2, sat 2, . 2 ; once: B, dog, !, ran
    assert tok.itos == ["<start>", "<pad>", "<unk>", ":", "the", ".", "A", "cat", "sat"]
    assert (tok.start_id, tok.pad_id, tok.unk_id, len(tok)) == (0, 1, 2, 9)
    ids = tok.encode("A:\nthe dog sat.")
    assert ids == [0, 6, 3, 4, 2, 8, 5]  # start first, "dog" -> unk
    assert tok.decode(ids) == "<start> A : the <unk> sat ."
    assert tok.decode(ids, skip_special=True) == "A : the sat ."
    assert tok.decode([4, 1, 1]) == "the <pad> <pad>"


def test_max_size_keeps_most_frequent_with_deterministic_ties():
    dialogues = ["b a c", "a b c d"]  # a, b, c twice; d once
    tok = MyTokenizer.build(dialogues, max_size=5)  # 3 specials + 2 words
    assert tok.itos[3:] == ["a", "b"]  # a, b, c tie at 2: broken by the token string
    assert MyTokenizer.build(list(reversed(dialogues)), max_size=5).itos == tok.itos
    assert MyTokenizer.build(dialogues).itos[3:] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="max_size"):
        MyTokenizer.build(dialogues, max_size=2)


def test_json_round_trip(tmp_path):
    tok = MyTokenizer.build(["ROMEO:\nBut, soft! what light through yonder window breaks?"], min_freq=1)
    path = tmp_path / "vocab.json"
    tok.save(path)
    loaded = MyTokenizer.load(path)
    assert loaded.itos == tok.itos and len(loaded) == len(tok)
    assert (loaded.start_id, loaded.pad_id, loaded.unk_id) == (tok.start_id, tok.pad_id, tok.unk_id)
    text = "But soft, what light? JULIET:"
    assert loaded.encode(text) == tok.encode(text)
    data = json.loads(path.read_text())
    assert data["itos"][:3] == ["<start>", "<pad>", "<unk>"] and data["vocab_size"] == len(tok)
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a MyTokenizer vocabulary"):
        MyTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="build-vocab"):
        MyTokenizer.load(tmp_path / "none.json")


def test_works_with_no_nltk_data_anywhere(tmp_path):
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    code = textwrap.dedent("""
        import nltk, json
        # NLTK_DATA and HOME point at empty folders; also drop system-wide locations
        # (/usr/share/nltk_data, ...) so that no punkt model can be found at all.
        nltk.data.path[:] = [p for p in nltk.data.path if p.startswith(%r)]
        from attnlab import MyTokenizer
        try:
            nltk.word_tokenize("x. Y")
            has_punkt = True
        except LookupError:
            has_punkt = False
        tok = MyTokenizer.build(["All:\\nSpeak, speak."])
        print(json.dumps({"has_punkt": has_punkt, "tokens": tok.tokenize("hear me speak. We know't"),
                          "ids": tok.encode("Speak, speak.")}))
    """ % str(tmp_path))
    env = {**os.environ, "NLTK_DATA": str(empty), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["has_punkt"] is False  # proves no punkt data was reachable in the subprocess
    assert result["tokens"] == ["hear", "me", "speak", ".", "We", "know't"]
    assert result["ids"][0] == 0 and 2 not in result["ids"]


def test_regex_fallback_without_nltk(monkeypatch):
    text = "hear me speak. We know't; I'll go -- cannot, don't!"
    reference = MyTokenizer([]).tokenize(text)  # with nltk, before hiding it
    monkeypatch.setitem(sys.modules, "nltk", None)  # makes `import nltk...` raise ImportError
    monkeypatch.setitem(sys.modules, "nltk.tokenize", None)
    monkeypatch.setitem(sys.modules, "nltk.tokenize.destructive", None)
    monkeypatch.setitem(sys.modules, "nltk.tokenize.punkt", None)
    monkeypatch.setattr(tokenizer_module, "_nltk_tokenizers", None)
    monkeypatch.setattr(tokenizer_module, "_warned", False)
    tok = MyTokenizer([])
    with pytest.warns(RuntimeWarning, match="nltk is not installed"):
        tokens = tok.tokenize(text)
    assert tokens == reference == ["hear", "me", "speak", ".", "We", "know't", ";", "I", "'ll", "go", "--", "can", "not", ",",
                      "do", "n't", "!"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        tok.tokenize("again.")
