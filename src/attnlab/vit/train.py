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
to ``DIR/resume/state.pt`` (:class:`attnlab.training.RunLoop`); a restarted
run continues from there and ends with the same metrics as an uninterrupted
one, and refuses a state written for another config or other data. Once
training has ended it writes checkpoint.pt (the last epoch's weights,
``"weights": "raw"``, or their average, ``"ema"``), metrics.csv (``seconds``:
an epoch's training, ``val_seconds``: its validation), curves.png and
train_summary.json; until then, and after an interruption, DIR holds only
``resume/``. Measurements of the presets: docs/measurements/.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab import training
from attnlab.checkpoint import load_pt
from attnlab.config import defaults, digest, load_config_file, resolve
from attnlab.data import DataError
from attnlab.data.cifar10 import check_prepared
from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.runtime import Progress, autocast, make_adamw, seed_everything, weight_decay_groups
from attnlab.vit.augment import make_policy, mix_batch, normalize, policy_batch, random_crop_flip
from attnlab.vit.evaluate import evaluate_arrays
from attnlab.vit.model import VisionTransformer

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "val_seconds",
                  "images_per_s"]
OUTPUTS = ("checkpoint.pt", "metrics.csv", "curves.png", "train_summary.json")
CURVE_PANELS = [
    {"ylabel": "cross-entropy", "series": [("train_loss", "train", 1.0), ("val_loss", "validation", 1.0)]},
    {"ylabel": "accuracy (%)", "series": [("train_acc", "train", 100.0), ("val_acc", "validation", 100.0)]},
]
PREPARE = "rerun `python -m attnlab.data prepare-cifar10`"


def resolve_config(user: dict | None) -> dict:
    user = dict(user or {})
    user.pop("runs", None)  # the whole config.yaml section may be passed; runs are merged by the pipeline
    return resolve(defaults("vit"), user, "vit")


def load_prepared(data_dir: str | Path) -> tuple[dict, dict]:
    """The data stage's train.pt / test.pt, checked to be CIFAR-shaped; test serves as validation."""
    data_dir = Path(data_dir)
    out = []
    for name in ("train", "test"):
        path = data_dir / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --data must be a folder prepared by "
                f"`python -m attnlab.data prepare-cifar10` (with train.pt and test.pt)")
        split = load_pt(path, "a prepared CIFAR-10 split written by `python -m attnlab.data prepare-cifar10`")
        check_prepared(split, path)  # CIFAR-shaped, labels within the classes
        out.append(split)
    train_set, test_set = out
    if list(test_set["classes"]) != list(train_set["classes"]) \
            or test_set["images"].shape[1:] != train_set["images"].shape[1:]:
        raise DataError(f"{data_dir}: train.pt and test.pt differ in their classes or image shape; {PREPARE}")
    return train_set, test_set


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases, class token and positional embedding are left alone."""
    return weight_decay_groups(model, weight_decay, ("pos_embed", "cls_token"))


def training_subset(split: dict, max_images: int | None, seed: int, device: torch.device) -> tuple:
    """The training images (N, C, H, W) and labels (N,) on ``device``: all, or ``max_images`` drawn with ``seed``."""
    images, labels = split["images"], split["labels"].long()
    if max_images is not None and max_images < len(images):
        subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: int(max_images)]
        images, labels = images[subset], labels[subset]
    return images.to(device), labels.to(device)


def summary_fields(rows: list[dict], kept: int) -> dict:
    """train_summary.json's ViT fields that follow from the metric rows."""
    return {"final_val_acc": rows[-1]["val_acc"], "best_val_acc": max(r["val_acc"] for r in rows),
            "best_epoch": training.best_epoch(rows, "val_acc", "max")}


