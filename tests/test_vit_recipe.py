"""The ViT recipe's optional pieces: weight EMA, flip TTA, torchvision policies, partial mixing, compile auto."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from attnlab import training
from attnlab.vit import train as vt
from attnlab.vit.augment import apply_policy, make_policy, mix_batch
from attnlab.vit.evaluate import evaluate, evaluate_arrays
from test_vit_train import DETERMINISTIC_COLUMNS

torch.set_num_threads(2)

# Every new piece switched on at once, on the tiny data of test_vit_train.
RECIPE = {
    "model": {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.1},
    "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 1, "augment": "crop_flip",
              "policy": "autoaugment", "policy_groups": 4, "mixup_alpha": 0.8, "cutmix_alpha": 1.0,
              "mix_prob": 0.5, "mix_stop_frac": 0.3, "ema_decay": 0.9, "device": "cpu", "num_threads": 2,
              "time_budget_s": None, "eval_batch_size": 16},
}


# --- weight EMA ---------------------------------------------------------------------------------

def test_weight_ema_equals_the_hand_computed_average():
    model = nn.Linear(2, 1, bias=False)
    ws = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]]), torch.tensor([[-1.0, 4.0]])]
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0]]))
    ema = training.WeightEMA(model, decay=0.5)
    expected = torch.tensor([[0.0, 0.0]])
    # Decays by hand: min(0.5, (1 + n) / (10 + n)) for n = 0, 1, 2 -> 0.1, 2/11, 0.25.
    for n, (w, d) in enumerate(zip(ws, [0.1, 2 / 11, 0.25])):
        with torch.no_grad():
            model.weight.copy_(w)
        ema.update(model)
        expected = d * expected + (1 - d) * w
        assert torch.allclose(ema.module.weight, expected, atol=1e-6), n
    # Later updates use the configured decay once the warm-up value exceeds it.
    for _ in range(20):
        ema.update(model)
    assert ema.decay_now() == 0.5
    # The live model is untouched and the average is not trainable.
    assert torch.equal(model.weight, ws[-1]) and not ema.module.weight.requires_grad


def test_weight_ema_state_round_trips():
    model = nn.Linear(3, 2)
    ema = training.WeightEMA(model, 0.99)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
    other = training.WeightEMA(nn.Linear(3, 2), 0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3 and torch.equal(other.module.weight, ema.module.weight)


# --- flip test-time augmentation ---------------------------------------------------------------

class MirrorSymmetric(nn.Module):
    """Flip-invariant by construction: it only sees x + mirror(x)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.head((x + x.flip(3)).flatten(1))


def test_flip_tta_leaves_a_flip_invariant_model_unchanged():
    torch.manual_seed(0)
    model = MirrorSymmetric()
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (40,))
    plain = evaluate_arrays(model, images, labels, torch.device("cpu"), 16, amp=False)
    tta = evaluate_arrays(model, images, labels, torch.device("cpu"), 16, amp=False, flip_tta=True)
    assert plain[0] == pytest.approx(tta[0], abs=1e-6) and torch.equal(plain[2], tta[2])


def test_flip_tta_predicts_the_mean_logit_over_image_and_mirror():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))  # not flip-invariant
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (50,))
    _, acc, preds = evaluate_arrays(model, images, labels, torch.device("cpu"), 16, amp=False, flip_tta=True)
    from attnlab.vit.augment import normalize

    x = normalize(images)
    by_hand = ((model(x) + model(x[..., torch.arange(7, -1, -1)])) / 2).argmax(1)
    assert torch.equal(preds, by_hand)
    assert acc == pytest.approx((by_hand == labels).float().mean().item())
    plain = evaluate_arrays(model, images, labels, torch.device("cpu"), 16, amp=False)[2]
    assert not torch.equal(plain, preds)  # the mirror images do change some predictions


# --- torchvision policies -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["autoaugment", "randaugment", "trivialaugment"])
def test_policies_keep_shape_and_dtype_and_are_reproducible(name):
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    policy = make_policy(name)
    torch.manual_seed(5)
    a = apply_policy(images, policy, groups=8)
    torch.manual_seed(5)
    b = apply_policy(images, policy, groups=8)
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)
    outs = []
    for seed in range(6):
        torch.manual_seed(100 + seed)
        outs.append(apply_policy(images, policy, groups=8))
    assert any(not torch.equal(o, images) for o in outs)  # the policy does change images


def test_policy_groups_draw_independently():
    # One image repeated: a single draw gives identical outputs; one draw per image gives varied ones.
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).repeat(16, 1, 1, 1)
    policy = make_policy("trivialaugment")
    torch.manual_seed(0)
    one = apply_policy(images, policy, groups=1)
    assert all(torch.equal(one[0], o) for o in one)
    torch.manual_seed(0)
    many = apply_policy(images, policy, groups=16)
    assert len({bytes(o.numpy().tobytes()) for o in many}) > 4


