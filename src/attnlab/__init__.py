"""attnlab: transformers from scratch, carried from data to a finished writeup.

The public classes are imported lazily so that, for example, the ViT trainer
runs on a machine with torch alone: importing ``attnlab`` does not pull in
nltk (tokenizer) or matplotlib until a name that needs them is used.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "AttentionHead": "attnlab.transformer",
    "MultiHeadedAttention": "attnlab.transformer",
    "FFN": "attnlab.transformer",
    "AttentionResidual": "attnlab.transformer",
    "Transformer": "attnlab.transformer",
    "PatchEmbed": "attnlab.vit.model",
    "VisionTransformer": "attnlab.vit.model",
    "MyTokenizer": "attnlab.data.tokenizer",
    "DialogueDataset": "attnlab.data.dialogues",
    "DialogueGPT": "attnlab.gpt.model",
    "DialogueLoss": "attnlab.gpt.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
