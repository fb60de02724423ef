"""The code appendix: the bodies the homework asks for, read from the package's own files when the report is built.

The homework asks for the code of the parts students write (not the starter
code it gives). Copying it into the writeup
would let the two drift apart; instead every listing is cut out of the source
file with ``ast`` at build time, so the PDF shows exactly the code that ran
(and the report rule lists these files as inputs, so an edit rebuilds it).
Reading the files, not importing them, keeps torch out of the report stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

from attnlab.errors import AttnlabError

# src/attnlab/report/code.py -> src: the attnlab that builds the report is the one listed.
SRC = Path(__file__).resolve().parents[2]

# module -> [(homework name, definition: "name" at the top level or "Class.method", what it answers)].
# Only what the homework asks students to write, and the helpers those bodies call, in the homework's
# order (the modules too); a helper comes right after the body that calls it, so a reader never meets an
# unseen function.
LISTINGS: dict[str, list[tuple[str, str, str]]] = {
    "attnlab.transformer": [
        ("AttentionHead", "AttentionHead", "Problem 2(a)"),
        ("AttentionHead", "masked_softmax", "Problem 2(a), the mask"),
        ("AttentionHead", "normalize_mask", "Problem 2(a), the mask"),
        ("MultiHeadedAttention", "MultiHeadedAttention.__init__", "Problem 2(b)"),
        ("MultiHeadedAttention", "MultiHeadedAttention._forward_loop",
         "Problem 2(b), heads one by one as the homework describes"),
        ("MultiHeadedAttention", "MultiHeadedAttention._forward_vectorized",
         "Problem 2(b), all heads at once (used in training)"),
        ("MultiHeadedAttention", "MultiHeadedAttention._fused_qkv",
         "Problem 2(b): the heads' own W_Q, W_K, W_V stacked into one matrix (cached while no gradient flows)"),
        ("MultiHeadedAttention", "MultiHeadedAttention.forward", "Problem 2(b)"),
        ("Transformer", "Transformer", "Problem 2(c)"),
    ],
    "attnlab.vit.model": [("PatchEmbed", "PatchEmbed", "Problem 3(a)")],
    "attnlab.data.tokenizer": [
        ("MyTokenizer", "MyTokenizer.encode", "Problem 4(a)"),
        ("MyTokenizer", "MyTokenizer.decode", "Problem 4(a)"),
    ],
    "attnlab.gpt.model": [
        ("DialogueGPT", "DialogueGPT.__init__", "Problem 4(c)"),
        ("DialogueGPT", "DialogueGPT.forward", "Problem 4(c)"),
        ("DialogueGPT", "DialogueGPT._init_weights", "Problem 4(c), GPT-2 initialisation"),
        ("DialogueGPT", "DialogueGPT._embed", "Problem 4(c), embeddings"),
        ("DialogueGPT", "attention_mask", "Problem 4(c), the causal mask"),
        ("DialogueGPT", "causal_mask", "Problem 4(c), the causal mask"),
        ("DialogueLoss", "DialogueLoss", "Problem 4(d)"),
        ("DialogueLoss", "token_nll", "Problem 4(d)"),
    ],
}


class CodeListingError(AttnlabError, LookupError):
    """A definition the appendix lists is not in its module any more."""


def module_file(module: str, src: Path = SRC) -> Path:
    """The file of ``module`` under ``src``, found by path: importing would pull torch into the report stage."""
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise CodeListingError(f"{path} (module {module}) is missing; the code appendix cannot read it")
    return path


def definition_source(path: Path, name: str) -> tuple[str, int, int]:
    """(source, first line, last line) of ``name`` in ``path``: a top-level class or function, or
    ``Class.method``; decorators included, a method's lines as they stand (indented) in the file."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    nodes, found = tree.body, None
    for part in name.split("."):
        found = next((n for n in nodes if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.name == part), None)
        if found is None:
            raise CodeListingError(f"{path} has no definition {name!r} (listed in attnlab.report.code.LISTINGS)")
        nodes = found.body
    first = min([found.lineno] + [d.lineno for d in found.decorator_list])
    lines = text.splitlines()[first - 1: found.end_lineno]
    return "\n".join(lines) + "\n", first, found.end_lineno


def listings() -> list[dict]:
    """Every listing, in LISTINGS order: {homework, module, name, role, file, first, last, source}."""
    out = []
    for module, rows in LISTINGS.items():
        path = module_file(module)
        for homework, name, role in rows:
            source, first, last = definition_source(path, name)
            out.append({"homework": homework, "module": module, "name": name, "role": role,
                        "file": path.relative_to(SRC).as_posix(),
                        "first": first, "last": last, "source": source})
    return out


def source_files(src: Path = SRC) -> list[str]:
    """The files the appendix reads."""
    return sorted(str(module_file(module, src)) for module in LISTINGS)


def source_digest(src: Path = SRC) -> str:
    """Digest of the full text of the files the appendix prints (the report rule's param).

    Full text, not code only: the listings include comments and docstrings, so
    editing one must rebuild the PDF. Paths are relative to ``src``, so moving
    the checkout changes nothing.
    """
    import hashlib

    h = hashlib.sha256()
    for path in source_files(src):
        h.update(Path(path).relative_to(src).as_posix().encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]
