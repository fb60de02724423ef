"""Train DialogueGPT on tiny-shakespeare dialogues (rule ``train_gpt``, homework 4f).

    python -m attnlab.gpt.train --data DIALOGUES_PT --vocab VOCAB --config SECTION.yaml --out-dir DIR

Every training dialogue is one example, starting with the start token; the
few longer than ``max_len`` are cut into pieces that overlap by one token, so
every target is trained on. Batches group dialogues of similar length.
With ``train.word_dropout`` p > 0 each input word of a training
batch (not the first token, not padding) is replaced by ``<unk>`` with
probability p, while the targets stay the real words (:func:`drop_words`).
With ``train.ema_decay`` set, an exponential moving average of the weights
(:class:`attnlab.training.WeightEMA`) is what is validated, sampled, kept and
saved (``"weights": "ema"``; else the trained weights, ``"raw"``).
Validation scores every target of every validation dialogue
(:mod:`attnlab.gpt.scoring`). The run keeps the epoch with the lowest
validation loss (``train.keep: best``) or the last one (``kept_epoch``), stays
inside ``time_budget_s`` (validation, samples and saves included), and resumes
from ``DIR/resume/state.pt`` (:class:`attnlab.training.RunLoop`) to the same
weights and metrics as an uninterrupted run, refusing a state written for
another config, dialogues.pt or vocabulary. Once training has ended it writes
checkpoint.pt, metrics.csv (``seconds``: an epoch's training, ``val_seconds``:
its validation and samples), samples.jsonl, curves.png and train_summary.json;
until then, and after an interruption, DIR holds only ``resume/``.
Measurements of the presets: docs/measurements/.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from attnlab import config as cfgmod
from attnlab import training
from attnlab.data import DataError
from attnlab.data.dialogues import collate_batch
from attnlab.data.vocab import vocab_digest
from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.gpt.data import load_data, load_tokenizer
from attnlab.gpt.generate import mask_ids, sample_prompts
from attnlab.gpt.model import DialogueGPT, DialogueLoss
from attnlab.gpt.scoring import bucketed_batches, score_dialogues, summarize, training_chunks
from attnlab.runtime import Progress, autocast, make_adamw, seed_everything, weight_decay_groups

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char",
                  "unk_rate", "lr", "seconds", "val_seconds", "tokens_per_s"]
OUTPUTS = ("checkpoint.pt", "metrics.csv", "samples.jsonl", "curves.png", "train_summary.json")
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


def drop_words(ids: torch.Tensor, mask: torch.Tensor, unk_id: int, p: float,
               generator: torch.Generator) -> torch.Tensor:
    """A copy of ``ids`` (B, T) with each real token after the first replaced by ``unk_id`` with probability ``p``.

    Position 0 (the start token, or a window's context token) and padding
    (``mask`` 0) are never replaced. ``generator`` lives on ``ids``' device;
    with ``p == 0`` nothing is drawn from it, so a run without word dropout
    is unchanged by its existence. ``p`` is checked once, with the config
    (``gpt.train.word_dropout`` in [0, 1)), not on every call.
    """
    if p == 0:
        return ids.clone()
    drop = torch.rand(ids.shape, generator=generator, device=ids.device) < p
    drop &= mask.bool()
    drop[:, 0] = False
    return ids.masked_fill(drop, unk_id)


def training_examples(data: dict, max_dialogues: Optional[int], max_len: int, data_path: str | Path) -> list:
    """The training examples (id tensors of at most ``max_len``) of all or the first ``max_dialogues`` dialogues."""
    dialogues = data["train"] if max_dialogues is None else data["train"][: int(max_dialogues)]
    chunks = training_chunks(dialogues, max_len)
    if not chunks:
        raise DataError(f"{data_path} has no training dialogue with a target token")
    return chunks


def summary_fields(rows: list[dict], kept: int) -> dict:
    """train_summary.json's GPT fields that follow from the metric rows."""
    best = rows[training.best_epoch(rows, "val_loss") - 1]
    row, final = rows[kept - 1], rows[-1]
    return {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "kept_val_loss": row["val_loss"], "kept_val_bits_per_char": row["val_bits_per_char"],
            "final_val_loss": final["val_loss"], "final_val_perplexity": final["val_perplexity"],
            "final_val_bits_per_char": final["val_bits_per_char"], "unk_rate": row["unk_rate"],
            "best_val_bits_per_char": min(r["val_bits_per_char"] for r in rows),
            "tokens_per_s": sum(r["tokens_per_s"] * r["seconds"] for r in rows)
            / max(sum(r["seconds"] for r in rows), 1e-9)}


def train(cfg: Optional[dict], data_path: str | Path, vocab_path: str | Path, out_dir: str | Path,
          stop_after_epochs: Optional[int] = None, log: Callable[[str], None] = training.log_to_stderr) -> dict:
    """Train (or resume) one run; return its train_summary. ``stop_after_epochs`` leaves after that many new
    epochs with only the resume state written, as if killed (``finished`` false); a later call resumes."""
    cfg = resolve_config(cfg)
    tc = cfg["train"]
    device, amp, compile_mode = training.resolve_runtime(tc, "gpt")
    data = load_data(data_path)
    tok = load_tokenizer(vocab_path, data["vocab_size"], data.get("vocab_digest"), f"{data_path}")
    digests = {"config": cfgmod.digest({"model": cfg["model"], "train": tc}),
               "dialogues.pt": training.content_digest(data), "vocab": vocab_digest(tok.itos)}
    banned = mask_ids(tok, tc["mask_tokens"])
    chunks = training_examples(data, tc["max_train_dialogues"], cfg["model"]["max_len"], data_path)
    lengths = [len(c) for c in chunks]
    steps_per_epoch = math.ceil(len(chunks) / tc["batch_size"])

    seed_everything(tc["seed"])
    mcfg = model_config(cfg, data["vocab_size"], data["pad_id"])
    model = DialogueGPT(**mcfg).to(device)
    # Decay matrices (incl. the tied embedding), not biases or LayerNorm gains (nanoGPT).
    opt = make_adamw(weight_decay_groups(model, tc["weight_decay"]), tc["lr"], betas=(0.9, 0.95))
    fwd = training.compile_model(model, compile_mode, "gpt", dynamic=True)
    loss_fn = DialogueLoss()
    # Its own stream, saved with the resume state: apart from the global one (init, dropout) and the
    # epoch orders (seed * 1000 + epoch), and on the device so that drawing needs no host copy.
    rngs = {"word_dropout": torch.Generator(device=device).manual_seed(tc["seed"] + 2**32)}
    loop = training.RunLoop("gpt", cfg, device, out_dir, OUTPUTS, digests, model, opt, rngs,
                            val_batches=len(data["val"]) / tc["batch_size"], keep=tc["keep"], log=log, samples=[])
    log(f"[gpt] {model.n_params() / 1e6:.2f}M parameters, {len(chunks)} training examples "
        f"({sum(lengths)} tokens), {steps_per_epoch} steps/epoch, device {device}")

    for epoch in loop.epochs(stop_after_epochs):
        total_steps = steps_per_epoch * loop.total_epochs
        model.train()
        gen = torch.Generator().manual_seed(tc["seed"] * 1000 + epoch)  # epoch order, resume-proof
        batches = bucketed_batches(lengths, tc["batch_size"], gen)
        progress = Progress(len(batches), f"gpt epoch {epoch}/{loop.total_epochs}")
        shown_loss = float("nan")
        # Summed on the device and read once an epoch: a .item() per step would wait for the GPU every
        # step. float64 sums the float32 losses exactly as the Python floats did (MPS has no float64).
        loss_sum = torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
        n_targets = torch.zeros((), device=device, dtype=torch.long)
        n_tokens = torch.zeros((), device=device, dtype=torch.long)
        for i, idx in enumerate(batches):
            if not loop.step_fits():
                break
            batch = collate_batch([chunks[i] for i in idx], data["pad_id"])
            # non_blocking: a blocking copy to a GPU would wait for the steps still queued there
            ids = batch["input_ids"].to(device, non_blocking=True)
            mask = batch["input_mask"].to(device, non_blocking=True)
            lr = training.lr_at(loop.step, total_steps, tc["warmup_steps"], tc["lr"], tc["min_lr_ratio"])
            for group in opt.param_groups:
                group["lr"] = lr
            inputs = drop_words(ids, mask, data["unk_id"], tc["word_dropout"], rngs["word_dropout"])
            with autocast(device, amp):
                logits = fwd(inputs, mask)
            loss = loss_fn(logits, ids, mask)  # the targets stay the real words
            if i % 25 == 0 or i == len(batches) - 1:  # one host sync every 25 steps
                shown_loss = loss.item()
                training.check_finite(shown_loss, "gpt", epoch, loop.step, lr, tc["grad_clip"], loop.resume_path.parent)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            opt.step()
            if loop.ema is not None:
                loop.ema.update(model)
            loop.stepped()
            n = mask[:, 1:].sum()
            loss_sum += loss.detach().to(loss_sum.dtype) * n
            n_targets += n
            n_tokens += mask.sum()
            progress.update(loss=shown_loss, lr=lr)
        if not loop.steps:  # out of time before this epoch could start
            break
        train_loss = loss_sum.item() / max(n_targets.item(), 1)  # waits for the queued steps: timed with them
        seconds = loop.end_training()
        training.check_finite(train_loss, "gpt", epoch, loop.step, lr, tc["grad_clip"], loop.resume_path.parent)

        scores = score_dialogues(loop.scored, data["val"], data["pad_id"], data["unk_id"],
                                 tc["eval_batch_size"], device=device, amp=amp)
        val = summarize(scores, data["val_chars"])
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["val_loss"],
               "val_perplexity": val["val_perplexity"], "val_bits_per_char": val["val_bits_per_char"],
               "unk_rate": val["unk_rate"], "lr": lr, "seconds": seconds, "tokens_per_s": n_tokens.item() / seconds}
        new = sample_prompts(loop.scored, tok, tc["prompts"], tc["sample_tokens"], banned)
        loop.state["samples"] += [{"epoch": epoch, **s} for s in new]
        log(f"[gpt] epoch {epoch}: train {row['train_loss']:.3f} val {row['val_loss']:.3f} "
            f"({row['val_bits_per_char']:.3f} bits/char) {seconds:.1f}s {row['tokens_per_s']:.0f} tok/s"
            + (" (stopped mid-epoch: time budget)" if loop.out_of_time else "")
            + "".join(f"\n    {s['text']}" for s in new))
        loop.end_epoch(row)

    return loop.finish(mcfg, METRIC_COLUMNS, CURVE_PANELS, "DialogueGPT training",
                       checkpoint={"start_id": data["start_id"], "pad_id": data["pad_id"], "unk_id": data["unk_id"]},
                       summary={"n_params": model.n_params(), "n_train_examples": len(chunks),
                                "n_train_tokens": sum(lengths), "model_config": mcfg},
                       describe=summary_fields,
                       texts={"samples.jsonl": "".join(json.dumps(s) + "\n" for s in loop.state["samples"])})


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    p = stage_parser("attnlab.gpt.train", __doc__, "dialogues", "vocab", "stop-after-epochs")
    p.add_argument("--config", default=None, help="the gpt section (YAML/JSON): {model: ..., train: ...}")
    p.add_argument("--out-dir", required=True, help="run folder for checkpoint.pt, metrics.csv, samples.jsonl, ...")
    args = p.parse_args(argv)
    with training.interruptible(args.out_dir):
        summary = train(cfgmod.load_config_file(args.config), args.data, args.vocab, args.out_dir,
                        args.stop_after_epochs)
    if summary["finished"]:
        print(json.dumps({k: summary[k] for k in ("epochs", "kept_epoch", "train_seconds",
                                                  "final_val_bits_per_char")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
