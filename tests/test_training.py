"""The trainers' shared toolkit (attnlab.training) and the no-GPU decision both trainers make in the job."""

from __future__ import annotations

import math
import time

import pytest
import torch

from attnlab import training
from attnlab.checkpoint import CheckpointError
from attnlab.config import ConfigError, defaults


def test_gpt_schedule_ends_at_its_floor_and_vit_schedule_at_zero():
    # hand computation: warm-up 10 of 110 steps, cosine over the remaining 100
    assert training.lr_at(4, 110, 10, 1.0) == pytest.approx(0.5)
    assert training.lr_at(60, 110, 10, 1.0, min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert training.lr_at(110, 110, 10, 1.0, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert training.lr_at(110, 110, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    # warm-up longer than half the run is cut to half of it, so the run still decays
    assert training.lr_at(4, 10, 100, 1.0) == pytest.approx(1.0)
    assert training.lr_at(7, 10, 100, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 5)))


def test_time_budget_spends_and_fits(monkeypatch):
    t = [100.0]
    monkeypatch.setattr(training, "now", lambda: t[0])
    budget = training.TimeBudget(10.0, spent=3.0)  # 3 s used by an earlier attempt
    t[0] = 104.0
    assert budget.spent() == 7.0
    assert budget.fits(3.0) and not budget.fits(3.5)
    assert budget.fit_epochs(epoch=2, planned=50, per_epoch=1.0) == 5
    assert budget.fit_epochs(epoch=2, planned=4, per_epoch=1.0) == 4  # never more than planned
    t[0] = 200.0
    assert budget.fit_epochs(epoch=2, planned=50, per_epoch=1.0) == 2  # over: no more epochs
    assert training.TimeBudget(None).fits(1e9)


def test_best_epoch_picks_the_first_of_ties():
    rows = [{"epoch": 1, "val_loss": 3.0}, {"epoch": 2, "val_loss": 2.0}, {"epoch": 3, "val_loss": 2.0}]
    assert training.best_epoch(rows, "val_loss") == 2
    assert training.best_epoch(rows, "val_loss", "max") == 1


def test_divergence_advice_fits_the_config(tmp_path):
    with pytest.raises(training.DivergenceError, match=r"set vit.train.grad_clip \(e.g. 1.0\)$"):
        training.check_finite(float("nan"), "vit", 3, 7, 1e-3, None, tmp_path / "missing")
    (tmp_path / "resume").mkdir()
    with pytest.raises(training.DivergenceError, match=r"lower gpt.train.grad_clip \(now 1.0\); the last .*resume"):
        training.check_finite(float("inf"), "gpt", 3, 7, 1e-3, 1.0, tmp_path / "resume")
    training.check_finite(1.5, "gpt", 1, 1, 1e-3, 1.0, None)


def test_resume_state_round_trips_and_refuses_foreign_files(tmp_path):
    gens = {"order": torch.Generator().manual_seed(1)}
    path = tmp_path / "resume" / "state.pt"
    digests = {"config": "abc", "train.pt": "0123"}
    training.save_resume(path, digests, model={"w": torch.ones(2)}, rng=training.capture_rng(gens),
                         state={"epoch": 3, "rows": [{"epoch": 1, "val_loss": 2.5}]})
    expected = torch.randperm(10, generator=gens["order"])
    state = training.load_resume(path, digests, "vit")
    training.restore_rng(state["rng"], gens)
    assert torch.equal(torch.randperm(10, generator=gens["order"]), expected)
    assert state["state"]["rows"][0]["val_loss"] == 2.5
    with pytest.raises(CheckpointError, match="config digest abc, but this run has config digest xyz; delete"):
        training.load_resume(path, {**digests, "config": "xyz"}, "vit")
    # every input it depends on is matched, each named with both of its values
    with pytest.raises(CheckpointError, match="train.pt content digest 0123, but this run has train.pt content "
                                              "digest 4567"):
        training.load_resume(path, {**digests, "train.pt": "4567"}, "vit")
    with pytest.raises(CheckpointError, match=r"vocab.* \(none recorded\), but this run has vocabulary digest .* beef"):
        training.load_resume(path, {**digests, "vocab": "beef"}, "gpt")
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="is not the resume state written by attnlab.vit.train.*truncated"):
        training.load_resume(path, digests, "vit")
    assert training.load_resume(tmp_path / "none.pt", digests, "vit") is None


def test_content_digest_follows_the_data_not_the_file(tmp_path):
    data = {"images": torch.arange(24, dtype=torch.uint8).view(2, 3, 2, 2), "labels": torch.tensor([0, 1]),
            "classes": ["cat", "dog"]}
    torch.save(data, tmp_path / "a.pt")
    torch.save(data, tmp_path / "b.pt")  # other bytes: the archive inside is named after the file
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("a.pt", "b.pt"))
    assert training.content_digest(a) == training.content_digest(b) == training.content_digest(data)
    assert training.content_digest(dict(reversed(list(data.items())))) == training.content_digest(data)
    changed = [{**data, "labels": torch.tensor([0, 2])},                      # one value
               {**data, "images": data["images"].view(2, 3, 4)},              # same bytes, other shape
               {**data, "images": data["images"].view(torch.int8)},          # same bytes, other dtype
               {**data, "classes": ["cat", "dog", "fox"]},
               {**data, "labels": [data["labels"]]}]                           # nested differently
    digests = {training.content_digest(d) for d in changed}
    assert len(digests) == len(changed) and training.content_digest(data) not in digests


def _no_gpu(monkeypatch):
    """Fake the device query of a laptop: no CUDA, no MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("family", ["vit", "gpt"])
def test_gpu_preset_without_a_gpu_stops_in_seconds_with_one_line(family, monkeypatch, tmp_path, capsys):
    _no_gpu(monkeypatch)
    import importlib

    trainer = importlib.import_module(f"attnlab.{family}.train")
    assert defaults(family)["train"]["require_gpu"] and defaults(family)["train"]["device"] == "auto"
    args = ["--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")]
    if family == "gpt":
        args = ["--data", str(tmp_path / "dialogues.pt"), "--vocab", str(tmp_path / "vocab.json"),
                "--out-dir", str(tmp_path / "out")]
    start = time.perf_counter()
    assert trainer.main(args) == 2  # the GPU preset (no --config), before any data is read
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert f"{family}.train.require_gpu is true" in err[0] and "--configfile config/cpu.yaml" in err[0]
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_forcing_the_cpu_is_honoured(monkeypatch):
    _no_gpu(monkeypatch)
    from attnlab.runtime import pick_device

    device = pick_device("auto")
    assert device.type == "cpu"
    with pytest.raises(ConfigError):
        training.require_accelerator("auto", device, True, "vit")
    training.require_accelerator("auto", device, False, "vit")  # require_gpu: false
    training.require_accelerator("cpu", device, True, "vit")  # device: cpu chosen explicitly
    training.require_accelerator("auto", torch.device("cuda"), True, "vit")  # a GPU was found
