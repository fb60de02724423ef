"""``python -m attnlab.explore {vit,gpt,views} ...``: write an explorer page, or screenshot one."""

from __future__ import annotations

import sys

COMMANDS = {
    "vit": ("attnlab.explore.vit", "the ViT's page from a checkpoint and CIFAR-10 test images"),
    "gpt": ("attnlab.explore.gpt", "DialogueGPT's page from a checkpoint, its greedy samples and validation dialogues"),
    "views": ("attnlab.explore.views", "screenshots of every view of a page (headless Chromium, playwright)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m attnlab.explore {{{','.join(COMMANDS)}}} [--help | options]\n" + "\n".join(
        f"  {name:6s} {what}" for name, (_, what) in COMMANDS.items())
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {what}; use one of {', '.join(COMMANDS)} (python -m attnlab.explore --help)", file=sys.stderr)
        return 2
    import importlib

    # imported only when chosen: `views` needs playwright, the page builders need torch
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
