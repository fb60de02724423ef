"""What the two trainers share: the run loop around their epochs, schedule, time budget, weight EMA, device.

:class:`RunLoop` owns a run's bookkeeping (state, resume with every RNG, the
time budget and its calibration, which epoch is kept, saves, outputs and the
common summary fields); the epoch and step loops and the validation stay in
``attnlab.vit.train`` and ``attnlab.gpt.train``, written out as nanoGPT's is.
Every failure a user can cause raises with a one-line message:
``DivergenceError`` (the loss stopped being finite), ``attnlab.config.ConfigError``
(a config or device that does not fit) and ``attnlab.checkpoint.CheckpointError``
(a resume state written for other inputs).

What a run leaves in its folder: while it trains, and after it is interrupted
(Ctrl-C, a kill, ``--stop-after-epochs``), only ``resume/state.pt`` (the last
finished epoch); the outputs are written once training has ended.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from attnlab.checkpoint import CheckpointError, load_pt
from attnlab.config import ConfigError
from attnlab.errors import AttnlabError, Interrupted
from attnlab.io import atomic_path, torch_save, write_json, write_text
from attnlab.runtime import describe_hardware, pick_device

# The trainers read time through this name, so tests can replace it with a fake clock.
now: Callable[[], float] = time.perf_counter

CALIBRATION_EPOCHS = 2  # epochs measured before a time budget fits the schedule


class DivergenceError(AttnlabError, RuntimeError):
    """The training loss became NaN or infinite."""


class WeightEMA:
    """Exponential moving average of a model's weights, updated after each optimizer step.

    ``avg <- avg + (1 - d) * (w - avg)`` over parameters and floating buffers, with
    d = min(decay, (1 + n) / (10 + n)) after n updates so early averages are not
    dominated by the initial weights (the ``num_updates`` warm-up of
    TensorFlow's ExponentialMovingAverage). Not
    ``torch.optim.swa_utils.AveragedModel``: its update reads its step counter
    from the device, a host sync per step. ``module`` is an eval-mode copy.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        # The tensor lists, built once rather than every step: load_state_dict copies in place.
        self._ema = self._floats(self.module)
        self._live, self._live_of = self._floats(model), model

    @staticmethod
    def _floats(model: torch.nn.Module) -> list[torch.Tensor]:
        return [t.detach() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]

    def decay_now(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        if model is not self._live_of:
            self._live, self._live_of = self._floats(model), model
        torch._foreach_lerp_(self._ema, self._live, 1.0 - self.decay_now())
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr_ratio: float = 0.0) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to ``base_lr * min_lr_ratio`` at ``total_steps``.

    Warm-up takes at most half the run, so a short run still decays.
    """
    warmup_steps = min(warmup_steps, total_steps // 2)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = base_lr * min_lr_ratio
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))


def check_finite(loss: float, family: str, epoch: int, step: int, lr: float, grad_clip: float | None,
                 resume_dir: Path | None) -> None:
    """Raise DivergenceError, with advice that fits the config, unless ``loss`` is finite."""
    if math.isfinite(loss):
        return
    advice = f"lower {family}.train.lr (now {lr:.3g})"
    advice += f" or lower {family}.train.grad_clip (now {grad_clip})" if grad_clip else \
        f" or set {family}.train.grad_clip (e.g. 1.0)"
    where = (f"; the last finished epoch is kept in {resume_dir}, but a rerun with a new config starts over"
             if resume_dir is not None and resume_dir.exists() else "")
    raise DivergenceError(f"training loss became {loss} at epoch {epoch}, step {step}: {advice}{where}")


def require_accelerator(setting: str, device: torch.device, required: bool, family: str) -> None:
    """Stop within seconds when a config sized for a GPU finds none (``device: auto`` fell back to the CPU).

    Called inside the training job, where the device is known (on SLURM the
    planning node has no GPU but the job's node does). An explicit ``device:
    cpu`` is the user's choice and is honoured.
    """
    if required and setting == "auto" and device.type == "cpu":
        raise ConfigError(
            f"{family}.train.require_gpu is true (the GPU preset, config/config.yaml) but this job found no GPU; "
            f"on the CPU these sizes would take hours. Add `--configfile config/cpu.yaml` to the snakemake "
            f"command for the CPU preset, or set {family}.train.require_gpu: false (or device: cpu) to train "
            f"them on the CPU anyway")


class TimeBudget:
    """An upper bound on a run's time, validation and saves included.

    ``spent()`` is wall time since the loop started plus what earlier attempts
    of a resumed run used. ``fits(seconds)`` says whether that much more work
    still ends inside the budget; without a budget everything fits.
    """

    def __init__(self, seconds: float | None, spent: float = 0.0) -> None:
        self.seconds = seconds
        self._base = spent
        self._start = now()

    def spent(self) -> float:
        return self._base + now() - self._start

    def fits(self, seconds: float) -> bool:
        return not self.seconds or self.spent() + seconds <= self.seconds

    def fit_epochs(self, epoch: int, planned: int, per_epoch: float) -> int:
        """How many epochs in all end inside the budget, at ``per_epoch`` seconds each from now."""
        if not self.seconds:
            return planned
        more = int(max(0.0, self.seconds - self.spent()) // max(per_epoch, 1e-9))
        return max(epoch, min(planned, epoch + more))


def capture_rng(generators: Mapping[str, torch.Generator], np_rng: Any = None) -> dict:
    """Every random state a run draws from: torch's global ones and the run's own generators."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {name: g.get_state() for name, g in generators.items()},
            "numpy": None if np_rng is None else np_rng.bit_generator.state}


def restore_rng(state: dict, generators: Mapping[str, torch.Generator], np_rng: Any = None) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])
    if np_rng is not None:
        np_rng.bit_generator.state = state["numpy"]