def test_policy_none_and_unknown():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert apply_policy(images, make_policy("none"), 4) is images
    with pytest.raises(ValueError, match="autoaugment"):
        make_policy("cutout")


# --- partial mixing ------------------------------------------------------------------------------

def test_mixed_targets_sum_to_one_and_mix_prob_is_respected():
    x = torch.randn(16, 3, 8, 8)
    y = torch.arange(16) % 10
    rng = np.random.default_rng(0)
    mixed = 0
    for _ in range(400):
        xm, t = mix_batch(x, y, 10, 0.8, 1.0, rng, label_smoothing=0.1, prob=0.3)
        assert t.shape == (16, 10)
        assert torch.allclose(t.sum(1), torch.ones(16), atol=1e-6)
        mixed += not torch.equal(xm, x)
    # Binomial(400, 0.3): mean 120, sd 9.2. (A cutmix box can be empty, so "unchanged" may undercount slightly.)
    assert 85 <= mixed <= 150
    xm, t = mix_batch(x, y, 10, 0.8, 1.0, np.random.default_rng(0), label_smoothing=0.1, prob=0.0)
    assert torch.equal(xm, x)
    assert torch.allclose(t, torch.nn.functional.one_hot(y, 10).float() * 0.9 + 0.01)


# --- compile auto --------------------------------------------------------------------------------

def test_compile_auto_uses_cuda_graphs_on_cuda_only():
    assert training.compile_setting("auto", torch.device("cuda")) == "reduce-overhead"
    assert training.compile_setting("auto", torch.device("cpu")) is False
    assert training.compile_setting(True, torch.device("cpu")) is True
    assert training.compile_setting(False, torch.device("cuda")) is False


# --- the trainer with all of it ------------------------------------------------------------------

def test_trainer_keeps_the_ema_weights_and_resumes_exactly(prepared, tmp_path):
    summary = vt.train(RECIPE, prepared, tmp_path / "straight")
    assert summary["weights"] == "ema"
    ckpt = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resume = torch.load(tmp_path / "straight" / "resume" / "state.pt", weights_only=True)
    assert ckpt["weights"] == "ema"
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, resume["ema"]["module"][k]), k
    assert any(not torch.equal(v, resume["model"][k]) for k, v in ckpt["state_dict"].items())
    # The validation accuracy of the last epoch is that of the saved (EMA) weights.
    metrics = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    result = evaluate(tmp_path / "straight" / "checkpoint.pt", prepared, device="cpu")
    assert result["weights"] == "ema"
    assert result["test_accuracy"] == pytest.approx(metrics["val_acc"].iloc[-1], abs=1e-6)
    assert 0 <= result["test_accuracy_flip_tta"] <= 1 and result["n_correct_flip_tta"] <= result["n_test"]

    assert vt.train(RECIPE, prepared, tmp_path / "resumed", stop_after_epochs=2)["epochs"] == 2
    vt.train(RECIPE, prepared, tmp_path / "resumed")
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    pd.testing.assert_frame_equal(metrics[DETERMINISTIC_COLUMNS], b[DETERMINISTIC_COLUMNS], rtol=0, atol=1e-6)
    cb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["state_dict"]
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, cb[k]), k


def test_unknown_policy_is_refused(prepared, tmp_path):
    from attnlab.config import ConfigError

    bad = {"model": RECIPE["model"], "train": {**RECIPE["train"], "policy": "cutout"}}
    with pytest.raises(ConfigError, match="policy"):
        vt.train(bad, prepared, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side stream exists only on CUDA")
def test_policy_on_a_side_stream_matches_the_main_stream():
    from attnlab.vit.augment import policy_batch

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    idx = torch.randperm(64, device="cuda")[:48]
    policy = make_policy("autoaugment")
    torch.manual_seed(3)
    main = policy_batch(images, idx, policy, 8)
    torch.manual_seed(3)
    side = policy_batch(images, idx, policy, 8, torch.cuda.Stream())
    assert torch.equal(main, side)


def test_policy_batch_without_a_stream_is_the_policy_on_the_indexed_batch():
    from attnlab.vit.augment import policy_batch

    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    idx = torch.tensor([3, 1, 4, 15, 9, 2])
    policy = make_policy("trivialaugment")
    torch.manual_seed(9)
    got = policy_batch(images, idx, policy, 3)
    torch.manual_seed(9)
    # By hand: three groups of two, each through the policy with its own draw.
    want = torch.cat([policy(images[idx[i:i + 2]]) for i in (0, 2, 4)])
    assert torch.equal(got, want)
    assert torch.equal(policy_batch(images, idx, None, 3), images[idx])
