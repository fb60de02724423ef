# Helpers shared by the workflow's rule files (sweeps, config sections, code digests).

import functools

import pkgdeps  # noqa: E402  (workflow/lib is on sys.path, see the Snakefile)
from attnlab import config as cfgmod  # noqa: E402  (the checkout's src/, ditto)

SRC = ROOT / "src"
SCRIPTS = ROOT / "workflow" / "scripts"


def quiet_cores():
    """Every core of the run (--cores), for the jobs whose timings are results: no other job runs beside them.
    1 where no core count is given (a cluster executor: the job gets its own allocation there)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# ---------------------------------------------------------------- sweeps ----
def vit_runs():
    return cfgmod.run_names(config, "vit")


def gpt_runs():
    return cfgmod.run_names(config, "gpt")


for _family in ("vit", "gpt"):
    if not cfgmod.run_names(config, _family):
        raise cfgmod.ConfigError(
            f"config key '{_family}.runs' names no run: keep at least one, e.g. {{main: {{}}}}")


def run_section(family, run, keys):
    """The ``keys`` sub-sections of ``family`` with run ``run``'s overrides merged in.

    This is what a stage receives as ``--config`` and what the rule passes as
    ``params.section``, so changing it (and only it) reruns the rule.
    """
    return cfgmod.run_section(config, family, run, keys)


# Files each run produces, for `all` and for the report rule's inputs.
VIT_RUN_OUTPUTS = [
    "checkpoint.pt", "metrics.csv", "curves.png", "train_summary.json",
    "eval.json", "confusion.png",
    "heatmaps.png", "rollout.png", "heatmap_stats.json",
    "attention.html",
]
GPT_RUN_OUTPUTS = [
    "checkpoint.pt", "metrics.csv", "samples.jsonl", "curves.png", "train_summary.json",
    "eval.json",
    "generation.txt", "generation.json",
    "attention.html",
]


def vit_run_files(name=None):
    """results/vit/{run}/<file> for every ViT run (or for file ``name`` only)."""
    names = [name] if name else VIT_RUN_OUTPUTS
    return [f"results/vit/{run}/{n}" for run in vit_runs() for n in names]


def gpt_run_files(name=None):
    names = [name] if name else GPT_RUN_OUTPUTS
    return [f"results/gpt/{run}/{n}" for run in gpt_runs() for n in names]


def screenshots_wanted():
    """explore.screenshots, resolved at planning: ``auto`` means when playwright and a Chromium are installed.

    ``true`` schedules the screenshots anyway: on a cluster the job's node may have
    the browser the login node lacks, and where none is, the job fails with one line.
    """
    wanted = config["explore"]["screenshots"]
    if wanted != "auto":
        return wanted
    import importlib.util

    from attnlab.explore.views import BrowserError, find_chromium

    try:
        find_chromium()
    except BrowserError:
        return False
    return importlib.util.find_spec("playwright") is not None


def view_files():
    """The screenshot folders of every run's explorer pages (results/{vit,gpt}/{run}/attention_views), if wanted."""
    return vit_run_files("attention_views") + gpt_run_files("attention_views") if screenshots_wanted() else []


# ------------------------------------------------------------- code digests ---
@functools.lru_cache(maxsize=None)
def code(*modules, cli=None):
    """A ``params`` value: the digest of the package code the stage runs, and of the scripts' helper.

    As a param it reruns its rule when that code changes, and only then; edits
    of comments and docstrings, and moving the checkout, rerun nothing
    (pkgdeps.code_digest). ``cli`` names a dispatching command-line module
    (e.g. attnlab.data.__main__) whose own code counts but whose lazy imports
    serve other rules too.
    """
    extra = (SCRIPTS / "_stage.py",) + ((pkgdeps.module_file(SRC, cli),) if cli else ())
    return pkgdeps.code_digest(SRC, *modules, extra=extra)


def typst_digest():
    """A ``params`` value: the digest of the writeup's Typst sources (report/*.typ), by content."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((ROOT / "report").glob("*.typ")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------ data sources --
DATA = config["data"]
CIFAR_DOWNLOAD = "results/data/cifar10/download/cifar-10-python.tar.gz"
SHAKESPEARE_DOWNLOAD = "results/data/shakespeare/input.txt"


def _offline(key):
    path = DATA[key]["path"]
    if path and not Path(path).exists():
        raise cfgmod.ConfigError(
            f"config key 'data.{key}.path' points at {path}, which does not exist "
            f"(relative paths are read from the working directory {Path.cwd()}); "
            f"fix the path or set it to null to download from data.{key}.url"
        )
    return path


def cifar10_source(wildcards=None):
    return _offline("cifar10") or CIFAR_DOWNLOAD


def shakespeare_text(wildcards=None):
    return _offline("shakespeare") or SHAKESPEARE_DOWNLOAD
