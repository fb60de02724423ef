"""What the two trainers share: schedule, time budget, weight EMA, device check, resume state, metrics, curves.

Plain functions and two small classes; the training loops themselves stay in
``attnlab.vit.train`` and ``attnlab.gpt.train``, written out as nanoGPT's is.
Every failure a user can cause raises one exception type with a one-line
message: ``DivergenceError`` (the loss stopped being finite) and
``attnlab.config.ConfigError`` (a resume state or device that does not fit).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from attnlab.checkpoint import load_pt
from attnlab.config import ConfigError
from attnlab.errors import AttnlabError
from attnlab.io import atomic_path, torch_save

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


def save_resume(path: Path, config_digest: str, **state: Any) -> None:
    """Write a resume state: tensors and plain containers only, so it loads with weights_only=True."""
    torch_save({"config_digest": config_digest, **state}, path)


def load_resume(path: Path, config_digest: str, family: str) -> dict | None:
    """The resume state at ``path`` (None when there is none); refuse one from another config."""
    if not path.is_file():
        return None
    state = load_pt(path, f"the resume state written by attnlab.{family}.train (delete {path.parent} to start over)")
    if not isinstance(state, dict) or state.get("config_digest") != config_digest:
        found = state.get("config_digest") if isinstance(state, dict) else None
        raise ConfigError(f"{path} was written by a run with config digest {found}, but this config has digest "
                          f"{config_digest}; delete {path.parent} to start over with the new config, or restore "
                          f"the old config to resume")
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
