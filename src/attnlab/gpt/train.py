"""Train DialogueGPT on tiny-shakespeare dialogues (rule ``train_gpt``, seed 4f).

    python -m attnlab.gpt.train --data DIALOGUES_PT --vocab VOCAB --config SECTION.yaml --out-dir DIR

Every training dialogue is one example, starting with the start token; the
few longer than ``max_len`` are cut into pieces that overlap by one token, so
every target is trained on. Batches group dialogues of similar length.
With ``train.word_dropout`` p > 0 each input word of a training
batch (not the first token, not padding) is replaced by ``<unk>`` with
probability p, while the targets stay the real words (:func:`drop_words`).
With ``train.ema_decay`` set, an exponential moving average of the weights
(:class:`attnlab.training.WeightEMA`) is what is validated, sampled, kept and
saved (``"weights": "ema"``).
Validation scores every target of every validation dialogue
(:mod:`attnlab.gpt.scoring`). The run keeps the epoch with the lowest
validation loss (``train.keep: best``) or the last one, stays inside
``time_budget_s`` (validation, samples and saves included), and resumes from
``DIR/resume/state.pt`` to the same weights and metrics as an uninterrupted
run. Writes checkpoint.pt, metrics.csv, samples.jsonl, curves.png and
train_summary.json. Measurements of the presets: docs/measurements/.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

import torch

from attnlab import config as cfgmod
from attnlab import training
from attnlab.data.dialogues import collate_batch
from attnlab.gpt.data import load_data, load_tokenizer
from attnlab.gpt.generate import mask_ids, sample_prompts
from attnlab.gpt.model import DialogueGPT, DialogueLoss
from attnlab.gpt.scoring import bucketed_batches, score_dialogues, summarize, training_chunks
from attnlab.io import torch_save, write_json, write_text
from attnlab.runtime import Progress, autocast, describe_hardware, make_adamw, pick_device, seed_everything, \
    weight_decay_groups
from attnlab.training import CALIBRATION_EPOCHS, DivergenceError, TimeBudget

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char",
                  "unk_rate", "lr", "seconds", "tokens_per_s"]
CURVE_PANELS = [
    {"ylabel": "loss (nats / token)", "series": [("train_loss", "train", 1.0), ("val_loss", "validation", 1.0)]},
    # No reference line from another model: word-level bits/char of this text are not comparable with a
    # character-level model's on its own split (the writeup says why).
    {"ylabel": "validation bits / character", "series": [("val_bits_per_char", "validation", 1.0)]},
]


def resolve_config(user: Optional[dict]) -> dict:
    user = dict(user or {})
    user.pop("runs", None)  # a whole gpt section may be passed; runs are the pipeline's business
    return cfgmod.resolve(cfgmod.defaults("gpt"), user, "gpt")


def model_config(cfg: dict, vocab_size: int, pad_id: int) -> dict:
    m = cfg["model"]
    return {"vocab_size": vocab_size, "d_model": m["d_model"], "n_heads": m["n_heads"],
            "n_layers": m["n_layers"], "max_len": m["max_len"], "dropout": m["dropout"],
            "pad_id": pad_id, "tie_weights": m["tie_weights"]}


def _write_progress(out_dir: Path, rows: list[dict], samples: list[dict]) -> None:
    training.write_metrics(rows, METRIC_COLUMNS, out_dir / "metrics.csv")
    write_text(out_dir / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    training.plot_curves(rows, out_dir / "curves.png", CURVE_PANELS, "DialogueGPT training")


def drop_words(ids: torch.Tensor, mask: torch.Tensor, unk_id: int, p: float,
               generator: torch.Generator) -> torch.Tensor:
    """A copy of ``ids`` (B, T) with each real token after the first replaced by ``unk_id`` with probability ``p``.

    Position 0 (the start token, or a window's context token) and padding
    (``mask`` 0) are never replaced. ``generator`` lives on ``ids``' device;
    with ``p == 0`` nothing is drawn from it, so a run without word dropout
    is unchanged by its existence.
    """
    if not 0 <= p < 1:
        raise ValueError(f"word dropout must be in [0, 1), got {p}")
    if p == 0:
        return ids.clone()
    drop = torch.rand(ids.shape, generator=generator, device=ids.device) < p
    drop &= mask.bool()
    drop[:, 0] = False
    return ids.masked_fill(drop, unk_id)


def train(cfg: Optional[dict], data_path: str | Path, vocab_path: str | Path, out_dir: str | Path,
          stop_after_epochs: Optional[int] = None, log=None) -> dict:
    """Train (or resume) one run; returns train_summary.json's content.

    ``stop_after_epochs`` ends this call after that many new epochs with only the
    resume state and per-epoch files written (as if the job had been killed).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfg = resolve_config(cfg)
    tcfg = cfg["train"]
    if tcfg["keep"] not in ("best", "last"):
        raise cfgmod.ConfigError(f"gpt.train.keep must be best or last, got {tcfg['keep']!r}")
    if not 0 <= tcfg["word_dropout"] < 1:
        raise cfgmod.ConfigError(f"gpt.train.word_dropout must be in [0, 1), got {tcfg['word_dropout']!r}")
    if tcfg["ema_decay"] is not None and not 0 < tcfg["ema_decay"] < 1:
        raise cfgmod.ConfigError(f"gpt.train.ema_decay must be in (0, 1) or null, got {tcfg['ema_decay']!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tcfg["num_threads"]:
        torch.set_num_threads(int(tcfg["num_threads"]))
    device = pick_device(tcfg["device"])
    training.require_accelerator(tcfg["device"], device, tcfg["require_gpu"], "gpt")
    amp = bool(tcfg["amp"]) and device.type == "cuda"
    cfg_digest = cfgmod.digest({"model": cfg["model"], "train": tcfg})  # what this job trains with

    data = load_data(data_path)
    tok = load_tokenizer(vocab_path, data["vocab_size"])
    banned = mask_ids(tok, tcfg["mask_tokens"])
    train_dialogues = data["train"]
    if tcfg["max_train_dialogues"] is not None:
        train_dialogues = train_dialogues[: int(tcfg["max_train_dialogues"])]
    chunks = training_chunks(train_dialogues, cfg["model"]["max_len"])
    if not chunks:
        raise ValueError(f"{data_path} has no training dialogue with a target token")
    lengths = [len(c) for c in chunks]
    steps_per_epoch = math.ceil(len(chunks) / tcfg["batch_size"])

    seed_everything(tcfg["seed"])
    mcfg = model_config(cfg, data["vocab_size"], data["pad_id"])
    model = DialogueGPT(**mcfg).to(device)
    # Decay matrices (incl. the tied embedding), not biases or LayerNorm gains (nanoGPT).
    opt = make_adamw(weight_decay_groups(model, tcfg["weight_decay"]), tcfg["lr"], betas=(0.9, 0.95))
    fwd = training.compile_model(model, tcfg["compile"], "gpt", dynamic=True)
    loss_fn = DialogueLoss()
    ema = training.WeightEMA(model, tcfg["ema_decay"]) if tcfg["ema_decay"] else None
    # What is validated, sampled, kept and saved: the average if there is one, else the trained weights.
    scored, weights = (ema.module, "ema") if ema is not None else (model, "last")
    # Its own stream, saved with the resume state: apart from the global one (init, dropout) and the
    # epoch orders (seed * 1000 + epoch), and on the device so that drawing needs no host copy.
    rngs = {"word_dropout": torch.Generator(device=device).manual_seed(tcfg["seed"] + 2**32)}

    resume_path = out_dir / "resume" / "state.pt"
    state = {"epoch": 0, "step": 0, "total_epochs": int(tcfg["epochs"]), "calibrated": False, "rows": [],
             "samples": [], "train_seconds": 0.0, "save_seconds": 0.0, "out_of_time": False,
             "best_epoch": None, "best_model": None}
    saved = training.load_resume(resume_path, cfg_digest, "gpt")
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        training.restore_rng(saved["rng"], rngs)
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        state = saved["state"]
        log(f"[gpt] resuming {out_dir} after epoch {state['epoch']}/{state['total_epochs']}")

    log(f"[gpt] {model.n_params() / 1e6:.2f}M parameters, {len(chunks)} training examples "
        f"({sum(lengths)} tokens), {steps_per_epoch} steps/epoch, device {device}")
    budget = TimeBudget(tcfg["time_budget_s"], spent=state["train_seconds"])
    step_seconds = 0.0  # measured cost of one training step, for the budget's look-ahead
    new_epochs = 0
    while state["epoch"] < state["total_epochs"] and not state["out_of_time"]:
        if stop_after_epochs is not None and new_epochs >= stop_after_epochs:
            return {"stopped_after_epoch": state["epoch"]}
        epoch = state["epoch"] + 1
        total_steps = steps_per_epoch * state["total_epochs"]
        model.train()
        gen = torch.Generator().manual_seed(tcfg["seed"] * 1000 + epoch)  # epoch order, resume-proof
        batches = bucketed_batches(lengths, tcfg["batch_size"], gen)
        progress = Progress(len(batches), f"gpt epoch {epoch}/{state['total_epochs']}")
        t0, steps, shown_loss = training.now(), 0, float("nan")
        # Summed on the device and read once an epoch: a .item() per step would wait for the GPU every
        # step. float64 sums the float32 losses exactly as the Python floats did (MPS has no float64).
        loss_sum = torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
        n_targets = torch.zeros((), device=device, dtype=torch.long)
        n_tokens = torch.zeros((), device=device, dtype=torch.long)
        for i, idx in enumerate(batches):
            # Validation, samples and the save must still fit after the next step (estimated until
            # measured as half a training step per batch of validation dialogues plus one step).
            after = state.get("val_save_seconds") or step_seconds * (len(data["val"]) / tcfg["batch_size"] / 2 + 1)
            if not budget.fits(step_seconds + after):
                state["out_of_time"] = True
                break
            batch = collate_batch([chunks[i] for i in idx], data["pad_id"])
            ids, mask = batch["input_ids"].to(device), batch["input_mask"].to(device)
            lr = training.lr_at(state["step"], total_steps, tcfg["warmup_steps"], tcfg["lr"], tcfg["min_lr_ratio"])
            for group in opt.param_groups:
                group["lr"] = lr
            inputs = drop_words(ids, mask, data["unk_id"], tcfg["word_dropout"], rngs["word_dropout"])
            with autocast(device, amp):
                logits = fwd(inputs, mask)
            loss = loss_fn(logits, ids, mask)  # the targets stay the real words
            if i % 25 == 0 or i == len(batches) - 1:  # one host sync every 25 steps
                shown_loss = loss.item()
                training.check_finite(shown_loss, "gpt", epoch, state["step"], lr, tcfg["grad_clip"],
                                      resume_path.parent)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            opt.step()
            if ema is not None:
                ema.update(model)
            state["step"] += 1
            steps += 1
            n = mask[:, 1:].sum()
            loss_sum += loss.detach().to(loss_sum.dtype) * n
            n_targets += n
            n_tokens += mask.sum()
            progress.update(loss=shown_loss, lr=lr)
            step_seconds = (training.now() - t0) / steps
        if steps == 0:  # out of time before this epoch could start
            break
        train_loss = loss_sum.item() / max(n_targets.item(), 1)  # waits for the queued steps: timed with them
        seconds = training.now() - t0
        training.check_finite(train_loss, "gpt", epoch, state["step"], lr, tcfg["grad_clip"], resume_path.parent)

        t_val = training.now()
        scores = score_dialogues(scored, data["val"], data["pad_id"], data["unk_id"],
                                 tcfg["eval_batch_size"], device=device, amp=amp)
        val = summarize(scores, data["val_chars"])
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["val_loss"],
               "val_perplexity": val["val_perplexity"], "val_bits_per_char": val["val_bits_per_char"],
               "unk_rate": val["unk_rate"], "lr": lr, "seconds": seconds, "tokens_per_s": n_tokens.item() / seconds}
        state["rows"].append(row)
        state["epoch"] = epoch
        if training.best_epoch(state["rows"], "val_loss") == epoch:
            state["best_epoch"] = epoch
            state["best_model"] = {k: v.detach().to("cpu", copy=True) for k, v in scored.state_dict().items()}
        new = sample_prompts(scored, tok, tcfg["prompts"], tcfg["sample_tokens"], banned)
        state["samples"] += [{"epoch": epoch, **s} for s in new]
        log(f"[gpt] epoch {epoch}: train {row['train_loss']:.3f} val {row['val_loss']:.3f} "
            f"({row['val_bits_per_char']:.3f} bits/char) {seconds:.1f}s {row['tokens_per_s']:.0f} tok/s"
            + (" (stopped mid-epoch: time budget)" if state["out_of_time"] else ""))
        for s in new:
            log(f"    {s['text']}")
        if (tcfg["time_budget_s"] and not state["calibrated"] and epoch == CALIBRATION_EPOCHS
                and state["total_epochs"] > CALIBRATION_EPOCHS):
            # as in attnlab.vit.train: the fastest epoch so far, validation and save included
            per_epoch = min(r["seconds"] for r in state["rows"]) + state.get("val_save_seconds", 0.0)
            state["total_epochs"] = budget.fit_epochs(epoch, state["total_epochs"], per_epoch)
            state["calibrated"] = True
            log(f"[gpt] time budget {tcfg['time_budget_s']}s: training {state['total_epochs']} epochs")
        _write_progress(out_dir, state["rows"], state["samples"])
        new_epochs += 1
        t_save = training.now()
        state["train_seconds"] = budget.spent()
        training.save_resume(resume_path, cfg_digest, model=model.state_dict(), optimizer=opt.state_dict(),
                             rng=training.capture_rng(rngs), ema=None if ema is None else ema.state_dict(),
                             state=state)
        state["save_seconds"] = training.now() - t_save
        state["val_save_seconds"] = training.now() - t_val
        state["train_seconds"] = budget.spent()

    rows = state["rows"]
    if not rows:
        raise cfgmod.ConfigError(f"gpt.train.time_budget_s={tcfg['time_budget_s']} left no time for a single step")
    # Rewrite the per-run files too, so a run resumed after its last epoch is complete.
    _write_progress(out_dir, rows, state["samples"])
    kept = state["best_epoch"] if tcfg["keep"] == "best" else rows[-1]["epoch"]
    if kept != rows[-1]["epoch"]:
        scored.load_state_dict(state["best_model"])
    torch_save({"family": "gpt", "model_config": mcfg, "state_dict": scored.state_dict(), "config": cfg,
                "epoch": kept, "weights": weights, "start_id": data["start_id"], "pad_id": data["pad_id"],
                "unk_id": data["unk_id"]}, out_dir / "checkpoint.pt")
    row = rows[kept - 1]
    best = rows[state["best_epoch"] - 1]
    summary = {
        "device": str(device), "hardware": describe_hardware(device), "n_params": model.n_params(),
        "epochs": rows[-1]["epoch"], "planned_epochs": int(tcfg["epochs"]),
        "train_seconds": state["train_seconds"], "time_budget_s": tcfg["time_budget_s"],
        "stopped_by_budget": bool(tcfg["time_budget_s"]) and rows[-1]["epoch"] < int(tcfg["epochs"]),
        "selection": "best_val_loss" if tcfg["keep"] == "best" else "final", "kept_epoch": kept,
        "weights": weights,
        "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
        "kept_val_loss": row["val_loss"], "kept_val_bits_per_char": row["val_bits_per_char"],
        "final_val_loss": rows[-1]["val_loss"], "final_val_perplexity": rows[-1]["val_perplexity"],
        "final_val_bits_per_char": rows[-1]["val_bits_per_char"], "unk_rate": row["unk_rate"],
        "best_val_bits_per_char": min(r["val_bits_per_char"] for r in rows),
        "tokens_per_s": sum(r["tokens_per_s"] * r["seconds"] for r in rows) / max(sum(r["seconds"] for r in rows),
                                                                               1e-9),
        "n_train_examples": len(chunks), "n_train_tokens": sum(lengths),
        "config_digest": cfg_digest, "model_config": mcfg,
    }
    write_json(out_dir / "train_summary.json", summary)
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnlab.gpt.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dialogues.pt from `attnlab.data build-vocab`")
    p.add_argument("--vocab", required=True, help="vocab.json written with it")
    p.add_argument("--config", default=None, help="the gpt section (YAML/JSON): {model: ..., train: ...}")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="leave after this many new epochs with only the resume state written")
    args = p.parse_args(argv)
    try:
        summary = train(cfgmod.load_config_file(args.config), args.data, args.vocab, args.out_dir,
                        args.stop_after_epochs)
    except (cfgmod.ConfigError, FileNotFoundError, DivergenceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "epochs" in summary:
        print(json.dumps({k: summary[k] for k in ("epochs", "kept_epoch", "train_seconds",
                                                  "final_val_bits_per_char")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
