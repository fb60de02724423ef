"""Trainer, resume, evaluator and generation CLI of DialogueGPT on a tiny synthetic corpus."""

import json
import math
import random

import pandas as pd
import pytest
import torch

from conftest import fake_clock
from attnlab.data.tokenizer import MyTokenizer
from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt import generate as gpt_gen
from attnlab.gpt import train as gpt_train
from attnlab.gpt.model import load_checkpoint
from attnlab.checkpoint import CheckpointError
from attnlab.config import ConfigError
from attnlab.data.dialogues import collate_batch
from attnlab.gpt.scoring import bucketed_batches, training_chunks, windows
from attnlab.training import DivergenceError

SPEAKERS = ["ROMEO", "JULIET", "First Citizen"]
WORDS = "the love of my lord is fair and true , but night comes soon ; what say you ? good".split()


def fake_dialogues(n, seed):
    """Learnable text: each word is usually followed by the next one of WORDS."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(len(WORDS))
        words = []
        for _ in range(rng.randint(2, 14)):
            words.append(WORDS[i])
            i = (i + 1) % len(WORDS) if rng.random() < 0.9 else rng.randrange(len(WORDS))
        out.append(f"{rng.choice(SPEAKERS)}:\n{' '.join(words)}.")
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("gptdata")
    train, val = fake_dialogues(48, 0), fake_dialogues(10, 1)
    val.append("ROMEO:\n" + " ".join(["unseenword", "love"] * 20) + ".")  # longer than max_len, has unks
    tok = MyTokenizer.build(train)
    tok.save(d / "vocab.json")
    enc = [torch.tensor(tok.encode(x)) for x in train], [torch.tensor(tok.encode(x)) for x in val]
    torch.save({"train": enc[0], "val": enc[1], "train_chars": sum(map(len, train)),
                "val_chars": sum(map(len, val)), "start_id": tok.start_id, "pad_id": tok.pad_id,
                "unk_id": tok.unk_id, "vocab_size": len(tok)}, d / "dialogues.pt")
    (d / "val.txt").write_text("\n\n".join(val) + "\n")
    return d, tok, val


CFG = {
    "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 24, "dropout": 0.1},
    # word dropout and the EMA pinned off: each has its own tests, apart from the preset's defaults
    "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "sample_tokens": 5,
              "word_dropout": 0.0, "ema_decay": None,
              "device": "cpu", "num_threads": 1, "prompts": ["ROMEO:", "JULIET:"]},
    "generate": {"prompts": ["ROMEO:", "First Citizen:"], "num_tokens": 7, "bench_tokens": 30},
}


def run_train(corpus, out, cfg=CFG):
    d = corpus[0]
    return gpt_train.train(cfg, d / "dialogues.pt", d / "vocab.json", out, log=lambda m: None)


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, run_train(corpus, out)


def test_outputs_follow_formats(straight):
    out, summary = straight
    m = pd.read_csv(out / "metrics.csv")
    assert list(m.columns) == ["epoch", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char",
                               "unk_rate", "lr", "seconds", "val_seconds", "tokens_per_s"]
    assert m["epoch"].tolist() == [1, 2]
    assert m["val_perplexity"].tolist() == pytest.approx([math.exp(v) for v in m["val_loss"]])
    assert 0 < m["unk_rate"].iloc[0] < 1  # the unseen word in the long validation dialogue
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [(s["epoch"], s["prompt"]) for s in lines] == [(1, "ROMEO:"), (1, "JULIET:"),
                                                            (2, "ROMEO:"), (2, "JULIET:")]
    assert all(s["text"].startswith(s["prompt"].replace(":", " :")) for s in lines)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for key in ("device", "hardware", "n_params", "epochs", "train_seconds", "digests",
                "final_val_bits_per_char"):
        assert key in summary
    assert summary["finished"] and (summary["kept_epoch"], summary["weights"]) == (2, "raw")
    assert json.loads((out / "train_summary.json").read_text())["epochs"] == 2
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and set(ckpt) >= {"model_config", "state_dict", "config", "epoch"}


def test_training_lowers_the_loss(corpus, tmp_path):
    cfg = json.loads(json.dumps(CFG))
    cfg["train"].update(epochs=8, lr=1e-2)
    run_train(corpus, tmp_path, cfg)
    m = pd.read_csv(tmp_path / "metrics.csv")
    vocab = len(corpus[1])
    assert m["train_loss"].iloc[0] < math.log(vocab) + 0.5  # starts near uniform
    assert m["train_loss"].iloc[-1] < m["train_loss"].iloc[0] - 0.5
    assert m["val_loss"].iloc[-1] < m["val_loss"].iloc[0]


@pytest.mark.parametrize("word_dropout", [0.0, 0.3])
def test_interrupted_run_resumes_to_identical_weights_and_metrics(corpus, straight, tmp_path, word_dropout):
    cfg = json.loads(json.dumps(CFG))
    cfg["train"]["word_dropout"] = word_dropout
    ref = straight[0]
    if word_dropout:  # its own uninterrupted run, which word dropout really changed
        ref = tmp_path / "straight"
        run_train(corpus, ref, cfg)
        assert not pd.read_csv(ref / "metrics.csv")["train_loss"].equals(
            pd.read_csv(straight[0] / "metrics.csv")["train_loss"])
    out = tmp_path / "run"
    first = gpt_train.train(cfg, corpus[0] / "dialogues.pt", corpus[0] / "vocab.json", out, stop_after_epochs=1,
                            log=lambda m: None)
    assert (first["finished"], first["epochs"]) == (False, 1)
    assert sorted(p.name for p in out.iterdir()) == ["resume"]  # outputs only once training has ended
    logs = []
    gpt_train.train(cfg, corpus[0] / "dialogues.pt", corpus[0] / "vocab.json", out, log=logs.append)
    epochs_run = [m.split(":")[0] for m in logs if m.startswith("[gpt] epoch")]
    assert epochs_run == ["[gpt] epoch 2"]  # really resumed: epoch 1 was not trained again
    assert any("resuming" in m for m in logs)
    a, b = pd.read_csv(ref / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    cols = ["epoch", "train_loss", "val_loss", "val_bits_per_char", "unk_rate", "lr"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    sa = load_checkpoint(ref / "checkpoint.pt")[1]["state_dict"]
    sb = load_checkpoint(out / "checkpoint.pt")[1]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (ref / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()


def test_word_dropout_corrupts_the_inputs_but_the_loss_keeps_the_real_targets(corpus, tmp_path, monkeypatch):
    """With p ~ 1 the first step's loss is, by hand, the cross-entropy of the model fed the start token
    and <unk>s, against the original words of the same batch."""
    d, tok, _ = corpus
    first = {}

    class Recording(gpt_train.DialogueGPT):
        def forward(self, input_ids, input_mask=None, *args, **kwargs):
            if self.training and "inputs" not in first:
                first["inputs"] = input_ids.clone()
                first["weights"] = {k: v.clone() for k, v in self.state_dict().items()}
            return super().forward(input_ids, input_mask, *args, **kwargs)

    class RecordingLoss(gpt_train.DialogueLoss):
        def forward(self, logits, input_ids, input_mask=None):
            loss = super().forward(logits, input_ids, input_mask)
            if "loss" not in first:
                first["loss"] = (float(loss.detach()), input_ids.clone())
            return loss

    monkeypatch.setattr(gpt_train, "DialogueGPT", Recording)
    monkeypatch.setattr(gpt_train, "DialogueLoss", RecordingLoss)
    cfg = json.loads(json.dumps(CFG))
    cfg["model"]["dropout"] = 0.0  # a deterministic forward pass, to redo by hand
    cfg["train"].update(epochs=1, word_dropout=0.999999)
    run_train(corpus, tmp_path, cfg)

    # The first batch, rebuilt from the data as the trainer orders it (seed 0, epoch 1).
    data = torch.load(d / "dialogues.pt", weights_only=True)
    chunks = training_chunks(data["train"], cfg["model"]["max_len"])
    idx = bucketed_batches([len(c) for c in chunks], 8, torch.Generator().manual_seed(0 * 1000 + 1))[0]
    batch = collate_batch([chunks[i] for i in idx], tok.pad_id)
    ids, mask = batch["input_ids"], batch["input_mask"]
    assert (ids[:, 1:][mask[:, 1:].bool()] != tok.unk_id).float().mean() > 0.9  # mostly real words to lose

    expected_inputs = ids.clone()
    expected_inputs[:, 1:][mask[:, 1:].bool()] = tok.unk_id  # start token and padding kept
    assert torch.equal(first["inputs"], expected_inputs)
    loss, targets = first["loss"]
    assert torch.equal(targets, ids)

    model, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    model.load_state_dict(first["weights"])
    with torch.no_grad():
        logp = torch.log_softmax(model(expected_inputs, mask).double(), dim=-1)
    keep = mask[:, 1:].bool()
    nll_real = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0][keep]
    nll_noisy = -logp[:, :-1].gather(-1, expected_inputs[:, 1:, None])[..., 0][keep]
    assert loss == pytest.approx(float(nll_real.mean()), rel=1e-5)
    assert abs(loss - float(nll_noisy.mean())) > 0.1  # the check tells the two targets apart


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_word_dropout_outside_0_1_is_refused(corpus, tmp_path, p):
    with pytest.raises(ConfigError, match="gpt.train.word_dropout"):
        run_train(corpus, tmp_path, {"train": {"word_dropout": p}})
    assert not tmp_path.joinpath("resume").exists()  # before any step


def test_resume_state_from_another_config_is_refused(corpus, tmp_path):
    gpt_train.train(CFG, corpus[0] / "dialogues.pt", corpus[0] / "vocab.json", tmp_path, stop_after_epochs=1,
                    log=lambda m: None)
    assert (tmp_path / "resume" / "state.pt").exists()
    other = json.loads(json.dumps(CFG))
    other["train"]["lr"] = 1e-3
    with pytest.raises(CheckpointError, match="config digest .*, but this run has config digest .*; delete"):
        run_train(corpus, tmp_path, other)


def test_nan_loss_stops_with_clear_error(corpus, tmp_path, monkeypatch):
    class NanLoss(gpt_train.DialogueLoss):
        def forward(self, *a):
            return super().forward(*a) * float("nan")

    monkeypatch.setattr(gpt_train, "DialogueLoss", NanLoss)
    with pytest.raises(DivergenceError, match=r"lower gpt.train.lr \(now .*\) or lower gpt.train.grad_clip \(now 1.0\)"):
        run_train(corpus, tmp_path)


def test_unknown_config_key_is_refused(corpus, tmp_path):
    from attnlab.config import ConfigError

    with pytest.raises(ConfigError, match="gpt.train.lrr"):
        run_train(corpus, tmp_path, {"train": {"lrr": 1}})


@torch.no_grad()
def test_evaluate_matches_hand_computation(corpus, straight, tmp_path):
    d, tok, val = corpus
    model, _ = load_checkpoint(straight[0] / "checkpoint.pt")
    assert gpt_eval.main(["--checkpoint", str(straight[0] / "checkpoint.pt"), "--vocab", str(d / "vocab.json"),
                          "--text", str(d / "val.txt"), "--out", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    total, n, n_unk = 0.0, 0, 0
    for text in val[:-1]:  # the short dialogues: one forward pass each, every target counted
        ids = tok.encode(text)
        logp = torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)
        for i in range(len(ids) - 1):
            total -= float(logp[i, ids[i + 1]])
            n += 1
            n_unk += ids[i + 1] == tok.unk_id
    long_ids = tok.encode(val[-1])
    assert len(long_ids) > model.max_len
    # the long one: each target exactly once, predicted from the window that scores it
    for win, skip in windows(long_ids, model.max_len):
        logp = torch.log_softmax(model(torch.tensor([win]))[0].double(), dim=-1)
        for i in range(skip, len(win) - 1):
            total -= float(logp[i, win[i + 1]])
            n += 1
            n_unk += win[i + 1] == tok.unk_id
    n_chars = sum(len(v) for v in val)
    assert res["n_tokens"] == n == sum(len(tok.encode(v)) - 1 for v in val)
    assert res["val_loss"] == pytest.approx(total / n, rel=1e-5)
    assert res["val_bits_per_char"] == pytest.approx(total / math.log(2) / n_chars, rel=1e-5)
    assert res["unk_rate"] == pytest.approx(n_unk / n) and n_unk > 0
    assert res["n_chars"] == n_chars and res["source"].endswith("val.txt")
    # the trainer's last validation used the same scorer on the same dialogues
    last = pd.read_csv(straight[0] / "metrics.csv").iloc[-1]
    assert last["val_loss"] == pytest.approx(res["val_loss"], rel=1e-6)


@pytest.mark.parametrize("n,max_len,stride", [(5, 8, None), (8, 8, None), (9, 8, None), (50, 8, None),
                                              (50, 8, 7), (50, 8, 1), (33, 10, 3)])
def test_windows_score_every_target_once_with_context(n, max_len, stride):
    ids = list(range(100, 100 + n))
    scored = []
    for win, skip in windows(ids, max_len, stride):
        assert 2 <= len(win) <= max_len and win == ids[win[0] - 100:win[0] - 100 + len(win)]
        new = win[skip + 1:]
        if scored:  # later windows keep at least max_len - stride tokens of context
            assert skip + 1 >= min(max_len - (stride or max_len // 2), win[0] - 100 + skip + 1)
        scored += new
    assert scored == ids[1:]


def test_generate_cli_writes_samples_and_speed(corpus, straight, tmp_path):
    d = corpus[0]
    cfg = tmp_path / "gpt.yaml"
    cfg.write_text(json.dumps(CFG))
    assert gpt_gen.main(["--checkpoint", str(straight[0] / "checkpoint.pt"), "--vocab", str(d / "vocab.json"),
                         "--config", str(cfg), "--out-txt", str(tmp_path / "g.txt"),
                         "--out-json", str(tmp_path / "g.json"), "--device", "cpu"]) == 0
    res = json.loads((tmp_path / "g.json").read_text())
    assert res["num_tokens"] == 7
    assert [s["prompt"] for s in res["samples"]] == ["ROMEO:", "First Citizen:"]
    model, _ = load_checkpoint(straight[0] / "checkpoint.pt")
    tok = corpus[1]
    for s in res["samples"]:  # the starter code's greedy loop, independently
        ids = tok.encode(s["prompt"])
        for _ in range(7):
            ids.append(int(model(torch.tensor([ids[-model.max_len:]]))[0, -1].argmax()))
        assert s["text"] == tok.decode(ids[1:])
    sp = res["speed"]
    assert sp["new_tokens"] == 30 and sp["identical"] is True
    assert sp["speedup"] == pytest.approx(sp["plain_seconds"] / sp["cached_seconds"])
    assert "ROMEO" in (tmp_path / "g.txt").read_text()
    # seeded sampling beside the greedy text: top-k sampling redone by hand with the same generator
    assert res["sampling"] == {"temperature": 0.8, "top_k": 40, "seed": 0}
    for i, s in enumerate(res["sampled"]):  # prompt i is sampled with seed + i
        ids = tok.encode(s["prompt"])
        gen = torch.Generator().manual_seed(0 + i)
        for _ in range(7):
            logits = model(torch.tensor([ids[-model.max_len:]]))[0, -1].float() / 0.8
            kth = torch.topk(logits, min(40, logits.numel())).values[-1]
            probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), -1)
            ids.append(int(torch.multinomial(probs, 1, generator=gen)))
        assert s["text"] == tok.decode(ids[1:])


def test_time_budget_is_an_upper_bound_on_a_fake_clock(corpus, tmp_path, monkeypatch):
    # 48 dialogues in batches of 8: 6 steps an epoch. Steps cost 1 s, 2 s from epoch 3
    # on (slower than calibrated); validation 1 s; saving 2 s; all else no time.
    clock = fake_clock(monkeypatch, gpt_train, "score_dialogues", step=lambda epoch: 1.0 if epoch <= 2 else 2.0,
                       validate=1.0, save=2.0)
    cfg = json.loads(json.dumps(CFG))
    cfg["train"].update(epochs=30, time_budget_s=60.0)
    summary = run_train(corpus, tmp_path, cfg)
    assert summary["train_seconds"] == clock.t <= 60.0
    assert summary["train_seconds"] > 60.0 - (2.0 + 1.0 + 2.0)
    assert clock.marks[:2] == [9.0, 18.0]  # 6 steps + validation + save per epoch: saves are counted
    assert 2 < summary["epochs"] < 30 and summary["stopped_by_budget"]


def test_time_budget_shorter_than_an_epoch_still_ends_on_time(corpus, tmp_path, monkeypatch):
    clock = fake_clock(monkeypatch, gpt_train, "score_dialogues", step=lambda epoch: 1.0, validate=1.0, save=0.5)
    cfg = json.loads(json.dumps(CFG))
    cfg["train"]["time_budget_s"] = 5.0
    summary = run_train(corpus, tmp_path, cfg)
    assert summary["epochs"] == 1 and summary["stopped_by_budget"]
    assert summary["train_seconds"] == clock.t <= 5.0


def test_the_kept_model_is_the_epoch_with_the_lowest_validation_loss(corpus, tmp_path, monkeypatch):
    # A fake validation curve that falls, then rises (overfitting): epoch 2 is best.
    curve = iter([5.0, 4.0, 4.5, 4.8])
    real = gpt_train.score_dialogues

    def fake_scores(*args, **kwargs):
        out = real(*args, **kwargs)
        loss = next(curve)
        return {**out, "loss": loss, "total_nll": loss * out["n_tokens"]}

    monkeypatch.setattr(gpt_train, "score_dialogues", fake_scores)
    snapshots = {}
    real_sample = gpt_train.sample_prompts

    def remember(model, *args, **kwargs):  # runs once per epoch, after validation
        snapshots[len(snapshots) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_sample(model, *args, **kwargs)

    monkeypatch.setattr(gpt_train, "sample_prompts", remember)
    cfg = json.loads(json.dumps(CFG))
    cfg["train"]["epochs"] = 4
    summary = run_train(corpus, tmp_path, cfg)
    assert (summary["kept_epoch"], summary["best_epoch"], summary["selection"]) == (2, 2, "best_val_loss")
    assert summary["best_val_loss"] == 4.0 and summary["kept_val_loss"] == 4.0
    assert summary["final_val_loss"] == 4.8 and summary["epochs"] == 4
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")[1]
    assert ckpt["epoch"] == 2
    assert all(torch.equal(ckpt["state_dict"][k], snapshots[2][k]) for k in snapshots[2])
    assert not all(torch.equal(ckpt["state_dict"][k], snapshots[4][k]) for k in snapshots[4])
    # keep: last keeps the final epoch instead
    curve = iter([5.0, 4.0, 4.5, 4.8])
    snapshots.clear()
    cfg["train"]["keep"] = "last"
    summary = run_train(corpus, tmp_path / "last", cfg)
    assert summary["kept_epoch"] == 4 and summary["selection"] == "final"
    assert load_checkpoint(tmp_path / "last" / "checkpoint.pt")[1]["epoch"] == 4
