"""The stage command lines' parser, and the arguments several stages take alike, said once.

Every stage's ``main(argv)`` builds its parser with :func:`stage_parser` and
is wrapped by :func:`attnlab.errors.cli_main`, which turns a user's mistake
into one ``error:`` line. An argument listed in :data:`SHARED` means the same
thing, with the same help text, in every stage that takes it.
"""

from __future__ import annotations

import argparse
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# name -> (flag, argparse keywords)
SHARED: dict[str, tuple[str, dict[str, Any]]] = {
    "vit-checkpoint": ("--checkpoint", {"required": True, "help": "checkpoint.pt written by attnlab.vit.train"}),
    "gpt-checkpoint": ("--checkpoint", {"required": True, "help": "checkpoint.pt written by attnlab.gpt.train"}),
    "cifar-test": ("--data", {"required": True,
                              "help": "any CIFAR-10 source (a prepared folder, the official tarball, an ImageFolder "
                                      "copy); its test split is used"}),
    "dialogues": ("--data", {"required": True, "help": "dialogues.pt written by `python -m attnlab.data build-vocab`"}),
    "vocab": ("--vocab", {"required": True, "help": "vocab.json written together with dialogues.pt"}),
    "n-images": ("--n-images", {"type": positive_int, "default": None,
                                "help": "how many test images (default: the run's heatmaps.n_images, 10)"}),
    "device": ("--device", {"default": "auto", "help": "auto (CUDA, then MPS, then the CPU) or a torch device, "
                                                       "e.g. cpu or cuda:1"}),
    "stop-after-epochs": ("--stop-after-epochs", {"type": positive_int, "default": None,
                                                  "help": "leave after this many new epochs with only the resume "
                                                          "state written (as if killed); rerun to continue"}),
}


def stage_parser(module: str, doc: str | None, *shared: str) -> argparse.ArgumentParser:
    """The parser of ``python -m <module>``: the first paragraph of ``doc`` describes it, then the ``shared``
    arguments (names of :data:`SHARED`) in that order; the stage adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").strip().split("\n\n")[0])
    for name in shared:
        flag, kwargs = SHARED[name]
        parser.add_argument(flag, **kwargs)
    return parser
