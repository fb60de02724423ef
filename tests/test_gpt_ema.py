"""gpt.train.ema_decay: the weights validated, kept and saved are the hand-computed average of the trained ones."""

import json

import pandas as pd
import pytest
import torch

from test_gpt_train import CFG, corpus, run_train  # noqa: F401  (corpus is a fixture)
from attnlab import training
from attnlab.config import ConfigError
from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt import train as gpt_train
from attnlab.gpt.model import load_checkpoint

DECAY = 0.8


def ema_cfg(**train):
    cfg = json.loads(json.dumps(CFG))
    cfg["train"].update({"ema_decay": DECAY, "keep": "last", **train})
    return cfg


def test_saved_weights_are_the_hand_computed_average_of_every_step(corpus, tmp_path, monkeypatch):  # noqa: F811
    """avg_0 = the initial weights; avg_n = d_n avg_(n-1) + (1 - d_n) w_n with d_n = min(D, n / (9 + n)),
    w_n the trained weights after step n (recorded as the trainer hands them over)."""
    def floats(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    seen = []
    real_init, real_update = training.WeightEMA.__init__, training.WeightEMA.update

    def record_init(self, model, decay):
        seen.append(floats(model))
        return real_init(self, model, decay)

    def record(self, model):
        seen.append(floats(model))
        return real_update(self, model)

    monkeypatch.setattr(training.WeightEMA, "__init__", record_init)
    monkeypatch.setattr(training.WeightEMA, "update", record)
    summary = run_train(corpus, tmp_path, ema_cfg())
    assert summary["weights"] == "ema" and summary["kept_epoch"] == 2
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")[1]
    assert ckpt["weights"] == "ema"
    assert len(seen) > 5
    for key in seen[0]:
        avg = seen[0][key].double()
        for n, w in enumerate(seen[1:], start=1):
            d = min(DECAY, n / (9 + n))
            avg = d * avg + (1 - d) * w[key].double()
        assert torch.allclose(ckpt["state_dict"][key].double(), avg, atol=1e-5), key
    # and it is not simply the last weights
    assert any(not torch.allclose(ckpt["state_dict"][k], seen[-1][k], atol=1e-4) for k in seen[-1])


def test_validation_scores_the_average_and_evaluate_agrees(corpus, tmp_path):  # noqa: F811
    d = corpus[0]
    run_train(corpus, tmp_path / "ema", ema_cfg())
    run_train(corpus, tmp_path / "raw", ema_cfg(ema_decay=None))
    ema_rows, raw_rows = pd.read_csv(tmp_path / "ema" / "metrics.csv"), pd.read_csv(tmp_path / "raw" / "metrics.csv")
    # the same training (the average never feeds back), scored on different weights
    assert ema_rows["train_loss"].tolist() == raw_rows["train_loss"].tolist()
    assert ema_rows["val_loss"].iloc[-1] != raw_rows["val_loss"].iloc[-1]
    assert gpt_eval.main(["--checkpoint", str(tmp_path / "ema" / "checkpoint.pt"), "--vocab", str(d / "vocab.json"),
                          "--text", str(d / "val.txt"), "--out", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["val_loss"] == pytest.approx(ema_rows["val_loss"].iloc[-1], rel=1e-6)
    assert json.loads((tmp_path / "raw" / "train_summary.json").read_text())["weights"] == "raw"


def test_resumed_run_carries_the_average(corpus, tmp_path):  # noqa: F811
    d = corpus[0]
    run_train(corpus, tmp_path / "straight", ema_cfg())
    out = tmp_path / "run"
    assert gpt_train.train(ema_cfg(), d / "dialogues.pt", d / "vocab.json", out, stop_after_epochs=1,
                           log=lambda m: None)["finished"] is False
    gpt_train.train(ema_cfg(), d / "dialogues.pt", d / "vocab.json", out, log=lambda m: None)
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    b = pd.read_csv(out / "metrics.csv")
    cols = ["epoch", "train_loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    sa = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")[1]["state_dict"]
    sb = load_checkpoint(out / "checkpoint.pt")[1]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_decay_outside_0_1_is_refused(corpus, tmp_path, decay):  # noqa: F811
    with pytest.raises(ConfigError, match="ema_decay"):
        run_train(corpus, tmp_path, ema_cfg(ema_decay=decay))
