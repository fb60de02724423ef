"""Which source files of the ``attnlab`` package a stage really uses, and a digest of their code.

Snakemake tracks a rule's ``script:`` file but not the modules that script
imports, so editing ``attnlab/vit/model.py`` would not rerun ViT training on
its own. Each rule therefore carries, as a ``params`` value, ``code_digest``
of the package files reachable from the stage's entry module through imports
(lazy imports inside functions included, since they run too). The digest is
of the code only: docstrings, comments and layout are left out (``ast``), so
editing prose reruns nothing, and paths are relative, so a checkout moved or
copied elsewhere reruns nothing either. The walk is static, so it costs a
few milliseconds and imports nothing: planning a no-op run stays fast and
needs neither torch nor nltk.

Also used by tests/test_envs.py to list the third-party imports of a rule
family's code.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "attnlab"


def module_file(src: Path, module: str) -> Path | None:
    """The file defining ``module`` under ``src`` (``a.b`` -> a/b.py or a/b/__init__.py)."""
    base = src.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _lazy_exports(src: Path) -> dict[str, str]:
    """The ``_EXPORTS`` name -> module table of attnlab/__init__.py (``from attnlab import X``)."""
    init = src / PACKAGE / "__init__.py"
    if not init.is_file():
        return {}
    for node in _parse(init).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            try:
                return dict(ast.literal_eval(node.value))
            except ValueError:
                return {}
    return {}


def _imports(path: Path, module: str) -> tuple[set[str], set[str]]:
    """(attnlab modules, top-level third-party names) that ``path`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    ours: set[str] = set()
    theirs: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.split(".")[0] == PACKAGE else theirs).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                theirs.add(base)
                continue
            ours.add(base)
            # ``from attnlab.vit import model`` imports a submodule; ``from attnlab import X`` may be lazy.
            for alias in node.names:
                ours.add(f"{base}.{alias.name}")
    return ours, {t.split(".")[0] for t in theirs if t}


def _closure(src: Path, entries: tuple[str, ...]) -> tuple[dict[str, Path], set[str]]:
    exports = _lazy_exports(src)
    seen: dict[str, Path] = {}
    third: set[str] = set()
    todo = list(entries)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        if mod.startswith(PACKAGE + ".") and mod.count(".") == 1 and mod.split(".")[1] in exports:
            todo.append(exports[mod.split(".")[1]])
        path = module_file(src, mod)
        if path is None:
            continue  # a name imported from a module, not a module itself
        seen[mod] = path
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        ours, theirs = _imports(path, mod)
        third |= theirs
        todo.extend(ours)
    return seen, third


def _code_only(tree: ast.Module) -> str:
    """The module's syntax tree without docstrings or positions (comments are not in it)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_digest(src: str | Path, *entries: str, extra: tuple[str | Path, ...] = ()) -> str:
    """A digest of the code the entry modules run (plus ``extra`` Python files), blind to prose and paths."""
    import copy
    import hashlib

    src = Path(src).resolve()
    seen, _ = _closure(src, tuple(entries))
    h = hashlib.sha256()
    for mod in sorted(seen):
        h.update(f"{mod}\0{_code_only(copy.deepcopy(_parse(seen[mod])))}\0".encode())
    for path in sorted(Path(p).resolve() for p in extra):
        h.update(f"{path.name}\0{_code_only(ast.parse(path.read_text(encoding='utf-8')))}\0".encode())
    return h.hexdigest()[:16]


def source_files(src: str | Path, *entries: str) -> list[str]:
    """Sorted absolute paths of every package file the entry modules import, transitively."""
    seen, _ = _closure(Path(src).resolve(), tuple(entries))
    return sorted(str(p) for p in seen.values())


def third_party_imports(src: str | Path, *entries: str) -> set[str]:
    """Top-level names of the non-attnlab, non-stdlib modules the entry modules import."""
    _, third = _closure(Path(src).resolve(), tuple(entries))
    return {name for name in third if name not in sys.stdlib_module_names and name != "__future__"}


if __name__ == "__main__":  # python workflow/lib/pkgdeps.py src attnlab.vit.train
    for f in source_files(sys.argv[1], *sys.argv[2:]):
        print(f)
    print("third-party:", sorted(third_party_imports(sys.argv[1], *sys.argv[2:])))
    print("code digest:", code_digest(sys.argv[1], *sys.argv[2:]))
