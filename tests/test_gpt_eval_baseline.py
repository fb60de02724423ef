"""ngram_gpt's CLI and evaluate's model-beside-baseline numbers, on a small synthetic tiny-shakespeare text."""

import json
import math
import random

import pytest
import torch

from attnlab.data import DataError
from attnlab.data.vocab import build_vocab
from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt import ngram
from attnlab.gpt.model import DialogueGPT
from test_gpt_train import fake_dialogues


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("ngramdata")
    rng = random.Random(5)
    dialogues = fake_dialogues(120, 3)
    # rare made-up words: seen once or never, so validation has <unk> targets to spell
    dialogues = [x[:-1] + " " + "".join(rng.choice("aeioubdklmnrst") for _ in range(rng.randint(3, 9))) + "."
                 if i % 3 == 0 else x for i, x in enumerate(dialogues)]
    source = d / "input.txt"
    source.write_text("\n\n".join(dialogues) + "\n")
    out = d / "data"
    build_vocab(source, None, {"val_fraction": 0.2, "seed": 1, "min_freq": 2, "max_size": None}, out,
                stream=open("/dev/null", "w"))
    assert ngram.main(["--data", str(out / "dialogues.pt"), "--vocab", str(out / "vocab.json"),
                       "--vocab-report", str(out / "vocab_report.json"), "--source", str(source),
                       "--val-text", str(out / "val.txt"), "--out", str(d / "ngram.json")]) == 0
    data = torch.load(out / "dialogues.pt", weights_only=True)
    torch.manual_seed(0)
    cfg = {"vocab_size": data["vocab_size"], "d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 32,
           "dropout": 0.0, "pad_id": data["pad_id"], "tie_weights": True}
    torch.save({"model_config": cfg, "state_dict": DialogueGPT(**cfg).state_dict(), "epoch": 0}, d / "ckpt.pt")
    return d, out, source, data


def test_ngram_json_chooses_the_best_order_on_every_target(built):
    d, out, _, data = built
    res = json.loads((d / "ngram.json").read_text())
    assert sorted(res["orders"]) == ["2", "3", "4", "5"]
    assert res["best_order"] == min((int(k) for k in res["orders"]), key=lambda k: res["orders"][str(k)]["loss"])
    n_targets = sum(len(s) - 1 for s in data["val"])
    assert all(o["n_tokens"] == n_targets for o in res["orders"].values())
    assert res["n_unk"] == sum(int((s[1:] == data["unk_id"]).sum()) for s in data["val"]) > 0


def test_evaluate_scores_model_and_baseline_on_the_same_targets(built):
    d, out, source, data = built
    files = {"ngram": d / "ngram.json", "data": out / "dialogues.pt", "vocab_report": out / "vocab_report.json",
             "source": source}
    plain = gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu")
    res = gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu", baseline=files)
    assert res["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-12)  # the model's numbers are unchanged
    b = res["baseline"]
    chosen = json.loads((d / "ngram.json").read_text())
    assert b["order"] == chosen["best_order"] and b["n_tokens"] == res["n_tokens"]
    # on val.txt (the validation split) the baseline's numbers are ngram.json's for that order
    assert b["val_perplexity"] == pytest.approx(chosen["best"]["perplexity"], rel=1e-12)
    assert b["val_bits_per_char_open"] == pytest.approx(chosen["best"]["bits_per_char_open"], rel=1e-12)
    assert {n: o["val_perplexity"] for n, o in b["orders_on_validation"].items()} == pytest.approx(
        {n: o["perplexity"] for n, o in chosen["orders"].items()}, rel=1e-12)
    assert res["perplexity_ratio"] == pytest.approx(math.exp(res["val_loss"] - b["val_loss"]), rel=1e-12)
    # open vocabulary: the word model's total NLL plus each <unk> word's spelling, per character
    total = res["val_loss"] * res["n_tokens"]
    spell = chosen["spell_nll"]
    assert res["val_bits_per_char_open"] == pytest.approx((total + spell) / math.log(2) / res["n_chars"], rel=1e-9)
    assert res["val_bits_per_char_open"] > res["val_bits_per_char"]
    assert res["spell_bits_per_unk"] == pytest.approx(spell / math.log(2) / chosen["n_unk"], rel=1e-12)


def test_a_different_source_text_is_refused(built, tmp_path):
    d, out, source, _ = built
    other = tmp_path / "other.txt"
    other.write_text(source.read_text().replace("love", "lov"))
    with pytest.raises(DataError, match="not the text the vocabulary was built from"):
        gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu",
                          baseline={"ngram": d / "ngram.json", "data": out / "dialogues.pt",
                                    "vocab_report": out / "vocab_report.json", "source": other})