def save_resume(path: Path, digests: Mapping[str, str], **state: Any) -> None:
    """Write a resume state: tensors and plain containers only, so it loads with weights_only=True."""
    torch_save({"digests": dict(digests), **state}, path)


def content_digest(data: Any) -> str:
    """sha256 of data as loaded: tensors by dtype, shape and values, containers and plain values by their
    JSON form. The same for the same data however, and wherever, the file holding it was written."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().contiguous().cpu()
            h.update(f"tensor {t.dtype} {tuple(t.shape)}:".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            h.update(b"{")
            for key in sorted(x, key=str):
                h.update(json.dumps(str(key)).encode() + b":")
                feed(x[key])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(f"[{len(x)}:".encode())
            for item in x:
                feed(item)
            h.update(b"]")
        else:
            h.update(json.dumps(x, default=str).encode() + b";")

    feed(data)
    return h.hexdigest()


# What each digest covers, for the refusal message; the others are data files' content_digest.
DIGEST_NAMES = {"config": "config digest", "vocab": "vocabulary digest (of its token list)"}


def load_resume(path: Path, digests: Mapping[str, str], family: str) -> dict | None:
    """The resume state at ``path`` (None when there is none); refuse one written for other inputs.

    ``digests`` names what the run depends on (its config, its data files, its
    vocabulary); a state recorded with any other value is refused in one
    CheckpointError line that names both values.
    """
    if not path.is_file():
        return None
    state = load_pt(path, f"the resume state written by attnlab.{family}.train (delete {path.parent} to start over)")
    found = state.get("digests") if isinstance(state, dict) else None
    if not isinstance(found, dict):
        found = {}
    for key, want in digests.items():
        if found.get(key) != want:
            what = DIGEST_NAMES.get(key, f"{key} content digest")
            raise CheckpointError(
                f"{path} was written by a run with {what} {found.get(key) or '(none recorded)'}, but this run has "
                f"{what} {want}; "
                f"delete {path.parent} to start over with these inputs, or rerun with the ones it was written for")
    return state


def best_epoch(rows: Sequence[Mapping[str, Any]], key: str, mode: str = "min") -> int:
    """The epoch whose ``key`` is best (the first one on ties)."""
    pick = min if mode == "min" else max
    return pick(rows, key=lambda r: r[key])["epoch"]


def write_metrics(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(list(rows), columns=list(columns)).to_csv(tmp, index=False)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path, panels: Sequence[dict], title: str) -> None:
    """One panel per entry of ``panels``: {"ylabel", "series": [(column, label, scale)], "hline": (y, label)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for i, (column, label, scale) in enumerate(panel["series"]):
            # distinct markers keep a curve visible where another lies on top of it
            ax.plot(ep, [scale * r[column] for r in rows], marker="os^"[i % 3], markersize=3, label=label)
        if "hline" in panel:
            y, label = panel["hline"]
            ax.axhline(y, ls="--", color="gray", lw=1, label=label)
        ax.set(xlabel="epoch", ylabel=panel["ylabel"])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def compile_setting(setting: bool | str, device: torch.device) -> bool | str:
    """Resolve ``auto``: CUDA graphs (``reduce-overhead``) on CUDA, where a step is launch-bound; eager elsewhere."""
    if setting == "auto":
        return "reduce-overhead" if device.type == "cuda" else False
    return setting


def compile_model(model: torch.nn.Module, setting: bool | str, family: str, **kwargs: Any):
    """``torch.compile(model)`` when asked for (a mode name selects that mode); eager where it fails."""
    if not setting:
        return model
    mode = setting if isinstance(setting, str) else None
    try:
        return torch.compile(model, mode=mode, **kwargs)
    except Exception as exc:  # compiling is an optimisation only
        print(f"[{family}] torch.compile unavailable ({exc}); running eagerly", file=sys.stderr, flush=True)
        return model


def resolve_runtime(tc: Mapping[str, Any], family: str) -> tuple[torch.device, bool, bool | str]:
    """(device, amp, compile setting) of a run, resolved the same way for both trainers.

    Sets torch's thread count (0/null: its default), stops a GPU-sized config
    that found no GPU (:func:`require_accelerator`), turns bf16 autocast on only
    where the trainers use it (CUDA) and resolves ``compile: auto``.
    """
    if tc["num_threads"]:
        torch.set_num_threads(int(tc["num_threads"]))
    device = pick_device(tc["device"])
    require_accelerator(tc["device"], device, tc["require_gpu"], family)
    return device, bool(tc["amp"]) and device.type == "cuda", compile_setting(tc["compile"], device)


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def interruptible(out_dir: str | Path) -> Iterator[None]:
    """Turn Ctrl-C inside the block into :class:`~attnlab.errors.Interrupted` saying what the run left."""
    try:
        yield
    except KeyboardInterrupt:
        state = Path(out_dir) / "resume" / "state.pt"
        if state.is_file():
            raise Interrupted(f"interrupted; {state} keeps the last finished epoch: rerun the same command to "
                              f"continue from it") from None
        raise Interrupted("interrupted before the first epoch ended; nothing was saved") from None


class RunLoop:
    """The bookkeeping around a trainer's own epoch and step loops.

    It owns the run's state (epoch, step, metric rows, measured times); the
    resume state, saved after every epoch to ``out_dir/resume/state.pt`` with
    the model, optimizer, weight average and every RNG, and refused on resume
    when ``digests`` (config, data files, vocabulary) differ; the time budget
    (a look-ahead before each step, the epoch count fitted to it after
    ``CALIBRATION_EPOCHS``); which epoch's weights are kept (``keep``: ``last``,
    or ``best`` by ``best = (metric, "min" | "max")``); and the outputs, written
    only once training has ended. ``scored`` is what is validated and saved: the
    weight average (``weights: "ema"``) when ``train.ema_decay`` is set, else the
    trained weights (``"raw"``). A trainer reads::

        loop = RunLoop("gpt", cfg, device, out_dir, outputs, digests, model, opt, rngs)
        for epoch in loop.epochs(stop_after_epochs):
            for batch in batches:
                if not loop.step_fits():
                    break
                ...                                  # one optimizer step at lr_at(loop.step, ...)
                loop.stepped()
            if not loop.steps:                       # out of time before the epoch's first step
                break
            train_loss = ...                         # the epoch's one host sync
            row = {..., "seconds": loop.end_training()}
            ...                                      # validate loop.scored
            loop.end_epoch(row)
        return loop.finish(...)
    """

    def __init__(self, family: str, cfg: Mapping[str, Any], device: torch.device, out_dir: str | Path,
                 outputs: Sequence[str], digests: Mapping[str, str], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, rngs: Mapping[str, torch.Generator], np_rng: Any = None,
                 val_batches: float = 1.0, keep: str = "last", best: tuple[str, str] = ("val_loss", "min"),
                 log: Callable[[str], None] = log_to_stderr, **extra_state: Any) -> None:
        tc = cfg["train"]
        self.family, self.cfg, self.device, self.log = family, cfg, device, log
        self.out_dir, self.outputs, self.digests = Path(out_dir), tuple(outputs), dict(digests)
        self.model, self.opt, self.rngs, self.np_rng = model, optimizer, rngs, np_rng
        self.val_batches, self.keep, self.best = val_batches, keep, best
        self.time_budget = tc["time_budget_s"]
        self.ema = WeightEMA(model, tc["ema_decay"]) if tc["ema_decay"] else None
        self.scored, self.weights = (self.ema.module, "ema") if self.ema is not None else (model, "raw")
        self.resume_path = self.out_dir / "resume" / "state.pt"
        self.state = {"epoch": 0, "step": 0, "total_epochs": int(tc["epochs"]), "calibrated": False, "rows": [],
                      "train_seconds": 0.0, "save_seconds": 0.0, "val_save_seconds": None, "out_of_time": False,
                      "best_model": None, **extra_state}
        saved = load_resume(self.resume_path, self.digests, family)
        if saved is not None:
            try:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                if self.ema is not None:
                    self.ema.load_state_dict(saved["ema"])
                restore_rng(saved["rng"], rngs, np_rng)
                missing = set(self.state) - set(saved["state"])
                if missing:
                    raise KeyError(f"its state lacks {sorted(missing)}")
                self.state = saved["state"]
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise CheckpointError(f"{self.resume_path} does not fit this run's model, optimizer or state ({first}); "
                                      f"delete {self.resume_path.parent} to start over") from err
            log(f"[{family}] resuming {out_dir} after epoch {self.state['epoch']}/{self.state['total_epochs']}")
        for name in self.outputs:  # an earlier run's: the folder shows this run's outputs or none
            (self.out_dir / name).unlink(missing_ok=True)
        self.budget = TimeBudget(self.time_budget, spent=self.state["train_seconds"])
        self.stopped = False
        self.steps = 0
        self._step_seconds = 0.0  # measured cost of one training step, for the budget's look-ahead
        self._t0 = self._t_val = now()

    @property
    def step(self) -> int:
        """Optimizer steps taken in the whole run."""
        return self.state["step"]

    @property
    def total_epochs(self) -> int:
        return self.state["total_epochs"]

    @property
    def out_of_time(self) -> bool:
        return self.state["out_of_time"]

    def epochs(self, stop_after: int | None = None) -> Iterator[int]:
        """The epochs still to train, until the schedule ends, the budget runs out or ``stop_after`` new ones ran.

        ``stop_after`` leaves with only the resume state written, as if the job
        had been killed there; a later run resumes.
        """
        if stop_after is not None and stop_after < 1:
            raise ConfigError(f"--stop-after-epochs must be at least 1, got {stop_after}")
        new = 0
        while self.state["epoch"] < self.state["total_epochs"] and not self.state["out_of_time"]:
            if stop_after is not None and new >= stop_after:
                self.stopped = True
                return
            self.steps, self._t0 = 0, now()
            yield self.state["epoch"] + 1
            new += 1

    def step_fits(self) -> bool:
        """Whether one more step, and then validating and saving, still ends inside the time budget.

        Until measured, validation and the save are estimated as half a
        training step per validation batch plus one step.
        """
        after = self.state["val_save_seconds"] or self._step_seconds * (self.val_batches / 2 + 1)
        if self.budget.fits(self._step_seconds + after):
            return True
        self.state["out_of_time"] = True
        return False

    def stepped(self) -> None:
        self.state["step"] += 1
        self.steps += 1
        self._step_seconds = (now() - self._t0) / self.steps

    def end_training(self) -> float:
        """The epoch's training seconds; call it after reading the epoch's loss, which waits for its steps."""
        self._t_val = now()
        return self._t_val - self._t0

    def end_epoch(self, row: dict) -> None:
        """Record the epoch's row, adding ``val_seconds`` (the time since :meth:`end_training`); keep the best
        weights if asked; fit the epoch count to the budget after the calibration epochs; save the resume state."""
        st = self.state
        row["val_seconds"] = now() - self._t_val
        st["rows"].append(row)
        st["epoch"] = epoch = row["epoch"]
        if self.keep == "best" and best_epoch(st["rows"], *self.best) == epoch:
            st["best_model"] = {k: v.detach().to("cpu", copy=True) for k, v in self.scored.state_dict().items()}
        if (self.time_budget and not st["calibrated"] and epoch == CALIBRATION_EPOCHS
                and st["total_epochs"] > CALIBRATION_EPOCHS):
            # An epoch costs its steps, its validation and its save. The steps: the fastest epoch so far
            # (epoch 1 pays for warm-up and compilation, and on a shared machine one slow epoch should not
            # cut the whole run short; the look-ahead still stops a slower epoch in time). Validation and
            # save: as last measured (the first validation pays for warm-up too).
            per_epoch = min(r["seconds"] for r in st["rows"]) + row["val_seconds"] + st["save_seconds"]
            st["total_epochs"] = self.budget.fit_epochs(epoch, st["total_epochs"], per_epoch)
            st["calibrated"] = True
            self.log(f"[{self.family}] time budget {self.time_budget}s: training {st['total_epochs']} epochs")
        t_save = now()
        st["train_seconds"] = self.budget.spent()
        save_resume(self.resume_path, self.digests, model=self.model.state_dict(), optimizer=self.opt.state_dict(),
                    ema=None if self.ema is None else self.ema.state_dict(),
                    rng=capture_rng(self.rngs, self.np_rng), state=st)
        st["save_seconds"] = now() - t_save
        st["val_save_seconds"] = now() - self._t_val
        st["train_seconds"] = self.budget.spent()

    def finish(self, model_config: Mapping[str, Any], columns: Sequence[str], panels: Sequence[dict], title: str,
               checkpoint: Mapping[str, Any], summary: Mapping[str, Any],
               describe: Callable[[list, int], Mapping[str, Any]], texts: Mapping[str, str] | None = None) -> dict:
        """The run's train_summary (``finished`` false after ``stop_after``); once training has ended, write
        metrics.csv, curves.png, ``texts``, checkpoint.pt and train_summary.json (last).

        ``checkpoint`` and ``summary`` add the trainer's own fields; ``describe(rows,
        kept_epoch)`` those computed from the metric rows. An interruption while the
        outputs are written removes the ones already written.
        """
        rows, tc = self.state["rows"], self.cfg["train"]
        if not rows:
            raise ConfigError(f"{self.family}.train.time_budget_s={self.time_budget} left no time for a single step")
        last = rows[-1]["epoch"]
        kept = best_epoch(rows, *self.best) if self.keep == "best" else last
        out = {"finished": not self.stopped, "device": str(self.device), "hardware": describe_hardware(self.device),
               **summary, "epochs": last, "planned_epochs": int(tc["epochs"]), "steps": self.state["step"],
               "train_seconds": self.state["train_seconds"], "time_budget_s": self.time_budget,
               "stopped_by_budget": bool(self.time_budget) and last < int(tc["epochs"]),
               "selection": f"best_{self.best[0]}" if self.keep == "best" else "final", "kept_epoch": kept,
               "weights": self.weights, **describe(rows, kept), "digests": self.digests}
        if self.stopped:
            return out
        if kept != last:
            self.scored.load_state_dict(self.state["best_model"])
        written = []

        def write(name: str, writer: Callable[[Path], None]) -> None:
            written.append(self.out_dir / name)
            writer(written[-1])

        try:
            write("metrics.csv", lambda p: write_metrics(rows, columns, p))
            write("curves.png", lambda p: plot_curves(rows, p, panels, title))
            for name, text in (texts or {}).items():
                write(name, lambda p: write_text(p, text))
            write("checkpoint.pt", lambda p: torch_save({
                "family": self.family, "model_config": dict(model_config), "state_dict": self.scored.state_dict(),
                "config": self.cfg, "epoch": kept, "weights": self.weights, "digests": self.digests,
                **checkpoint}, p))
            write("train_summary.json", lambda p: write_json(p, out))
        except BaseException:  # Ctrl-C included: leave the resume state alone, not half the outputs
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return out
