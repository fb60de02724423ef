"""Which checksum applies to the configured CIFAR-10 source, decided when the DAG is built.

``data.cifar10.md5`` is the published checksum of the official
``cifar-10-python.tar.gz``: it applies to the download and to a ``path`` that
is that tarball, and means nothing for any other source (the prepare stage
refuses it there; ``data.cifar10.sha256`` verifies those).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Mapping

# The official tarball's files; its first regular member is one of them.
OFFICIAL_FILES = {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "readme.html"}


def is_official_tarball(path: str | Path) -> bool:
    """Whether ``path`` is a tarball whose first file is an official batch file.

    Reads only up to the first file's header, so building the DAG does not read the data.
    """
    path = Path(path)
    if not path.is_file() or not tarfile.is_tarfile(path):
        return False
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if member.isfile():
                    return Path(member.name).name in OFFICIAL_FILES
    except (tarfile.TarError, EOFError, OSError):
        return False  # the prepare job reads it through and names what is wrong
    return False


def cifar10_md5(cifar10: Mapping[str, Any]) -> str | None:
    """The md5 to pass to prepare_cifar10: ``cifar10['md5']`` where it applies, else None."""
    md5, path = cifar10.get("md5"), cifar10.get("path")
    return md5 if path is None or is_official_tarball(path) else None
