"""Planning-time checks of the merged pipeline config: one line per problem, naming the key.

The Snakefile runs them before any job, in this order:

* ``check_size``: YAML aliases that expand a small ``--configfile`` into
  billions of values (a "billion laughs" file) are refused before anything
  walks the tree (Snakemake's own loader keeps aliases shared, so reading such
  a file is quick; every later walk would not be).
* ``check_schema``: workflow/schemas/config.schema.yaml, every violation on
  one line (``attnlab.config.describe``), in front of Snakemake's own report.
* ``check_semantics``: what JSON schema cannot say, for the base sections and
  every run of a sweep: a patch size or head count that must divide another
  key, finite numbers (YAML's ``.nan``/``.inf`` pass the schema's ranges),
  CIFAR-10's image side, data sources that are outputs of the pipeline, and
  sizes whose product cannot fit in this machine's memory (``memory_need``).
  New cross-field checks belong here.

Every check raises ``attnlab.config.ConfigError``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from attnlab.config import ConfigError, describe, expanded_size, merge, run_names, schema

INTRO = ("invalid pipeline config (config/config.yaml + --configfile/--config overrides; keys are documented "
         "in config/README.md):\n  ")

# Every file the pipeline writes lives under these folders of the working directory.
OUTPUT_DIRS = ("results", ".snakemake")
CIFAR10_SIDE = 32  # every CIFAR-10 source is refused unless its images are 32x32 (attnlab.data.cifar10)
CIFAR10_TRAIN_IMAGES = 50_000


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(INTRO + "\n  ".join(problems))


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def check_size(config: Mapping[str, Any]) -> None:
    """Refuse a config whose YAML aliases expand past attnlab.config.MAX_CONFIG_VALUES values."""
    expanded_size(config)


def check_schema(config: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every schema violation (no-op for a valid config)."""
    _raise(describe(config, schema()))


def _non_finite(node: Any, path: tuple) -> list[str]:
    if isinstance(node, float) and not math.isfinite(node):
        return [f"config key '{_dotted(path)}' = {node}: must be a finite number"]
    if isinstance(node, Mapping):
        return [m for k, v in node.items() for m in _non_finite(v, (*path, k))]
    if isinstance(node, (list, tuple)):
        return [m for i, v in enumerate(node) for m in _non_finite(v, (*path, i))]
    return []


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)


# (family, section, divisor key, dividend key, why): each divisor must divide its dividend
_DIVIDES = (
    ("vit", "model", "patch_size", "img_size", "the image is cut into whole patches"),
    ("vit", "model", "heads", "dim", "each head gets dim/heads channels"),
    ("gpt", "model", "n_heads", "d_model", "each head gets d_model/n_heads channels"),
)


class _Run:
    """One run of a vit/gpt sweep with its overrides merged in; ``key`` names where a value was set."""

    def __init__(self, config: Mapping[str, Any], family: str, run: str | None):
        self.family, self.run = family, run
        base = {k: v for k, v in config[family].items() if k != "runs"}
        self.over = (config[family].get("runs") or {}).get(run) or {} if run is not None else {}
        self.section = merge(base, self.over)
        self.label = f" (in run '{run}')" if run is not None else ""
        self.name = f" run '{run}'" if run is not None else ""

    def get(self, section: str, key: str) -> Any:
        return (self.section.get(section) or {}).get(key)

    def key(self, section: str, key: str) -> str:
        if self.run is not None and key in ((self.over or {}).get(section) or {}):
            return f"{self.family}.runs.{self.run}.{section}.{key}"
        return f"{self.family}.{section}.{key}"


def _runs(config: Mapping[str, Any], family: str) -> list[_Run]:
    """The base section, then every run (a run that overrides nothing repeats the base: left out by callers)."""
    return [_Run(config, family, None)] + [_Run(config, family, r) for r in run_names(config, family)]


