"""Train the ViT on prepared CIFAR-10 (rule ``train_vit``; ``python -m attnlab.vit.train``).

    python -m attnlab.vit.train --data PREPARED_DIR --config SECTION.yaml --out-dir DIR

The recipe is the ``vit`` section of config/config.yaml (GPU sizes) or
config/cpu.yaml: AdamW without decay on norms, biases and embeddings, linear
warm-up then per-step cosine decay, label smoothing, an optional
torchvision policy (AutoAugment, ...), crop/flip and mixup/cutmix on whole
batches where the data lives (``attnlab.vit.augment``), an optional EMA of
the weights (then validated and saved instead of the raw weights), bf16
autocast on CUDA. With ``time_budget_s`` the cosine schedule is fitted
to the budget after two measured epochs, and the run stops early, mid-epoch
if need be, rather than run past it. Every epoch the full training state goes
to ``DIR/resume/state.pt``; a restarted run continues from there and ends
with the same metrics as an uninterrupted one. Writes checkpoint.pt,
metrics.csv, curves.png and train_summary.json. Measurements of the presets:
docs/measurements/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab import training
from attnlab.checkpoint import load_pt
from attnlab.config import ConfigError, defaults, digest, load_config_file, resolve
from attnlab.io import torch_save, write_json
from attnlab.runtime import (Progress, autocast, describe_hardware, make_adamw, pick_device, seed_everything,
                              weight_decay_groups)
from attnlab.training import CALIBRATION_EPOCHS, DivergenceError, TimeBudget
from attnlab.vit.augment import make_policy, mix_batch, normalize, policy_batch, random_crop_flip
from attnlab.vit.evaluate import evaluate_arrays
from attnlab.vit.model import VisionTransformer

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]
# Columns that an interrupted-and-resumed run must reproduce exactly.
DETERMINISTIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
CURVE_PANELS = [
    {"ylabel": "cross-entropy", "series": [("train_loss", "train", 1.0), ("val_loss", "validation", 1.0)]},
    {"ylabel": "accuracy (%)", "series": [("train_acc", "train", 100.0), ("val_acc", "validation", 100.0)]},
]


def resolve_config(user: dict | None) -> dict:
    user = dict(user or {})
    user.pop("runs", None)  # the whole config.yaml section may be passed; runs are merged by the pipeline
    return resolve(defaults("vit"), user, "vit")


def load_prepared(data_dir: str | Path) -> tuple[dict, dict]:
    """The data stage's train.pt / test.pt (FORMATS.md); test serves as validation."""
    data_dir = Path(data_dir)
    out = []
    for split in ("train", "test"):
        path = data_dir / f"{split}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --data must be a folder prepared by "
                f"`python -m attnlab.data prepare-cifar10` (with train.pt and test.pt)")
        d = load_pt(path, "a prepared CIFAR-10 split written by `python -m attnlab.data prepare-cifar10`")
        if not isinstance(d, dict) or d.get("images") is None or d["images"].dtype != torch.uint8 \
                or d["images"].dim() != 4:
            raise ValueError(f"{path} must hold {{'images': uint8 (N, 3, H, W), 'labels', 'classes'}}")
        out.append(d)
    return out[0], out[1]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases, class token and positional embedding are left alone."""
    return weight_decay_groups(model, weight_decay, ("pos_embed", "cls_token"))


def train(cfg: dict | None, data_dir: str | Path, out_dir: str | Path,
          stop_after_epochs: int | None = None) -> dict:
    """Train (or resume) one run; returns the train_summary dict.

    ``stop_after_epochs`` ends this call after that many new epochs with only the
    resume state written (as if the job had been killed); a later call resumes.
    """
    cfg = resolve_config(cfg)
    mc, tc = cfg["model"], cfg["train"]
    if tc["augment"] not in ("crop_flip", "flip", "none"):
        raise ConfigError(f"vit.train.augment must be crop_flip, flip or none, got {tc['augment']!r}")
    try:
        policy = make_policy(tc["policy"])
    except ValueError as exc:
        raise ConfigError(f"vit.train.{exc}") from None
    out_dir = Path(out_dir)
    resume_path = out_dir / "resume" / "state.pt"
    run_digest = digest({"model": mc, "train": tc})

    if tc["num_threads"]:
        torch.set_num_threads(int(tc["num_threads"]))
    device = pick_device(tc["device"])
    training.require_accelerator(tc["device"], device, tc["require_gpu"], "vit")
    amp = bool(tc["amp"])
    seed_everything(tc["seed"])

    train_set, val_set = load_prepared(data_dir)
    classes = list(train_set["classes"])
    images, labels = train_set["images"], train_set["labels"].long()
    if tc["max_train_images"] is not None and tc["max_train_images"] < len(images):
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(tc["seed"]))
        keep = keep[: int(tc["max_train_images"])]
        images, labels = images[keep], labels[keep]
    images, labels = images.to(device), labels.to(device)
    val_images, val_labels = val_set["images"].to(device), val_set["labels"].long().to(device)
    n_train = len(images)

    model_config = dict(mc, in_chans=int(images.shape[1]), num_classes=len(classes))
    model = VisionTransformer(**model_config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_adamw(param_groups(model, tc["weight_decay"]), tc["lr"], betas=(0.9, 0.999))
    fwd = training.compile_model(model, training.compile_setting(tc["compile"], device), "vit")
    ema = training.WeightEMA(model, tc["ema_decay"]) if tc["ema_decay"] else None
    kept, weights = (ema.module, "ema") if ema is not None else (model, "last")  # validated and saved
    policy_stream = torch.cuda.Stream(device) if policy is not None and device.type == "cuda" else None

    batch_size = min(int(tc["batch_size"]), n_train)
    steps_per_epoch = n_train // batch_size  # drop the ragged last batch: fixed shapes, no tiny noisy step
    warmup_steps = int(round(tc["warmup_epochs"] * steps_per_epoch))
    rngs = {"order": torch.Generator().manual_seed(tc["seed"] + 1),
            "augment": torch.Generator(device=device).manual_seed(tc["seed"] + 2)}
    np_rng = np.random.default_rng(tc["seed"] + 3)
    mixing = (tc["mixup_alpha"] > 0 or tc["cutmix_alpha"] > 0) and tc["mix_prob"] > 0

    state = {"epoch": 0, "step": 0, "total_epochs": int(tc["epochs"]), "calibrated": False,
             "rows": [], "train_seconds": 0.0, "save_seconds": 0.0, "out_of_time": False}
    saved = training.load_resume(resume_path, run_digest, "vit")
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        training.restore_rng(saved["rng"], rngs, np_rng)
        state = saved["state"]
        print(f"[vit] resuming {out_dir} after epoch {state['epoch']}/{state['total_epochs']}", file=sys.stderr)

    budget = TimeBudget(tc["time_budget_s"], spent=state["train_seconds"])
    step_seconds = 0.0  # measured cost of one training step, for the budget's look-ahead
    model.train()
    new_epochs = 0
    while state["epoch"] < state["total_epochs"] and not state["out_of_time"]:
        if stop_after_epochs is not None and new_epochs >= stop_after_epochs:
            return {"stopped_after_epoch": state["epoch"]}
        epoch = state["epoch"] + 1
        t0 = training.now()
        total_steps = state["total_epochs"] * steps_per_epoch
        perm = torch.randperm(n_train, generator=rngs["order"]).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        progress = Progress(steps_per_epoch, f"vit epoch {epoch}/{state['total_epochs']}")
        shown_loss, steps = float("nan"), 0
        for i in range(steps_per_epoch):
            # What must still fit after the next step: validating and saving, estimated until
            # measured as half a training step per batch of validation images plus one step.
            after = state.get("val_save_seconds") or step_seconds * (len(val_images) / batch_size / 2 + 1)
            if not budget.fits(step_seconds + after):
                state["out_of_time"] = True
                break
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = normalize(policy_batch(images, idx, policy, tc["policy_groups"], policy_stream))
            y = labels[idx]
            if tc["augment"] != "none":
                pad = tc["crop_padding"] if tc["augment"] == "crop_flip" else 0
                x = random_crop_flip(x, pad, rngs["augment"])
            lr = training.lr_at(state["step"], total_steps, warmup_steps, tc["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            # Mixing stops for the last mix_stop_frac of the steps: the end of the
            # schedule fits the unmixed images the model is tested on.
            mix_now = mixing and state["step"] < (1.0 - tc["mix_stop_frac"]) * total_steps
            with autocast(device, amp):
                if mix_now:
                    x, target = mix_batch(x, y, len(classes), tc["mixup_alpha"], tc["cutmix_alpha"], np_rng,
                                          tc["label_smoothing"], tc["mix_prob"])
                    logits = fwd(x)
                    loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
                else:
                    logits = fwd(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=tc["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            opt.step()
            if ema is not None:
                ema.update(model)
            state["step"] += 1
            steps += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()  # against the unmixed label
            if i % 25 == 0 or i == steps_per_epoch - 1:  # one host sync every 25 steps
                shown_loss = loss.item()
                training.check_finite(shown_loss, "vit", epoch, i + 1, lr, tc["grad_clip"], resume_path.parent)
            progress.update(1, loss=shown_loss, lr=lr)
            step_seconds = (training.now() - t0) / steps
        if steps == 0:  # out of time before this epoch could start
            break
        train_time = training.now() - t0
        n_seen = steps * batch_size
        train_loss = loss_sum.item() / n_seen
        training.check_finite(train_loss, "vit", epoch, steps, lr, tc["grad_clip"], resume_path.parent)
        t_val = training.now()
        val_loss, val_acc, _ = evaluate_arrays(kept, val_images, val_labels, device, tc["eval_batch_size"], amp)
        seconds = training.now() - t0
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": correct.item() / n_seen,
               "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "seconds": seconds,
               "images_per_s": n_seen / train_time}
        state["rows"].append(row)
        state["epoch"] = epoch
        print(f"[vit] epoch {epoch}/{state['total_epochs']} train_loss={train_loss:.4f} "
              f"train_acc={row['train_acc']:.4f} val_loss={val_loss:.4f} val_acc={val_acc:.4f} "
              f"{seconds:.1f}s {row['images_per_s']:.0f} img/s"
              + (" (stopped mid-epoch: time budget)" if state["out_of_time"] else ""), file=sys.stderr, flush=True)
        if (tc["time_budget_s"] and not state["calibrated"] and epoch == CALIBRATION_EPOCHS
                and state["total_epochs"] > CALIBRATION_EPOCHS):
            # Fit the schedule to the budget from the fastest epoch so far plus a save:
            # epoch 1 pays for warm-up and compilation, and on a shared machine one
            # slow epoch should not cut the whole run short (the look-ahead above
            # still stops a slower epoch in time).
            per_epoch = min(r["seconds"] for r in state["rows"]) + state["save_seconds"]
            state["total_epochs"] = budget.fit_epochs(epoch, state["total_epochs"], per_epoch)
            state["calibrated"] = True
            print(f"[vit] time budget {tc['time_budget_s']}s: training {state['total_epochs']} epochs",
                  file=sys.stderr, flush=True)
        new_epochs += 1
        t_save = training.now()
        state["train_seconds"] = budget.spent()
        training.save_resume(resume_path, run_digest, model=model.state_dict(), optimizer=opt.state_dict(),
                             ema=None if ema is None else ema.state_dict(),
                             rng=training.capture_rng(rngs, np_rng), state=state)
        state["save_seconds"] = training.now() - t_save
        state["val_save_seconds"] = state["save_seconds"] + t_save - t_val
        state["train_seconds"] = budget.spent()

    rows = state["rows"]
    if not rows:
        raise ConfigError(f"vit.train.time_budget_s={tc['time_budget_s']} left no time for a single step")
    training.write_metrics(rows, METRIC_COLUMNS, out_dir / "metrics.csv")
    training.plot_curves(rows, out_dir / "curves.png", CURVE_PANELS, "ViT training")
    torch_save({"family": "vit", "model_config": model_config, "state_dict": kept.state_dict(),
                "weights": weights, "classes": classes, "config": cfg,
                "epoch": state["epoch"]}, out_dir / "checkpoint.pt")
    summary = {
        "device": str(device), "hardware": describe_hardware(device), "n_params": n_params,
        "epochs": state["epoch"], "planned_epochs": int(tc["epochs"]), "steps": state["step"],
        "weights": weights,
        "train_seconds": state["train_seconds"], "time_budget_s": tc["time_budget_s"],
        "stopped_by_budget": bool(tc["time_budget_s"]) and state["epoch"] < int(tc["epochs"]),
        "final_val_acc": rows[-1]["val_acc"],
        "best_val_acc": max(r["val_acc"] for r in rows),
        "best_epoch": training.best_epoch(rows, "val_acc", "max"),
        "n_train": n_train, "n_val": len(val_images), "config_digest": run_digest, "config": cfg,
    }
    write_json(out_dir / "train_summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m attnlab.vit.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with the prepared train.pt and test.pt")
    ap.add_argument("--config", help="the vit config section (YAML or JSON): {model: ..., train: ...}")
    ap.add_argument("--out-dir", required=True, help="run folder for checkpoint.pt, metrics.csv, curves.png, ...")
    ap.add_argument("--stop-after-epochs", type=int, default=None,
                    help="leave after this many new epochs with only the resume state written")
    args = ap.parse_args(argv)
    try:
        summary = train(load_config_file(args.config), args.data, args.out_dir, args.stop_after_epochs)
    except (ConfigError, FileNotFoundError, DivergenceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "final_val_acc" in summary:
        print(f"final validation accuracy {summary['final_val_acc']:.4f} after {summary['epochs']} epochs "
              f"({summary['train_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
