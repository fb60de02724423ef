"""The code appendix: the seed's classes, read from the package's own files when the report is built.

The seed asks for the code next to the answers. Copying it into the writeup
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

# (seed name, module, top-level definition, what it answers). Helpers that a
# class calls come right after it, so a reader never meets an unseen function.
LISTINGS: list[tuple[str, str, str, str]] = [
    ("AttentionHead", "attnlab.transformer", "AttentionHead", "Problem 2(a)"),
    ("AttentionHead", "attnlab.transformer", "masked_softmax", "Problem 2(a), the mask"),
    ("AttentionHead", "attnlab.transformer", "normalize_mask", "Problem 2(a), the mask"),
    ("MultiHeadedAttention", "attnlab.transformer", "MultiHeadedAttention", "Problem 2(b)"),
    ("FFN", "attnlab.transformer", "FFN", "Problem 2(c), given"),
    ("AttentionResidual", "attnlab.transformer", "AttentionResidual", "Problem 2(c), given"),
    ("Transformer", "attnlab.transformer", "Transformer", "Problem 2(c)"),
    ("PatchEmbed", "attnlab.vit.model", "PatchEmbed", "Problem 3(a)"),
    ("VisionTransformer", "attnlab.vit.model", "VisionTransformer", "Problem 3(b)"),
    ("VisionTransformer", "attnlab.vit.model", "sincos_2d", "Problem 3(b), length-free positions"),
    ("MyTokenizer", "attnlab.data.tokenizer", "MyTokenizer", "Problem 4(a)"),
    ("DialogueDataset", "attnlab.data.dialogues", "DialogueDataset", "Problem 4(b)"),
    ("DialogueDataset", "attnlab.data.dialogues", "collate_batch", "Problem 4(b), padding"),
    ("DialogueGPT", "attnlab.gpt.model", "DialogueGPT", "Problem 4(c) and 4(e): generate() is the generation"),
    ("DialogueGPT", "attnlab.gpt.model", "causal_mask", "Problem 4(c), the causal mask"),
    ("DialogueGPT", "attnlab.gpt.model", "attention_mask", "Problem 4(c), the causal mask"),
    ("DialogueLoss", "attnlab.gpt.model", "DialogueLoss", "Problem 4(d)"),
    ("DialogueLoss", "attnlab.gpt.model", "token_nll", "Problem 4(d)"),
]


class CodeListingError(AttnlabError, LookupError):
    """A definition the appendix lists is not in its module any more."""


def module_file(module: str, src: Path = SRC) -> Path:
    """The file of ``module`` under ``src``, found by path: importing would pull torch into the report stage."""
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise CodeListingError(f"{path} (module {module}) is missing; the code appendix cannot read it")
    return path


def definition_source(path: Path, name: str) -> tuple[str, int, int]:
    """(source, first line, last line) of the top-level class or function ``name`` in ``path``, decorators included."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = text.splitlines()[first - 1: node.end_lineno]
            return "\n".join(lines) + "\n", first, node.end_lineno
    raise CodeListingError(f"{path} has no top-level definition {name!r} (listed in attnlab.report.code.LISTINGS)")


def listings() -> list[dict]:
    """Every listing, in LISTINGS order: {seed, module, name, role, file, first, last, source}."""
    out = []
    for seed, module, name, role in LISTINGS:
        path = module_file(module)
        source, first, last = definition_source(path, name)
        out.append({"seed": seed, "module": module, "name": name, "role": role,
                    "file": path.relative_to(SRC).as_posix(),
                    "first": first, "last": last, "source": source})
    return out


def source_files(src: Path = SRC) -> list[str]:
    """The files the appendix reads."""
    return sorted({str(module_file(module, src)) for _, module, _, _ in LISTINGS})


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
