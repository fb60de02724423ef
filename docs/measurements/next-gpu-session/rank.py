"""Candidates of the next GPU session, and the pick of the winners (see session.sh).

    python3 rank.py setup DIR TRAIN_PT   # candidate configs + a 45k/5k split of the training images
    python3 rank.py pick DIR LOGDIR      # ranking.txt in LOGDIR; the winners' config file on stdout
"""

import json
import re
import sys
from pathlib import Path

import torch
import yaml

# GPT: no candidates any more. Its quality does not depend on the device, so the recipe was
# chosen on the CPU (docs/measurements/cpu-2026-11-27/README.md, "The GPU preset's recipe"),
# and the pipeline run of phase 2 confirms config.yaml's preset on the GPU. The whole GPU goes
# to the ViT candidates, and phase 2 keeps the time the GPT preset's longer schedule needs.

# ViT: the recipe the published ViT-Lite-7/4 result used (AutoAugment, crop/flip, no mixing), with
# more and smaller steps and a weight EMA, against the same with half the batches mixed (mixing
# off for the last 15% of steps), and against the same with stochastic depth 0.1 (CCT's
# transformers default to it); a fixed 30 epochs each on the held-out split. Overrides of
# config/config.yaml, which holds the measured 85.5% recipe until the winner replaces it.
VIT_RECIPE = {"epochs": 400, "batch_size": 512, "lr": 0.001, "warmup_epochs": 5, "policy": "autoaugment",
              "policy_groups": 8, "mix_prob": 0.0, "ema_decay": 0.999, "time_budget_s": 275}
VIT = {
    "vit-a": {"train": dict(VIT_RECIPE)},
    "vit-b": {"train": {**VIT_RECIPE, "mix_prob": 0.5, "mix_stop_frac": 0.15}},
    "vit-c": {"model": {"drop_path": 0.1}, "train": dict(VIT_RECIPE)},
}
VIT_RANK_TRAIN = {"epochs": 30, "warmup_epochs": 3, "time_budget_s": None}


def setup(out: Path, train_pt: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, c in VIT.items():
        cfg = {**c, "train": {**c["train"], **VIT_RANK_TRAIN}}
        (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    d = torch.load(train_pt, weights_only=True)
    perm = torch.randperm(len(d["labels"]), generator=torch.Generator().manual_seed(2026))
    hold = out / "holdout"
    hold.mkdir(exist_ok=True)
    for split, idx in (("train", perm[5000:]), ("test", perm[:5000])):
        torch.save({**d, "images": d["images"][idx], "labels": d["labels"][idx]}, hold / f"{split}.pt")
    print(f"candidates: {', '.join(VIT)}; holdout: {len(perm) - 5000} train / 5000 held out")


def vit_curve(log: Path) -> dict[int, float]:
    pat = re.compile(r"\[vit\] epoch (\d+)/\d+ .*val_acc=([0-9.]+) .* ([0-9]+) img/s")
    return {int(m[1]): float(m[2]) for m in pat.finditer(log.read_text())} if log.exists() else {}


def pick(out: Path, logdir: Path) -> None:
    lines, winner = [], {}
    # Candidates that finished no epoch (a crash, or cut off while compiling) are left out of the pick.
    curves = {n: c for n in VIT if (c := vit_curve(logdir / f"{n}.log"))}
    lines += [f"{n}: no epoch finished (see {n}.log)" for n in VIT if n not in curves]
    common = set.intersection(*(set(c) for c in curves.values())) if curves else set()
    if common:
        e = max(common)
        for n, c in curves.items():
            lines.append(f"{n}: {json.dumps(VIT[n])} -> held-out accuracy {c[e]:.4f} at epoch {e} "
                         f"(last epoch reached: {max(c)})")
        best = max(curves, key=lambda n: curves[n][e])
        winner["vit"] = VIT[best]
        lines.append(f"ViT winner: {best}")
    else:
        # No ViT candidate finished an epoch: fall back to the measured recipe of config.yaml, eagerly.
        winner["vit"] = {"train": {"compile": False}}
        lines.append("ViT: no candidate finished an epoch; the pipeline runs config.yaml's recipe eagerly")
    (logdir / "ranking.txt").write_text("\n".join(lines) + "\n")
    for n in VIT:
        for f in ("metrics.csv", "train_summary.json"):
            if (out / n / f).exists():
                (logdir / f"{n}-{f}").write_text((out / n / f).read_text())
    print(yaml.safe_dump(winner) if winner else "{}")


if __name__ == "__main__":
    cmd, a, b = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    setup(a, b) if cmd == "setup" else pick(a, b)