def _unique(found: list[tuple[Any, str]]) -> list[str]:
    """The messages of (what, message) pairs, each ``what`` once: a run that does not override the
    keys involved repeats the base section's problem (same values, same key names)."""
    seen, out = set(), []
    for what, message in found:
        if what not in seen:
            seen.add(what)
            out.append(message)
    return out


def _divisibility(config: Mapping[str, Any]) -> list[str]:
    out = []
    for family, section, small, big, why in _DIVIDES:
        for run in _runs(config, family):
            a, b = run.get(section, small), run.get(section, big)
            if not isinstance(a, int) or not isinstance(b, int) or a < 1 or b % a == 0:
                continue
            keys = (run.key(section, small), run.key(section, big))
            out.append(((a, b, keys), f"config key '{keys[0]}' = {a} must divide {keys[1]} = {b}{run.label}: "
                                      f"{why}; divisors of {b}: {_divisors(b)}"))
    return _unique(out)


def _image_side(config: Mapping[str, Any]) -> list[str]:
    out = []
    for run in _runs(config, "vit"):
        side = run.get("model", "img_size")
        if isinstance(side, int) and side != CIFAR10_SIDE:
            key = run.key("model", "img_size")
            out.append(((side, key), f"config key '{key}' = {side}{run.label}: CIFAR-10 images are "
                                     f"{CIFAR10_SIDE}x{CIFAR10_SIDE}, so set it to {CIFAR10_SIDE}"))
    return _unique(out)


# ------------------------------------------------------------ data sources --
def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def describe_data_paths(config: Mapping[str, Any], workdir: str | Path | None = None) -> list[str]:
    """A ``data.*.path`` that lies in (or is) a folder the pipeline writes.

    Snakemake deletes a job's outputs before it runs it (and after it fails):
    a data source there would be deleted as a stale output, or overwritten.
    Checked by the path as written and by where its links lead.
    """
    workdir = Path(workdir or os.getcwd()).absolute()
    out = []
    for key in ("cifar10", "shakespeare"):
        value = ((config.get("data") or {}).get(key) or {}).get("path")
        if not isinstance(value, str) or not value:
            continue
        given = Path(os.path.abspath(workdir / value))
        real = Path(os.path.realpath(workdir / value))
        for sub in OUTPUT_DIRS:
            folder = workdir / sub
            if _inside(given, folder) or _inside(real, Path(os.path.realpath(folder))):
                out.append(f"config key 'data.{key}.path' = {value!r} lies inside {sub}/, which the pipeline "
                           f"writes (Snakemake deletes outputs it regenerates, so a source there would be lost); "
                           f"keep data sources outside {sub}/ and point the key there")
                break
    return out


# ------------------------------------------------------------------ memory --
def machine_memory() -> int:
    """Bytes of memory this machine has (ATTNLAB_PLAN_MEMORY_GIB overrides it, e.g. on a small login node)."""
    env = os.environ.get("ATTNLAB_PLAN_MEMORY_GIB")
    if env:
        try:
            return int(float(env) * 2**30)
        except ValueError:
            raise ConfigError(f"ATTNLAB_PLAN_MEMORY_GIB must be a number of GiB, got {env!r}") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: check nothing


def _int(v: Any, default: int = 1) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default


