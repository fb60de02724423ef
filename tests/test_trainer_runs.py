"""What both trainers promise about their run folder and their inputs.

- A resume state or checkpoint is tied to the inputs it was made from: other
  --data into a finished --out-dir is refused in one line naming both digests
  (the same data saved again is accepted), and a vocabulary of the same size but
  other tokens is refused by the trainer, gpt.evaluate and gpt.generate.
- Ctrl-C (a real SIGINT to a subprocess) leaves only ``resume/state.pt``, with
  one ``error:`` line and no traceback; an interruption while the outputs are
  being written removes the ones already written.
- A prepared train.pt with labels outside the classes or a label count that is
  not the image count is one line.
- No host sync per training step: the ``item``/``bool``/... calls the package
  makes grow with the steps by the progress line's one every 25 steps only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import attnlab
from attnlab import training
from attnlab.checkpoint import CheckpointError
from attnlab.data import DataError
from attnlab.data.tokenizer import MyTokenizer
from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt import generate as gpt_gen
from attnlab.gpt import train as gpt_train
from attnlab.vit import train as vit_train
from conftest import ctrl_c_as_in_a_terminal
from test_gpt_train import CFG as GPT_CFG
from test_gpt_train import corpus, run_train  # noqa: F401  (corpus is a fixture)
from test_vit_train import merged as vit_cfg

ROOT = Path(__file__).resolve().parents[1]
GPT_OUTPUTS = ["checkpoint.pt", "curves.png", "metrics.csv", "resume", "samples.jsonl", "train_summary.json"]
VIT_OUTPUTS = ["checkpoint.pt", "curves.png", "metrics.csv", "resume", "train_summary.json"]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def _yaml(path: Path, obj) -> str:
    path.write_text(yaml.safe_dump(obj))
    return str(path)


# --------------------------------------------------------------------------- digests of the inputs


def test_vit_rerun_with_other_data_into_a_finished_out_dir_is_refused(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _yaml(tmp_path / "vit.yaml", vit_cfg(epochs=1))
    assert vit_train.main(["--data", str(prepared), "--config", cfg, "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == VIT_OUTPUTS
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    recorded = torch.load(out / "checkpoint.pt", weights_only=True)["digests"]
    assert set(recorded) == {"config", "train.pt", "test.pt"}
    # Other data: the same files, one training image changed by one grey level.
    other = tmp_path / "other"
    shutil.copytree(prepared, other)
    split = torch.load(other / "train.pt", weights_only=True)
    split["images"][0, 0, 0, 0] ^= 1
    torch.save(split, other / "train.pt")
    capsys.readouterr()
    assert vit_train.main(["--data", str(other), "--config", cfg, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    [line] = error_lines(err)
    assert "Traceback" not in err
    # both sides named: the digest the run recorded, and another one for this data
    found = re.search(r"train.pt content digest ([0-9a-f]{64}), but this run has train.pt content digest "
                      r"([0-9a-f]{64}); delete", line)
    assert found and found[1] == recorded["train.pt"] and found[2] != found[1], line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # the old run, untouched
    # The same data written again (other bytes: torch.save names its archive after the file) is the same data.
    same = tmp_path / "same"
    same.mkdir()
    for name in ("train.pt", "test.pt"):
        torch.save(torch.load(prepared / name, weights_only=True), same / f"{name}.tmp")
        os.replace(same / f"{name}.tmp", same / name)
    assert (same / "train.pt").read_bytes() != (prepared / "train.pt").read_bytes()
    assert vit_train.main(["--data", str(same), "--config", cfg, "--out-dir", str(out)]) == 0


def test_gpt_rerun_with_other_data_into_a_finished_out_dir_is_refused(corpus, tmp_path):  # noqa: F811
    d = corpus[0]
    out = tmp_path / "run"
    cfg = json.loads(json.dumps(GPT_CFG))
    cfg["train"]["epochs"] = 1
    run_train(corpus, out, cfg)
    before = (out / "checkpoint.pt").read_bytes()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    data = torch.load(d / "dialogues.pt", weights_only=True)
    data["train"] = data["train"][1:]  # one dialogue fewer
    torch.save(data, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as info:
        gpt_train.train(cfg, tmp_path / "other.pt", d / "vocab.json", out, log=lambda m: None)
    msg = str(info.value)
    assert "\n" not in msg
    found = re.search(r"dialogues.pt content digest ([0-9a-f]{64}), but this run has dialogues.pt content digest "
                      r"([0-9a-f]{64})", msg)
    assert found and found[1] == ckpt["digests"]["dialogues.pt"] and found[2] != found[1], msg
    assert (out / "checkpoint.pt").read_bytes() == before
    # the same inputs again: accepted, and the run's weights come back unchanged
    run_train(corpus, out, cfg)
    again = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(ckpt["state_dict"][k], again[k]) for k in ckpt["state_dict"])


@pytest.mark.parametrize("damage", ["model", "optimizer", "state"])
def test_a_resume_state_that_does_not_fit_the_model_is_one_line(damage, corpus, tmp_path):  # noqa: F811
    d = corpus[0]
    gpt_train.train(GPT_CFG, d / "dialogues.pt", d / "vocab.json", tmp_path, stop_after_epochs=1, log=lambda m: None)
    path = tmp_path / "resume" / "state.pt"
    saved = torch.load(path, weights_only=True)  # its digests still match this run
    if damage == "model":
        saved["model"].pop(next(iter(saved["model"])))
    elif damage == "optimizer":
        saved["optimizer"]["param_groups"] = []
    else:
        del saved["state"]["rows"]
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match=r"state.pt does not fit this run's model, optimizer or state "
                                              r"\(.+\); delete .*resume to start over$") as info:
        gpt_train.train(GPT_CFG, d / "dialogues.pt", d / "vocab.json", tmp_path, log=lambda m: None)
    assert "\n" not in str(info.value)


def _swapped(tok: MyTokenizer) -> MyTokenizer:
    """The same tokens, two of them swapped: same size, other ids."""
    words = tok.itos[3:]
    words[0], words[1] = words[1], words[0]
    return MyTokenizer(words, tok.start_token, tok.pad_token, tok.unk_token)


def test_build_vocab_records_the_digest_of_its_token_list(tmp_path):
    from tinydata import make_shakespeare_text

    from attnlab.data.vocab import build_vocab

    make_shakespeare_text(tmp_path / "input.txt", n_dialogues=20)
    build_vocab(tmp_path / "input.txt", None, {"val_fraction": 0.2}, tmp_path / "out", stream=open(os.devnull, "w"))
    data = torch.load(tmp_path / "out" / "dialogues.pt", weights_only=True)
    itos = json.loads((tmp_path / "out" / "vocab.json").read_text())["itos"]
    # the token list, ids in order, as JSON: independent of how vocab.json is laid out
    assert data["vocab_digest"] == hashlib.sha256(json.dumps(itos, ensure_ascii=False).encode()).hexdigest()


def test_swapped_same_size_vocabulary_is_refused_everywhere(corpus, tmp_path, capsys):  # noqa: F811
    d, tok, _ = corpus
    out = tmp_path / "run"
    cfg = json.loads(json.dumps(GPT_CFG))
    cfg["train"]["epochs"] = 1
    run_train(corpus, out, cfg)
    swapped = tmp_path / "swapped.json"
    _swapped(tok).save(swapped)
    assert len(MyTokenizer.load(swapped)) == len(tok)
    ckpt = str(out / "checkpoint.pt")
    capsys.readouterr()
    rc = gpt_eval.main(["--checkpoint", ckpt, "--vocab", str(swapped), "--text", str(d / "val.txt"),
                        "--out", str(tmp_path / "eval.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    [line] = error_lines(err)
    assert str(swapped) in line and ckpt in line and "other tokens" in line
    assert not (tmp_path / "eval.json").exists()
    rc = gpt_gen.main(["--checkpoint", ckpt, "--vocab", str(swapped), "--out-txt", str(tmp_path / "g.txt"),
                       "--out-json", str(tmp_path / "g.json"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and len(error_lines(err)) == 1 and "other tokens" in err and "Traceback" not in err
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "g.txt").exists()
    # The same tokens written in another layout are the same vocabulary.
    relaid = tmp_path / "relaid.json"
    relaid.write_text(json.dumps(dict(reversed(list(json.loads((d / "vocab.json").read_text()).items()))),
                                 indent=7))
    assert gpt_eval.main(["--checkpoint", ckpt, "--vocab", str(relaid), "--text", str(d / "val.txt"),
                          "--out", str(tmp_path / "eval.json")]) == 0
    # The trainer refuses it against a dialogues.pt that recorded its vocabulary's digest.
    from attnlab.data.vocab import vocab_digest

    data = torch.load(d / "dialogues.pt", weights_only=True)
    torch.save({**data, "vocab_digest": vocab_digest(tok.itos)}, tmp_path / "dialogues.pt")
    with pytest.raises(DataError, match=r"swapped.json holds other tokens .* than .*dialogues.pt was made with"):
        gpt_train.train(cfg, tmp_path / "dialogues.pt", swapped, tmp_path / "run2", log=lambda m: None)
    assert not (tmp_path / "run2").exists()


# --------------------------------------------------------------------------- Ctrl-C


def _sigint_after_first_save(argv: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    try:
        deadline = time.time() + 180
        while not (out / "resume" / "state.pt").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "training never saved state"
            time.sleep(0.05)
        time.sleep(0.3)  # into a later epoch
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("family", ["vit", "gpt"])
def test_ctrl_c_leaves_only_the_resume_state(family, prepared, corpus, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    if family == "vit":
        cfg = _yaml(tmp_path / "c.yaml", vit_cfg(epochs=2000))
        argv = [sys.executable, "-m", "attnlab.vit.train", "--data", str(prepared), "--config", cfg,
                "--out-dir", str(out)]
    else:
        cfg = json.loads(json.dumps(GPT_CFG))
        cfg["train"]["epochs"] = 2000
        argv = [sys.executable, "-m", "attnlab.gpt.train", "--data", str(corpus[0] / "dialogues.pt"),
                "--vocab", str(corpus[0] / "vocab.json"), "--config", _yaml(tmp_path / "c.yaml", cfg),
                "--out-dir", str(out)]
    proc = _sigint_after_first_save(argv, out)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert line == f"error: interrupted; {out / 'resume' / 'state.pt'} keeps the last finished epoch: rerun the " \
                   f"same command to continue from it"
    # what the docs promise: the resume state and nothing else, not even a .part file
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["resume", "resume/state.pt"]
    state = torch.load(out / "resume" / "state.pt", weights_only=True)
    assert 1 <= state["state"]["epoch"] < 2000 and len(state["state"]["rows"]) == state["state"]["epoch"]


def test_interrupt_while_writing_the_outputs_removes_those_written(prepared, tmp_path, monkeypatch):
    calls = []

    def interrupted_plot(*args, **kwargs):  # curves.png comes after metrics.csv
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "plot_curves", interrupted_plot)
    with pytest.raises(KeyboardInterrupt):
        vit_train.train(vit_cfg(epochs=1), prepared, tmp_path, log=lambda m: None)
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == ["resume"]
    monkeypatch.undo()
    summary = vit_train.train(vit_cfg(epochs=1), prepared, tmp_path, log=lambda m: None)  # resumes, writes all
    assert summary["finished"] and sorted(p.name for p in tmp_path.iterdir()) == VIT_OUTPUTS


def test_a_new_run_removes_the_outputs_an_earlier_run_left(prepared, tmp_path):
    vit_train.train(vit_cfg(epochs=1), prepared, tmp_path, log=lambda m: None)
    shutil.rmtree(tmp_path / "resume")  # as the pipeline does after a finished job
    summary = vit_train.train(vit_cfg(epochs=2), prepared, tmp_path, stop_after_epochs=1, log=lambda m: None)
    assert not summary["finished"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume"]  # no outputs of the other run beside it


# --------------------------------------------------------------------------- prepared data


@pytest.mark.parametrize("case", ["label 99", "label -1", "one label fewer", "float labels"])
def test_bad_prepared_labels_are_one_line(case, prepared, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    split = torch.load(data / "train.pt", weights_only=True)
    if case == "label 99":
        split["labels"][3] = 99
    elif case == "label -1":
        split["labels"][0] = -1
    elif case == "one label fewer":
        split["labels"] = split["labels"][:-1]
    else:
        split["labels"] = split["labels"].float()
    torch.save(split, data / "train.pt")
    rc = vit_train.main(["--data", str(data), "--config", _yaml(tmp_path / "c.yaml", vit_cfg()),
                         "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    [line] = error_lines(err)
    assert str(data / "train.pt") in line and "prepare-cifar10" in line
    if case.startswith("label "):
        assert f"outside 0..{len(split['classes']) - 1}" in line and case.split()[1] in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- host syncs


def _count_syncs(monkeypatch) -> list:
    """Record every item/tolist/bool/float/int/index call on a tensor made from attnlab's own code."""
    calls = []
    src = str(Path(attnlab.__file__).parent)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(src):
                calls.append((_name, caller, sys._getframe(1).f_lineno))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def test_no_host_sync_per_training_step(prepared, corpus, tmp_path, monkeypatch):  # noqa: F811
    calls = _count_syncs(monkeypatch)
    counts = {}
    for batch_size in (8, 1):  # the same epoch and validation, in 6 or 48 GPT steps, 3 or 30 ViT steps
        cfg = json.loads(json.dumps(GPT_CFG))
        cfg["train"].update(epochs=1, batch_size=batch_size)
        del calls[:]
        summary = run_train(corpus, tmp_path / f"gpt{batch_size}", cfg)
        counts["gpt", summary["steps"]] = len(calls)
        del calls[:]
        summary = vit_train.train(vit_cfg(epochs=1, batch_size=batch_size, mixup_alpha=0.8, cutmix_alpha=1.0),
                                  prepared, tmp_path / f"vit{batch_size}", log=lambda m: None)
        counts["vit", summary["steps"]] = len(calls)
    assert set(counts) == {("gpt", 6), ("gpt", 48), ("vit", 3), ("vit", 30)}, counts
    # the progress line reads the loss at step 1, 26 and the last: 2 or 3 times; a sync in every
    # step would add 42 (GPT) or 27 (ViT)
    assert counts["gpt", 48] - counts["gpt", 6] == 3 - 2, counts
    assert counts["vit", 30] - counts["vit", 3] == 3 - 2, counts
