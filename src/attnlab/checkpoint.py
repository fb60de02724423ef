"""Loading ``.pt`` files that may come from someone else, without running their code.

Checkpoints are shared between users, so a ``.pt`` file is untrusted input: a
pickle can call any Python function while it loads. Everything attnlab writes
(checkpoints, resume state, prepared data) holds only tensors and plain
containers, which ``torch.load(weights_only=True)`` reads while refusing
anything else. :func:`load_pt` wraps that and turns every way a file can be
wrong (foreign objects, truncated, random bytes, unreadable) into one
:class:`CheckpointError` line naming the file and what was expected.
:func:`load_checkpoint` also checks that a model checkpoint is of the right
family, so a GPT checkpoint given to a ViT command is named as such.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from attnlab.errors import AttnlabError

# family -> (what a command expects, keys a checkpoint of that family must hold)
FAMILIES = {
    "vit": ("a ViT checkpoint written by attnlab.vit.train", ("model_config", "state_dict")),
    "gpt": ("a DialogueGPT checkpoint written by attnlab.gpt.train", ("model_config", "state_dict")),
}

# Errors torch.load raises for a file that is not a (complete) torch.save file.
_BAD_FILE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, KeyError, AttributeError,
             IndexError, ImportError, zipfile.BadZipFile)


# What torch's weights_only unpickler (torch 2.6 to 2.14) says when it refuses an object rather than a
# damaged file: "Unsupported global: GLOBAL exec was not an allowed global", "Trying to load unsupported
# GLOBAL posix.system whose module posix is blocked", "Trying to call reduce for unrecognized function",
# "Can only build ... types allowlisted", "... must be imported to load". A cut-off zip or random bytes
# ("Unsupported operand 149") matches none of them.
_REFUSED = re.compile(r"GLOBAL (\S+)|unrecognized function|allowlisted|must be imported to load", re.IGNORECASE)


class CheckpointError(AttnlabError, ValueError):
    """A .pt file that is not what the command expects; the message is one line for the user."""


def load_pt(path: str | os.PathLike, expected: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; any bad file -> CheckpointError naming ``expected``.

    A missing file raises FileNotFoundError (the caller knows which command makes it).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected {expected})")
    try:
        with open(path, "rb"):  # an unreadable file is named as such, not as corrupt
            pass
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, *_BAD_FILE) as err:
        refused = _REFUSED.search(str(err))
        if refused:
            what = f"the Python object {refused.group(1)}" if refused.group(1) else "Python objects"
            why = (f"it holds {what}, not only tensors and plain containers; it was not loaded because "
                   f"unpickling it can run arbitrary code")
        else:
            why = "it is truncated, corrupt or not a file written by torch.save"
        raise CheckpointError(f"{path} is not {expected}: {why}") from err


def family_of(ckpt: Any) -> str | None:
    """'vit' / 'gpt' from the checkpoint's ``family`` field, or for older checkpoints from their keys."""
    if not isinstance(ckpt, dict):
        return None
    if ckpt.get("family") in FAMILIES:
        return ckpt["family"]
    mc = ckpt.get("model_config")
    if isinstance(mc, dict):
        if "vocab_size" in mc:
            return "gpt"
        if "patch_size" in mc:
            return "vit"
    return None


def _describe(ckpt: Any) -> str:
    """What a loaded object looks like, for the message when it is not the expected family."""
    fam = family_of(ckpt)
    if fam is not None:
        return FAMILIES[fam][0]
    if isinstance(ckpt, dict):
        if {"model", "optimizer"} <= set(ckpt):
            return "a trainer's resume state (resume/state.pt), not a finished checkpoint"
        if "images" in ckpt:
            return "a prepared CIFAR-10 split"
        if "train" in ckpt and "vocab_size" in ckpt:
            return "a prepared dialogues.pt"
        return f"a dict with keys {sorted(map(str, ckpt))[:8]}"
    return f"a {type(ckpt).__name__}"


def load_checkpoint(path: str | os.PathLike, family: str, map_location: Any = "cpu") -> dict:
    """The checkpoint dict at ``path``, checked to be of ``family`` ('vit' or 'gpt') with its required keys."""
    expected, required = FAMILIES[family]
    path = Path(path)
    ckpt = load_pt(path, expected, map_location)
    found = family_of(ckpt)
    if found != family:
        raise CheckpointError(f"{path} is {_describe(ckpt)}, not {expected}")
    missing = [k for k in required if k not in ckpt]
    if missing or not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(f"{path} is not {expected}: it lacks {missing or ['a model_config dict']}")
    return ckpt


def load_model(path: str | os.PathLike, family: str, model_cls: type, map_location: Any = "cpu") -> tuple:
    """(model in eval mode, checkpoint dict) of a ``family`` checkpoint; a model it does not build is one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with python -m attnlab.{family}.train")
    ckpt = load_checkpoint(path, family, map_location)
    try:
        model = model_cls(**ckpt["model_config"])
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise bad_model(path, family, err) from err
    return model.eval(), ckpt


def bad_model(path: str | os.PathLike, family: str, err: Exception) -> CheckpointError:
    """The error for a checkpoint whose model_config/state_dict do not build the model."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"{path} is not {FAMILIES[family][0]}: its weights do not fit the model it "
                           f"describes ({first})")