def memory_need(config: Mapping[str, Any]) -> list[tuple[int, list[str], str]]:
    """Lower bounds of the memory a training step needs: [(bytes, keys it grows with, formula)].

    Deliberately low, so that only configs that cannot fit are refused:
    parameters cost 16 bytes each (fp32 weights, gradients and AdamW's two
    moments), and a step's activations at least 2 bytes (bf16) per element of
    one (batch, tokens, width) tensor per block, which the backward pass must
    keep (the real figure is 10-20 such tensors, attention maps not counted).

    * ViT: 16 * depth * (4 + 2 * mlp_ratio) * dim^2
      + 2 * batch * (1 + (img_size / patch_size)^2) * dim * depth,
      with batch at most the 50,000 CIFAR-10 training images (or max_train_images).
    * GPT: 16 * (n_layers * 12 * d_model^2 + (max_len + vocab) * d_model)
      + 2 * batch * max_len * d_model * n_layers + 4 * batch * max_len * vocab
      (fp32 logits), with vocab = data.tokenizer.max_size when set, else 3 (the special tokens).
    * theory: 4 * 5 * max(seq_lens) * d (the float32 inputs x, queries, keys, values and outputs of
      one attention evaluation, all alive at once; the T x T scores are computed in bounded chunks).
    """
    out = []
    for run in _runs(config, "vit"):
        dim, depth = _int(run.get("model", "dim")), _int(run.get("model", "depth"))
        ratio = run.get("model", "mlp_ratio") if isinstance(run.get("model", "mlp_ratio"), (int, float)) else 1
        grid = _int(run.get("model", "img_size")) // _int(run.get("model", "patch_size"))
        tokens = 1 + grid * grid
        images = min(_int(run.get("train", "max_train_images"), CIFAR10_TRAIN_IMAGES), CIFAR10_TRAIN_IMAGES)
        batch = min(_int(run.get("train", "batch_size")), images)
        need = 16 * depth * int((4 + 2 * ratio) * dim * dim) + 2 * batch * tokens * dim * depth
        keys = [run.key("train", "batch_size"), run.key("model", "img_size"), run.key("model", "patch_size"),
                run.key("model", "dim"), run.key("model", "depth")]
        out.append((need, keys, f"ViT{run.name}: {batch} images x {tokens} tokens x dim {dim} x depth {depth}"))
    vocab = _int(((config.get("data") or {}).get("tokenizer") or {}).get("max_size"), 3)
    for run in _runs(config, "gpt"):
        d, layers = _int(run.get("model", "d_model")), _int(run.get("model", "n_layers"))
        T, batch = _int(run.get("model", "max_len")), _int(run.get("train", "batch_size"))
        need = 16 * (layers * 12 * d * d + (T + vocab) * d) + 2 * batch * T * d * layers + 4 * batch * T * vocab
        keys = [run.key("train", "batch_size"), run.key("model", "max_len"), run.key("model", "d_model"),
                run.key("model", "n_layers")] + (["data.tokenizer.max_size"] if vocab > 3 else [])
        out.append((need, keys, f"GPT{run.name}: {batch} dialogues x {T} tokens x d_model {d} x "
                                f"{layers} layers, vocabulary {vocab}"))
    theory = config.get("theory") or {}
    lens = [t for t in theory.get("seq_lens") or [] if isinstance(t, int)] or [1]
    d = _int(theory.get("d"))
    out.append((4 * 5 * max(lens) * d, ["theory.seq_lens", "theory.d"],
                f"theory: five float32 {max(lens)} x {d} tensors: inputs, queries, keys, values, outputs"))
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def describe_memory(config: Mapping[str, Any], available: int | None = None) -> list[str]:
    """One message per family whose lower-bound need (``memory_need``) exceeds ``available`` bytes."""
    available = machine_memory() if available is None else available
    out = []
    for need, keys, what in memory_need(config):
        if need > available:
            names = ", ".join(repr(k) for k in keys)
            out.append(((need, tuple(keys)),
                        f"config keys {names} together need at least {_gib(need)} ({what}; formula in "
                        f"workflow/lib/configcheck.py) but this machine has {_gib(available)}; make one of them "
                        f"smaller (or set ATTNLAB_PLAN_MEMORY_GIB to the memory of the machine that runs the job)"))
    return _unique(out)


def describe_semantics(config: Mapping[str, Any], workdir: str | Path | None = None,
                       available: int | None = None) -> list[str]:
    """One message per cross-field mistake the schema cannot express (empty when there is none)."""
    return (_non_finite(config, ()) + _divisibility(config) + _image_side(config)
            + describe_data_paths(config, workdir) + describe_memory(config, available))


def check_semantics(config: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every cross-field mistake (no-op for a sound config)."""
    _raise(describe_semantics(config))
