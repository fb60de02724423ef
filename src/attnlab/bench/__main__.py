"""Dispatch `python -m attnlab.bench NAME [args]` to attnlab.bench.NAME.main(args)."""

import sys
from importlib import import_module
from attnlab.errors import cli_main

BENCHES = ("attention", "vit", "gpt")


@cli_main
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print(f"usage: python -m attnlab.bench {{{','.join(BENCHES)}}} [--help]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return import_module(f"attnlab.bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
