"""ViT trainer: outputs, exact resume, refused resume, NaN stop, schedule, augmentation."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.checkpoint import CheckpointError
from attnlab.config import ConfigError
from attnlab import training
from attnlab.training import DivergenceError
from attnlab.vit import train as vt
from conftest import fake_clock
from attnlab.vit.augment import CIFAR_MEAN, CIFAR_STD, mix_batch, normalize, random_crop_flip

torch.set_num_threads(2)

# Columns that an interrupted-and-resumed run must reproduce exactly (the rest are times).
DETERMINISTIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]

# Every random stream is exercised: data order, crop/flip, mixup/cutmix, dropout.
TINY = {
    "model": {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.1},
    "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 1, "augment": "crop_flip",
              "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "device": "cpu", "num_threads": 2,
              "time_budget_s": None, "eval_batch_size": 16},
}


def merged(**train):
    return {"model": dict(TINY["model"]), "train": {**TINY["train"], **train}}


def test_outputs_follow_the_formats(prepared, tmp_path):
    summary = vt.train(merged(), prepared, tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                     "val_seconds", "images_per_s"]
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics[["train_loss", "val_loss"]].notna().all().all()
    assert ((metrics["val_acc"] >= 0) & (metrics["val_acc"] <= 1)).all()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model_config", "state_dict", "classes", "config", "epoch"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and len(ckpt["classes"]) == 10
    on_disk = json.loads((tmp_path / "train_summary.json").read_text())
    for key in ("device", "hardware", "n_params", "epochs", "train_seconds", "final_val_acc", "digests"):
        assert key in on_disk
    assert on_disk["finished"] and (on_disk["kept_epoch"], on_disk["weights"]) == (2, "raw")
    assert ckpt["weights"] == "raw" and ckpt["digests"] == on_disk["digests"]
    assert on_disk["final_val_acc"] == pytest.approx(metrics["val_acc"].iloc[-1])
    assert summary["n_params"] == sum(v.numel() for v in ckpt["state_dict"].values())
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # The validation accuracy in the table is the checkpoint's own, recomputed by hand.
    from attnlab.vit.model import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    test = torch.load(prepared / "test.pt", weights_only=True)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = model((test["images"].float() / 255 - mean) / std).argmax(1)
    assert metrics["val_acc"].iloc[-1] == pytest.approx((pred == test["labels"]).float().mean().item())


def test_interrupted_run_resumes_to_identical_results(prepared, tmp_path):
    vt.train(merged(), prepared, tmp_path / "straight")
    first = vt.train(merged(), prepared, tmp_path / "resumed", stop_after_epochs=1)
    assert (first["finished"], first["epochs"]) == (False, 1)
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["resume"]  # only the resume state so far
    vt.train(merged(), prepared, tmp_path / "resumed")
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    pd.testing.assert_frame_equal(a[DETERMINISTIC_COLUMNS], b[DETERMINISTIC_COLUMNS], rtol=0, atol=1e-6)
    sa = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["state_dict"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # And the resumed run did not simply repeat epoch 1's numbers: training moved the weights.
    assert a["train_loss"].iloc[0] != a["train_loss"].iloc[1]


def test_resume_with_another_config_is_refused(prepared, tmp_path):
    vt.train(merged(), prepared, tmp_path, stop_after_epochs=1)
    with pytest.raises(CheckpointError, match="config digest .*, but this run has config digest .*; delete"):
        vt.train(merged(lr=1e-2), prepared, tmp_path)
    import yaml

    (tmp_path / "other.yaml").write_text(yaml.safe_dump(merged(lr=1e-2)))
    rc = vt.main(["--data", str(prepared), "--config", str(tmp_path / "other.yaml"), "--out-dir", str(tmp_path)])
    assert rc == 2


def test_nan_loss_stops_with_a_clear_error(prepared, tmp_path, monkeypatch):
    with pytest.raises(DivergenceError, match=r"lower vit.train.lr \(now 1e\+30\) or set vit.train.grad_clip"):
        vt.train(merged(lr=1e30, grad_clip=None), prepared, tmp_path / "diverged")
    assert not (tmp_path / "diverged" / "checkpoint.pt").exists()
    # A NaN injected into one batch in the middle of an epoch is caught as well.
    calls = []

    def poisoned(images):
        calls.append(1)
        x = normalize(images)
        return x * float("nan") if len(calls) == 3 else x

    monkeypatch.setattr(vt, "normalize", poisoned)
    with pytest.raises(DivergenceError, match="epoch 1"):
        vt.train(merged(grad_clip=None), prepared, tmp_path / "poisoned")


def test_unknown_key_and_bad_data_are_named(prepared, tmp_path):
    with pytest.raises(ConfigError, match="vit.train.lrr"):
        vt.train({"train": {"lrr": 1}}, prepared, tmp_path)
    with pytest.raises(FileNotFoundError, match="prepare-cifar10"):
        vt.train(merged(), tmp_path / "nowhere", tmp_path)


def test_time_budget_shorter_than_one_step_is_refused(prepared, tmp_path):
    with pytest.raises(ConfigError, match="time_budget_s=1e-06 left no time"):
        vt.train(merged(epochs=4, time_budget_s=1e-6), prepared, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_time_budget_is_an_upper_bound_on_a_fake_clock(prepared, tmp_path, monkeypatch):
    # Simulated costs: a step 1 s (2 s from epoch 3 on: slower than calibrated),
    # validation 1 s, saving the resume state 2 s; all else takes no time.
    clock = fake_clock(monkeypatch, vt, "evaluate_arrays", step=lambda epoch: 1.0 if epoch <= 2 else 2.0,
                       validate=1.0, save=2.0)
    summary = vt.train(merged(epochs=20, time_budget_s=40.0), prepared, tmp_path / "slow")
    rows = pd.read_csv(tmp_path / "slow" / "metrics.csv")
    assert summary["train_seconds"] == clock.t <= 40.0
    assert summary["train_seconds"] > 40.0 - (2.0 + 1.0 + 2.0)  # it used the budget, not stopped early
    assert training.CALIBRATION_EPOCHS < summary["epochs"] < 20 and summary["stopped_by_budget"]
    # the saves are counted: 3 steps + 1 s validation + 2 s save = 6 s for each of epochs 1-2
    assert clock.marks[:2] == [6.0, 12.0]
    assert len(rows) == summary["epochs"]


def test_time_budget_shorter_than_an_epoch_still_ends_on_time(prepared, tmp_path, monkeypatch):
    clock = fake_clock(monkeypatch, vt, "evaluate_arrays", step=lambda epoch: 1.0, validate=1.0, save=0.5)
    summary = vt.train(merged(epochs=4, time_budget_s=4.0), prepared, tmp_path)
    assert summary["epochs"] == 1 and summary["stopped_by_budget"]
    assert summary["train_seconds"] == clock.t <= 4.0


def test_lr_schedule_warmup_then_cosine():
    base, total, warm = 1e-3, 100, 10
    assert training.lr_at(0, total, warm, base) == pytest.approx(base / 10)
    assert training.lr_at(9, total, warm, base) == pytest.approx(base)
    assert training.lr_at(10, total, warm, base) == pytest.approx(base)
    assert training.lr_at(55, total, warm, base) == pytest.approx(base * 0.5)  # half-way through the cosine
    assert training.lr_at(99, total, warm, base) == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 89 / 90)))


def test_weight_decay_skips_norms_biases_and_embeddings():
    from attnlab.vit.model import VisionTransformer

    model = VisionTransformer(patch_size=8, dim=16, depth=1, heads=2)
    decay, no_decay = vt.param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() >= 2 for p in decay["params"])
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "norm.weight", "head.bias"} <= skipped
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_random_crop_flip_matches_torchvision_per_sample():
    import torchvision.transforms.v2.functional as TF

    x = torch.randn(6, 3, 8, 8)
    out = random_crop_flip(x, 2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # replay the same draws in the same order
    oy, ox = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    for i in range(6):
        ref = TF.crop(TF.pad(x[i], [2, 2, 2, 2], fill=0), int(oy[i]), int(ox[i]), 8, 8)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        torch.testing.assert_close(out[i], ref)
    assert flip.any() and (~flip).any() and len(set(zip(oy.tolist(), ox.tolist()))) > 1


def test_normalize_uses_cifar_statistics():
    img = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = [(1 - m) / s for m, s in zip(CIFAR_MEAN, CIFAR_STD)]
    torch.testing.assert_close(normalize(img)[0, :, 0, 0], torch.tensor(expected))


def test_cutmix_and_mixup_targets_match_the_pixels():
    B, K = 4, 10
    x = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, 16, 16).contiguous()
    y = torch.tensor([0, 1, 2, 3])
    for seed in range(6):
        rng = np.random.default_rng(seed)
        xm, t = mix_batch(x, y, K, mixup_alpha=0.0, cutmix_alpha=1.0, rng=rng)
        for i in range(B):
            partner = B - 1 - i  # paired with the reversed batch
            frac_own = (xm[i] == i).float().mean().item()
            if partner != i:
                assert t[i, y[i]].item() == pytest.approx(frac_own, abs=1e-6)
                assert t[i, y[partner]].item() == pytest.approx(1 - frac_own, abs=1e-6)
        torch.testing.assert_close(t.sum(1), torch.ones(B))
    xm, t = mix_batch(x, y, K, mixup_alpha=0.8, cutmix_alpha=0.0, rng=np.random.default_rng(1),
                      label_smoothing=0.1)
    lam = t[0, 0].item() - 0.01  # own class weight = lam * 0.9 + 0.01 (smoothing)
    lam = lam / 0.9
    torch.testing.assert_close(xm[0], x[0] * lam + x[3] * (1 - lam), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t.sum(1), torch.ones(B))
