"""Command line of the data stages: ``python -m attnlab.data {download-cifar10,prepare-cifar10,...}``."""

from __future__ import annotations

import argparse
import math
import sys

from attnlab.config import load_config_file
from attnlab.data import CIFAR10_MD5, CIFAR10_URL, DEFAULT_CONFIG, SHAKESPEARE_SHA256, SHAKESPEARE_URL
from attnlab.errors import cli_main


def _checksum(value: str) -> str | None:
    """'' / 'null' / 'none' on the command line means: skip verification."""
    return None if value.strip().lower() in ("", "null", "none") else value.strip()


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def _limits(p: argparse.ArgumentParser, name: str) -> None:
    cfg = DEFAULT_CONFIG[name]
    p.add_argument("--max-mb", type=_positive, default=cfg["download_max_mb"],
                   help=f"stop past this many MiB (data.{name}.download_max_mb, default %(default)s)")
    p.add_argument("--deadline-s", type=_positive, default=cfg["download_deadline_s"],
                   help=f"stop when not complete after this long (data.{name}.download_deadline_s, "
                        f"default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m attnlab.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download-cifar10", help="download the official CIFAR-10 tarball, md5-verified")
    p.add_argument("--url", default=CIFAR10_URL)
    p.add_argument("--md5", type=_checksum, default=CIFAR10_MD5, help="expected md5 ('null' skips the check)")
    p.add_argument("--out", required=True, help="where the tarball goes")
    p.add_argument("--retries", type=int, default=3)
    _limits(p, "cifar10")

    p = sub.add_parser("prepare-cifar10", help="CIFAR-10 source -> {train,test}.pt + manifest.json")
    p.add_argument("--source", required=True,
                   help="official tarball, extracted cifar-10-batches-py/, or ImageFolder folder/.tar.gz")
    p.add_argument("--md5", type=_checksum, default=None,
                   help="official tarball's md5, verified for that source and refused for any other (use --sha256)")
    p.add_argument("--sha256", type=_checksum, default=None,
                   help="sha256 of the source, verified if given: a file's bytes, or a folder's tree digest")
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("download-shakespeare", help="download tiny-shakespeare, sha256-verified")
    p.add_argument("--url", default=SHAKESPEARE_URL)
    p.add_argument("--sha256", type=_checksum, default=SHAKESPEARE_SHA256,
                   help="expected sha256 ('null' skips the check)")
    p.add_argument("--out", required=True)
    p.add_argument("--retries", type=int, default=3)
    _limits(p, "shakespeare")

    p = sub.add_parser("build-vocab", help="dialogues, train/val split, vocabulary, ids, report, histogram")
    p.add_argument("--text", required=True, help="tiny-shakespeare input.txt")
    p.add_argument("--sha256", type=_checksum, default=SHAKESPEARE_SHA256,
                   help="expected sha256 of --text ('null' skips the check but records the digest)")
    p.add_argument("--config", default=None,
                   help="YAML/JSON {val_fraction, seed, min_freq, max_size} (or the data section)")
    p.add_argument("--out-dir", required=True)
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "download-cifar10":
        from attnlab.data.cifar10 import download_cifar10

        download_cifar10(args.url, args.out, args.md5, args.max_mb, args.deadline_s, retries=args.retries)
    elif args.command == "prepare-cifar10":
        from attnlab.data.cifar10 import prepare

        prepare(args.source, args.out_dir, md5=args.md5, sha256=args.sha256)
    elif args.command == "download-shakespeare":
        from attnlab.data.shakespeare import download_shakespeare

        download_shakespeare(args.url, args.out, args.sha256, args.max_mb, args.deadline_s,
                             retries=args.retries)
    elif args.command == "build-vocab":
        from attnlab.data.vocab import build_vocab

        build_vocab(args.text, args.sha256, load_config_file(args.config), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
