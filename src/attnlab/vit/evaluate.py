"""Evaluate a ViT checkpoint on any CIFAR-10 source (rule ``evaluate_vit``).

``python -m attnlab.vit.evaluate --checkpoint CKPT --data SOURCE --out JSON [--confusion PNG]``
where SOURCE is anything ``attnlab.data.cifar10.load_split`` accepts (prepared
folder or .pt file, official tarball or its extracted folder, ImageFolder folder
or .tar.gz with a ``test/`` split). The JSON records the source it used, the
plain accuracy (``test_accuracy``, the headline figure) and, labelled apart,
the accuracy with horizontal-flip test-time augmentation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.io import atomic_path, write_json
from attnlab.runtime import autocast, pick_device
from attnlab.vit.augment import normalize
from attnlab.vit.model import load_checkpoint


@torch.no_grad()
def evaluate_arrays(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    batch_size: int = 1024, amp: bool = True, flip_tta: bool = False
                    ) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and predictions (N,) of ``model`` on uint8 images (N, 3, H, W).

    ``flip_tta`` scores the mean of the logits of each image and its mirror image.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    preds = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device, non_blocking=True))
        y = labels[i:i + batch_size].to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x).float()
            if flip_tta:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        preds.append(logits.argmax(dim=1))
    model.train(was_training)
    preds = torch.cat(preds).cpu()
    n = max(len(images), 1)
    return loss_sum.item() / n, (preds == labels.cpu()).float().mean().item(), preds


def evaluate(checkpoint: str | Path, data: str | Path, device: str = "auto", batch_size: int = 512) -> dict:
    """Top-1 accuracy, per-class accuracy and confusion matrix (rows true, columns predicted) on the test split."""
    from attnlab.data import DataError
    from attnlab.data.cifar10 import load_split

    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model.to(dev)
    split = load_split(data, "test")
    classes = list(split["classes"])
    trained_on = ckpt.get("classes")
    if trained_on is not None and list(trained_on) != classes:
        raise DataError(f"{data} has classes {classes} but {checkpoint} was trained on {list(trained_on)}")
    labels = split["labels"].long()
    _, acc, preds = evaluate_arrays(model, split["images"], labels, dev, batch_size, amp=dev.type == "cuda")
    _, acc_tta, preds_tta = evaluate_arrays(model, split["images"], labels, dev, batch_size,
                                            amp=dev.type == "cuda", flip_tta=True)
    k = len(classes)
    confusion = torch.bincount(labels * k + preds, minlength=k * k).view(k, k)
    per_class = {c: (confusion[i, i] / confusion[i].sum()).item() if confusion[i].sum() else None
                 for i, c in enumerate(classes)}
    weights = ckpt.get("weights", "raw")  # the trained weights ("raw") or their average ("ema")
    weights = "raw" if weights == "last" else weights  # what checkpoints called "raw" before 2026-12
    return {
        "test_accuracy": acc,
        "n_test": len(labels),
        "n_correct": int(confusion.diag().sum()),
        "test_accuracy_flip_tta": acc_tta,
        "n_correct_flip_tta": int((preds_tta == labels).sum()),
        "tta": "flip: the class with the highest mean logit over the image and its mirror image",
        "weights": weights,
        "source": str(split.get("source", data)),
        "checkpoint": str(checkpoint),
        "epoch": ckpt.get("epoch"),
        "classes": classes,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def plot_confusion(result: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = torch.tensor(result["confusion"], dtype=torch.float64)
    frac = conf / conf.sum(dim=1, keepdim=True).clamp(min=1)
    classes = result["classes"]
    # Whole percentages in 10-point type: two decimals in 7-point type were illegible at the writeup's size.
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(100 * frac.numpy(), cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{100 * frac[i, j]:.0f}", ha="center", va="center", fontsize=10,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=10)
    ax.set_yticks(range(len(classes)), classes, fontsize=10)
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("true", fontsize=11)
    # counts, not a rounded percentage: the writeup rounds the accuracy its own way, and the two must not differ
    ax.set_title(f"{result['n_correct']} of {result['n_test']} test images correct; "
                 "cells: % of the true class", fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.046, label="% of the true class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=200)
    plt.close(fig)


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.vit.evaluate", __doc__, "vit-checkpoint", "cifar-test", "device")
    ap.add_argument("--out", required=True, help="JSON to write (eval.json)")
    ap.add_argument("--confusion", help="PNG for the confusion matrix")
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args(argv)
    result = evaluate(args.checkpoint, args.data, args.device, args.batch_size)
    write_json(args.out, result)
    if args.confusion:
        plot_confusion(result, args.confusion)
    print(f"test accuracy {result['test_accuracy']:.4f} on {result['n_test']} images from {result['source']} "
          f"({result['test_accuracy_flip_tta']:.4f} with flip test-time augmentation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