def train(cfg: dict | None, data_dir: str | Path, out_dir: str | Path,
          stop_after_epochs: int | None = None, log: Callable[[str], None] = training.log_to_stderr) -> dict:
    """Train (or resume) one run; return its train_summary. ``stop_after_epochs`` leaves after that many new
    epochs with only the resume state written, as if killed (``finished`` false); a later call resumes."""
    cfg = resolve_config(cfg)
    mc, tc = cfg["model"], cfg["train"]
    policy = make_policy(tc["policy"])

    device, amp, compile_mode = training.resolve_runtime(tc, "vit")
    seed_everything(tc["seed"])
    train_set, val_set = load_prepared(data_dir)
    digests = {"config": digest({"model": mc, "train": tc}), "train.pt": training.content_digest(train_set),
               "test.pt": training.content_digest(val_set)}
    classes = list(train_set["classes"])
    images, labels = training_subset(train_set, tc["max_train_images"], tc["seed"], device)
    val_images, val_labels = val_set["images"].to(device), val_set["labels"].long().to(device)
    n_train = len(images)

    model_config = dict(mc, in_chans=int(images.shape[1]), num_classes=len(classes))
    model = VisionTransformer(**model_config).to(device)
    opt = make_adamw(param_groups(model, tc["weight_decay"]), tc["lr"], betas=(0.9, 0.999))
    fwd = training.compile_model(model, compile_mode, "vit")
    policy_stream = torch.cuda.Stream(device) if policy is not None and device.type == "cuda" else None
    batch_size = min(int(tc["batch_size"]), n_train)
    steps_per_epoch = n_train // batch_size  # drop the ragged last batch: fixed shapes, no tiny noisy step
    warmup_steps = int(round(tc["warmup_epochs"] * steps_per_epoch))
    rngs = {"order": torch.Generator().manual_seed(tc["seed"] + 1),
            "augment": torch.Generator(device=device).manual_seed(tc["seed"] + 2)}
    np_rng = np.random.default_rng(tc["seed"] + 3)
    mixing = (tc["mixup_alpha"] > 0 or tc["cutmix_alpha"] > 0) and tc["mix_prob"] > 0
    loop = training.RunLoop("vit", cfg, device, out_dir, OUTPUTS, digests, model, opt, rngs, np_rng,
                            val_batches=len(val_images) / batch_size, best=("val_acc", "max"), log=log)

    model.train()
    for epoch in loop.epochs(stop_after_epochs):
        total_steps = loop.total_epochs * steps_per_epoch
        perm = torch.randperm(n_train, generator=rngs["order"]).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        progress = Progress(steps_per_epoch, f"vit epoch {epoch}/{loop.total_epochs}")
        shown_loss = float("nan")
        for i in range(steps_per_epoch):
            if not loop.step_fits():
                break
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = normalize(policy_batch(images, idx, policy, tc["policy_groups"], policy_stream))
            y = labels[idx]
            if tc["augment"] != "none":
                x = random_crop_flip(x, tc["crop_padding"] if tc["augment"] == "crop_flip" else 0, rngs["augment"])
            lr = training.lr_at(loop.step, total_steps, warmup_steps, tc["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            # Mixing stops for the last mix_stop_frac of the steps: the end of the
            # schedule fits the unmixed images the model is tested on.
            with autocast(device, amp):
                if mixing and loop.step < (1.0 - tc["mix_stop_frac"]) * total_steps:
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
            if loop.ema is not None:
                loop.ema.update(model)
            loop.stepped()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()  # against the unmixed label
            if i % 25 == 0 or i == steps_per_epoch - 1:  # one host sync every 25 steps
                shown_loss = loss.item()
                training.check_finite(shown_loss, "vit", epoch, i + 1, lr, tc["grad_clip"], loop.resume_path.parent)
            progress.update(1, loss=shown_loss, lr=lr)
        if not loop.steps:  # out of time before this epoch could start
            break
        n_seen = loop.steps * batch_size
        train_loss = loss_sum.item() / n_seen  # waits for the queued steps: timed with them
        seconds = loop.end_training()
        training.check_finite(train_loss, "vit", epoch, loop.steps, lr, tc["grad_clip"], loop.resume_path.parent)
        val_loss, val_acc, _ = evaluate_arrays(loop.scored, val_images, val_labels, device, tc["eval_batch_size"],
                                               amp)
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": correct.item() / n_seen,
               "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "seconds": seconds,
               "images_per_s": n_seen / seconds}
        log(f"[vit] epoch {epoch}/{loop.total_epochs} train_loss={train_loss:.4f} train_acc={row['train_acc']:.4f} "
            f"val_loss={val_loss:.4f} val_acc={val_acc:.4f} {seconds:.1f}s {row['images_per_s']:.0f} img/s"
            + (" (stopped mid-epoch: time budget)" if loop.out_of_time else ""))
        loop.end_epoch(row)

    return loop.finish(model_config, METRIC_COLUMNS, CURVE_PANELS, "ViT training", checkpoint={"classes": classes},
                       summary={"n_params": sum(p.numel() for p in model.parameters()), "n_train": n_train,
                                "n_val": len(val_images), "config": cfg},
                       describe=summary_fields)


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.vit.train", __doc__, "stop-after-epochs")
    ap.add_argument("--data", required=True, help="folder with the prepared train.pt and test.pt")
    ap.add_argument("--config", help="the vit config section (YAML or JSON): {model: ..., train: ...}")
    ap.add_argument("--out-dir", required=True, help="run folder for checkpoint.pt, metrics.csv, curves.png, ...")
    args = ap.parse_args(argv)
    with training.interruptible(args.out_dir):
        summary = train(load_config_file(args.config), args.data, args.out_dir, args.stop_after_epochs)
    if summary["finished"]:
        print(f"final validation accuracy {summary['final_val_acc']:.4f} after {summary['epochs']} epochs "
              f"({summary['train_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
